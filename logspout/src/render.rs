//! Turns a message into the exact bytes a route sends: the syslog, raw, json, GELF or Logstash
//! adapter's output, framed for the route's transport.

use std::collections::HashMap;

use crate::message::Message;
use crate::multiline::MultilineSettings;
use crate::route::{AdapterKind, AdapterSpec, RouteError};
use crate::structured::{Common, GelfRenderer, JsonRenderer, LogstashRenderer};
use crate::syslog::{SyslogRenderer, SyslogSettings, TcpFraming, frame};
use crate::template::Template;

/// Default `RAW_FORMAT`: the line and a real LF.
pub const DEFAULT_RAW_FORMAT: &str = "{{.Data}}\n";

/// The adapter settings every route is built from.
#[derive(Debug, Clone)]
pub struct AdapterSettings {
    pub syslog: SyslogSettings,
    /// `RAW_FORMAT`, verbatim (escape sequences are not interpreted, as in the original).
    pub raw_format: String,
    /// `MULTILINE_*`, for `multiline+…` routes.
    pub multiline: MultilineSettings,
}

impl Default for AdapterSettings {
    fn default() -> Self {
        Self {
            syslog: SyslogSettings::default(),
            raw_format: DEFAULT_RAW_FORMAT.to_owned(),
            multiline: MultilineSettings::default(),
        }
    }
}

/// The renderer of one route.
#[derive(Debug, Clone)]
pub enum Renderer {
    /// Syslog lines; `Some(framing)` on TCP and TLS.
    Syslog(SyslogRenderer, Option<TcpFraming>),
    /// The `RAW_FORMAT` template, unframed.
    Raw(Template),
    /// One JSON object and a LF.
    Json(JsonRenderer),
    /// A GELF object; `true`: NUL-terminated (TCP and TLS), else one datagram (chunked by
    /// the route when larger than a GELF datagram).
    Gelf(GelfRenderer, bool),
    /// One Logstash event and a LF.
    Logstash(LogstashRenderer),
}

impl Renderer {
    pub fn new(
        spec: AdapterSpec,
        settings: &AdapterSettings,
        options: &HashMap<String, String>,
    ) -> Result<Self, RouteError> {
        Ok(match spec.kind {
            AdapterKind::Syslog => {
                // RELP frames each message itself: the line as on UDP (its LF is dropped).
                let framing = (spec.transport.is_stream() && !spec.transport.is_relp())
                    .then_some(settings.syslog.framing);
                Self::Syslog(SyslogRenderer::new(&settings.syslog, options)?, framing)
            }
            AdapterKind::Raw => Self::Raw(Template::compile("RAW_FORMAT", &settings.raw_format)?),
            AdapterKind::Json => Self::Json(JsonRenderer::new(Common::new(
                &settings.syslog.hostname,
                options,
            )?)),
            AdapterKind::Gelf => Self::Gelf(
                GelfRenderer::new(Common::new(&settings.syslog.hostname, options)?),
                spec.transport.is_stream(),
            ),
            AdapterKind::Logstash => Self::Logstash(LogstashRenderer::new(options)),
        })
    }

    /// True for the adapters whose output is one JSON document per message (a piece of a line
    /// must be rendered again, never cut).
    pub fn is_structured(&self) -> bool {
        matches!(self, Self::Json(_) | Self::Gelf(..) | Self::Logstash(_))
    }

    /// True for GELF over UDP: messages larger than a datagram are chunked, not split.
    pub fn is_gelf_datagram(&self) -> bool {
        matches!(self, Self::Gelf(_, false))
    }

    /// The bytes to send for `message` (one datagram on UDP).
    pub fn render(&self, message: &Message) -> Vec<u8> {
        match self {
            Self::Syslog(renderer, None) => {
                let mut out = Vec::with_capacity(message.data.len() + 96);
                renderer.render(message, &mut out);
                out
            }
            Self::Syslog(renderer, Some(framing)) => {
                let mut line = Vec::with_capacity(message.data.len() + 96);
                renderer.render(message, &mut line);
                if *framing == TcpFraming::Traditional {
                    return line;
                }
                let mut out = Vec::with_capacity(line.len() + 8);
                frame(*framing, &line, &mut out);
                out
            }
            Self::Raw(template) => {
                let mut out = Vec::with_capacity(message.data.len() + 1);
                template.render(message, &mut out);
                out
            }
            Self::Json(renderer) => {
                let mut out = Vec::with_capacity(message.data.len() + 512);
                renderer.render(message, &mut out);
                out
            }
            Self::Gelf(renderer, stream) => {
                let mut out = Vec::with_capacity(message.data.len() + 768);
                renderer.render(message, &mut out);
                if *stream {
                    out.push(0);
                }
                out
            }
            Self::Logstash(renderer) => {
                let mut out = Vec::with_capacity(message.data.len() + 512);
                renderer.render(message, &mut out);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ContainerInfo, Source};
    use bytes::Bytes;
    use chrono::Utc;
    use std::sync::Arc;

    fn hello(data: &str) -> Message {
        Message {
            container: Arc::new(ContainerInfo {
                id: "abc".into(),
                name: "/web".into(),
                ..ContainerInfo::default()
            }),
            source: Source::Stdout,
            data: Bytes::copy_from_slice(data.as_bytes()),
            time: Utc::now(),
        }
    }

    #[test]
    fn raw_routes_render_the_spec_examples() {
        let cases = [
            ("raw", DEFAULT_RAW_FORMAT, "hello", "hello\n"),
            ("tcp", DEFAULT_RAW_FORMAT, "hello", "hello\n"),
            (
                "raw+tcp",
                "{{.Container.Name}}|{{.Source}}|{{.Data}}\n",
                "hello",
                "/web|stdout|hello\n",
            ),
            ("tcp", "{{toJSON .Data}}", "a\"<b", "\"a\\\"\\u003cb\""),
            ("raw", "{{.Data}}\\n", "hello", "hello\\n"),
        ];
        for (adapter, format, line, expected) in cases {
            let (spec, _) = AdapterSpec::resolve(adapter).unwrap();
            let settings = AdapterSettings {
                raw_format: format.into(),
                ..AdapterSettings::default()
            };
            let renderer = Renderer::new(spec, &settings, &HashMap::new()).unwrap();
            assert_eq!(
                String::from_utf8(renderer.render(&hello(line))).unwrap(),
                expected,
                "{format}"
            );
        }
    }

    #[test]
    fn structured_routes_frame_for_their_transport() {
        let cases = [
            ("json", b'\n'),
            ("json+tcp", b'\n'),
            ("json+tls", b'\n'),
            ("gelf", b'}'),
            ("gelf+tcp", 0),
            ("gelf+tls", 0),
            ("logstash", b'\n'),
            ("logstash+tcp", b'\n'),
        ];
        for (adapter, last) in cases {
            let (spec, _) = AdapterSpec::resolve(adapter).unwrap();
            let renderer =
                Renderer::new(spec, &AdapterSettings::default(), &HashMap::new()).unwrap();
            let out = renderer.render(&hello("hi"));
            assert_eq!(out.last(), Some(&last), "{adapter}");
            let body = out
                .strip_suffix(&[last])
                .filter(|_| last != b'}')
                .unwrap_or(&out);
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert!(v.is_object(), "{adapter}");
            assert!(renderer.is_structured());
            assert_eq!(renderer.is_gelf_datagram(), adapter == "gelf");
        }
    }

    #[test]
    fn a_bad_template_fails_route_creation() {
        let (spec, _) = AdapterSpec::resolve("raw").unwrap();
        let settings = AdapterSettings {
            raw_format: "{{.Nope}}".into(),
            ..AdapterSettings::default()
        };
        let err = Renderer::new(spec, &settings, &HashMap::new()).unwrap_err();
        assert!(
            err.to_string().starts_with("RAW_FORMAT: bad template"),
            "{err}"
        );
    }
}
