//! The syslog adapter's output: RFC 5424 or RFC 3164 lines exactly as logspout v3.2.14 writes
//! them, built from the `SYSLOG_*` templates, plus the TCP framings.

use std::collections::HashMap;

use crate::message::Message;
use crate::template::{Template, TemplateError};

/// `SYSLOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyslogFormat {
    #[default]
    Rfc5424,
    Rfc3164,
}

/// `SYSLOG_TCP_FRAMING` (only applies to TCP and TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpFraming {
    /// The message ends with LF.
    #[default]
    Traditional,
    /// `<length> ` in front; the length includes the message's trailing LF.
    OctetCounted,
}

/// The `SYSLOG_*` settings, as text (compiled per route by [`SyslogRenderer::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogSettings {
    pub format: SyslogFormat,
    pub framing: TcpFraming,
    pub priority: String,
    pub timestamp: String,
    /// Already resolved against `/etc/host_hostname`.
    pub hostname: String,
    /// `SYSLOG_TAG` if set (then `append_tag` is ignored).
    pub tag: Option<String>,
    pub pid: String,
    pub structured_data: String,
    pub data: String,
}

impl Default for SyslogSettings {
    fn default() -> Self {
        Self {
            format: SyslogFormat::Rfc5424,
            framing: TcpFraming::Traditional,
            priority: "{{.Priority}}".into(),
            timestamp: "{{.Timestamp}}".into(),
            hostname: "{{.Container.Config.Hostname}}".into(),
            tag: None,
            pid: "{{.Container.State.Pid}}".into(),
            structured_data: String::new(),
            data: "{{.Data}}".into(),
        }
    }
}

/// Renders messages for one syslog route.
#[derive(Debug, Clone)]
pub struct SyslogRenderer {
    format: SyslogFormat,
    priority: Template,
    timestamp: Template,
    hostname: Template,
    tag: Template,
    pid: Template,
    structured_data: Option<Template>,
    data: Template,
}

impl SyslogRenderer {
    /// Compiles the templates for a route with `options` (`append_tag`, `structured_data`).
    pub fn new(
        settings: &SyslogSettings,
        options: &HashMap<String, String>,
    ) -> Result<Self, TemplateError> {
        let tag = match &settings.tag {
            Some(tag) => tag.clone(),
            None => format!(
                "{{{{.ContainerName}}}}{}",
                options.get("append_tag").map_or("", String::as_str)
            ),
        };
        let sd = options
            .get("structured_data")
            .filter(|v| !v.is_empty())
            .unwrap_or(&settings.structured_data);
        Ok(Self {
            format: settings.format,
            priority: Template::compile("SYSLOG_PRIORITY", &settings.priority)?,
            timestamp: Template::compile("SYSLOG_TIMESTAMP", &settings.timestamp)?,
            hostname: Template::compile("SYSLOG_HOSTNAME", &settings.hostname)?,
            tag: Template::compile("SYSLOG_TAG", &tag)?,
            pid: Template::compile("SYSLOG_PID", &settings.pid)?,
            structured_data: if sd.is_empty() {
                None
            } else {
                Some(Template::compile("SYSLOG_STRUCTURED_DATA", sd)?)
            },
            data: Template::compile("SYSLOG_DATA", &settings.data)?,
        })
    }

    /// Appends the message, ending with exactly one LF, to `out`.
    pub fn render(&self, m: &Message, out: &mut Vec<u8>) {
        let priority = self.priority.render_string(m);
        let timestamp = self.timestamp.render_string(m);
        let hostname = self.hostname.render_string(m);
        let tag = self.tag.render_string(m);
        let pid = self.pid.render_string(m);
        let head = match self.format {
            SyslogFormat::Rfc5424 => {
                let sd = match &self.structured_data {
                    Some(t) => format!("[{}]", t.render_string(m)),
                    None => "-".to_owned(),
                };
                format!("<{priority}>1 {timestamp} {hostname:.255} {tag:.48} {pid:.128} - {sd} ")
            }
            SyslogFormat::Rfc3164 => {
                format!("<{priority}>{timestamp} {hostname} {tag:.32}[{pid}]: ")
            }
        };
        out.extend_from_slice(head.as_bytes());
        self.data.render(m, out);
        out.push(b'\n');
    }
}

/// Frames one rendered message for a stream transport.
pub fn frame(framing: TcpFraming, message: &[u8], out: &mut Vec<u8>) {
    if framing == TcpFraming::OctetCounted {
        out.extend_from_slice(format!("{} ", message.len()).as_bytes());
    }
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ContainerInfo, Source};
    use bytes::Bytes;
    use chrono::{TimeZone, Utc};
    use std::sync::Arc;

    fn web(name: &str, source: Source, data: &str) -> Message {
        Message {
            container: Arc::new(ContainerInfo {
                id: "abc123def4567890".into(),
                name: format!("/{name}"),
                hostname: "abc123".into(),
                image: "nginx".into(),
                pid: 4242,
                ..ContainerInfo::default()
            }),
            source,
            data: Bytes::copy_from_slice(data.as_bytes()),
            time: Utc.with_ymd_and_hms(2021, 12, 6, 15, 4, 5).unwrap()
                + chrono::Duration::milliseconds(700),
        }
    }

    struct Case {
        name: &'static str,
        settings: fn(&mut SyslogSettings),
        options: &'static [(&'static str, &'static str)],
        tcp: bool,
        source: Source,
        expected: &'static str,
    }

    /// The worked examples of spec §2.3 and the format cases of §6 A.
    fn cases() -> Vec<Case> {
        let none: fn(&mut SyslogSettings) = |_| {};
        vec![
            Case {
                name: "udp 5424",
                settings: none,
                options: &[],
                tcp: false,
                source: Source::Stdout,
                expected: "<14>1 2021-12-06T15:04:05Z abc123 web 4242 - - hello\n",
            },
            Case {
                name: "stderr",
                settings: none,
                options: &[],
                tcp: false,
                source: Source::Stderr,
                expected: "<11>1 2021-12-06T15:04:05Z abc123 web 4242 - - hello\n",
            },
            Case {
                name: "tcp traditional",
                settings: none,
                options: &[],
                tcp: true,
                source: Source::Stdout,
                expected: "<14>1 2021-12-06T15:04:05Z abc123 web 4242 - - hello\n",
            },
            Case {
                name: "tcp octet counted",
                settings: |s| s.framing = TcpFraming::OctetCounted,
                options: &[],
                tcp: true,
                source: Source::Stdout,
                expected: "53 <14>1 2021-12-06T15:04:05Z abc123 web 4242 - - hello\n",
            },
            Case {
                name: "udp ignores octet counting",
                settings: |s| s.framing = TcpFraming::OctetCounted,
                options: &[],
                tcp: false,
                source: Source::Stdout,
                expected: "<14>1 2021-12-06T15:04:05Z abc123 web 4242 - - hello\n",
            },
            Case {
                name: "rfc3164 udp",
                settings: |s| s.format = SyslogFormat::Rfc3164,
                options: &[],
                tcp: false,
                source: Source::Stdout,
                expected: "<14>2021-12-06T15:04:05Z abc123 web[4242]: hello\n",
            },
            Case {
                name: "rfc3164 octet counted",
                settings: |s| {
                    s.format = SyslogFormat::Rfc3164;
                    s.framing = TcpFraming::OctetCounted;
                },
                options: &[],
                tcp: true,
                source: Source::Stdout,
                expected: "49 <14>2021-12-06T15:04:05Z abc123 web[4242]: hello\n",
            },
            Case {
                name: "append_tag",
                settings: none,
                options: &[("append_tag", ".app")],
                tcp: false,
                source: Source::Stdout,
                expected: "<14>1 2021-12-06T15:04:05Z abc123 web.app 4242 - - hello\n",
            },
            Case {
                name: "SYSLOG_TAG wins over append_tag",
                settings: |s| s.tag = Some("fixed".into()),
                options: &[("append_tag", ".app")],
                tcp: false,
                source: Source::Stdout,
                expected: "<14>1 2021-12-06T15:04:05Z abc123 fixed 4242 - - hello\n",
            },
            Case {
                name: "structured data env",
                settings: |s| s.structured_data = "key@41058 tag=\"x\"".into(),
                options: &[],
                tcp: false,
                source: Source::Stdout,
                expected: "<14>1 2021-12-06T15:04:05Z abc123 web 4242 - [key@41058 tag=\"x\"] hello\n",
            },
            Case {
                name: "structured data option wins",
                settings: |s| s.structured_data = "x@1 a=\"b\"".into(),
                options: &[("structured_data", "a@1")],
                tcp: false,
                source: Source::Stdout,
                expected: "<14>1 2021-12-06T15:04:05Z abc123 web 4242 - [a@1] hello\n",
            },
            Case {
                name: "hostname",
                settings: |s| s.hostname = "myhost".into(),
                options: &[],
                tcp: false,
                source: Source::Stdout,
                expected: "<14>1 2021-12-06T15:04:05Z myhost web 4242 - - hello\n",
            },
            Case {
                name: "tag from image",
                settings: |s| s.tag = Some("{{.Container.Config.Image}}".into()),
                options: &[],
                tcp: false,
                source: Source::Stdout,
                expected: "<14>1 2021-12-06T15:04:05Z abc123 nginx 4242 - - hello\n",
            },
            Case {
                name: "priority",
                settings: |s| s.priority = "13".into(),
                options: &[],
                tcp: false,
                source: Source::Stderr,
                expected: "<13>1 2021-12-06T15:04:05Z abc123 web 4242 - - hello\n",
            },
            Case {
                name: "data template",
                settings: |s| s.data = "{{.Source}}: {{.Data}}".into(),
                options: &[],
                tcp: false,
                source: Source::Stdout,
                expected: "<14>1 2021-12-06T15:04:05Z abc123 web 4242 - - stdout: hello\n",
            },
        ]
    }

    fn render(
        settings: &SyslogSettings,
        options: &HashMap<String, String>,
        tcp: bool,
        m: &Message,
    ) -> Vec<u8> {
        let renderer = SyslogRenderer::new(settings, options).unwrap();
        let mut line = Vec::new();
        renderer.render(m, &mut line);
        if !tcp {
            return line;
        }
        let mut framed = Vec::new();
        frame(settings.framing, &line, &mut framed);
        framed
    }

    #[test]
    fn worked_examples_render_exact_bytes() {
        // The table assumes a UTC process zone, like the image; elsewhere the zone's offset
        // replaces the `Z` (and octet counts grow by the same amount).
        let local = crate::template::rfc3339_seconds(&web("web", Source::Stdout, ""));
        let utc = "2021-12-06T15:04:05Z";
        for case in cases() {
            let mut settings = SyslogSettings::default();
            (case.settings)(&mut settings);
            let options = case
                .options
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect();
            let bytes = render(
                &settings,
                &options,
                case.tcp,
                &web("web", case.source, "hello"),
            );
            let got = String::from_utf8(bytes).unwrap().replace(&local, utc);
            let extra = local.len() - utc.len();
            let expected = match case.expected.split_once(' ') {
                Some((len, rest)) if extra > 0 && len.parse::<usize>().is_ok() => {
                    format!("{} {rest}", len.parse::<usize>().unwrap() + extra)
                }
                _ => case.expected.to_owned(),
            };
            assert_eq!(got, expected, "{}", case.name);
        }
    }

    #[test]
    fn rendered_lines_parse_as_syslog() {
        for format in [SyslogFormat::Rfc5424, SyslogFormat::Rfc3164] {
            let settings = SyslogSettings {
                format,
                ..SyslogSettings::default()
            };
            let bytes = render(
                &settings,
                &HashMap::new(),
                false,
                &web("web", Source::Stderr, "hello world"),
            );
            let text = String::from_utf8(bytes).unwrap();
            let parsed =
                syslog_loose::parse_message(text.trim_end(), syslog_loose::Variant::Either);
            assert_eq!(parsed.hostname, Some("abc123"), "{text}");
            assert_eq!(parsed.appname, Some("web"), "{text}");
            assert_eq!(
                parsed.procid.map(|p| p.to_string()),
                Some("4242".into()),
                "{text}"
            );
            assert_eq!(parsed.msg, "hello world", "{text}");
            assert_eq!(
                parsed.severity,
                Some(syslog_loose::SyslogSeverity::SEV_ERR),
                "{text}"
            );
            assert_eq!(
                parsed.facility,
                Some(syslog_loose::SyslogFacility::LOG_USER),
                "{text}"
            );
            assert_eq!(
                parsed.timestamp.map(|t| t.timestamp()),
                Some(1_638_803_045),
                "{text}"
            );
        }
    }

    #[test]
    fn long_names_are_truncated_per_format() {
        let name = "n".repeat(60);
        let m = web(&name, Source::Stdout, "x");
        let r5424 = render(&SyslogSettings::default(), &HashMap::new(), false, &m);
        let tag = String::from_utf8(r5424)
            .unwrap()
            .split(' ')
            .nth(3)
            .unwrap()
            .to_owned();
        assert_eq!(tag, "n".repeat(48));
        let settings = SyslogSettings {
            format: SyslogFormat::Rfc3164,
            ..SyslogSettings::default()
        };
        let r3164 = String::from_utf8(render(&settings, &HashMap::new(), false, &m)).unwrap();
        assert!(
            r3164.contains(&format!(" {}[4242]: x\n", "n".repeat(32))),
            "{r3164}"
        );
    }

    #[test]
    fn an_empty_line_keeps_the_space_before_lf() {
        let bytes = render(
            &SyslogSettings::default(),
            &HashMap::new(),
            false,
            &web("web", Source::Stdout, ""),
        );
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.ends_with(" 4242 - - \n"), "{text:?}");
        assert!(text.starts_with("<14>1 "), "{text:?}");
    }

    #[test]
    fn invalid_utf8_is_shipped_unchanged() {
        let mut m = web("web", Source::Stdout, "");
        m.data = Bytes::from_static(b"bad \xff byte");
        let bytes = render(&SyslogSettings::default(), &HashMap::new(), false, &m);
        assert!(bytes.ends_with(b" - - bad \xff byte\n"));
    }
}
