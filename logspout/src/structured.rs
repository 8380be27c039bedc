//! The structured adapters' output, one JSON object per message encoded by serde_json: `json`
//! lines. Lines that are not UTF-8 are sent with U+FFFD in place of the bad bytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::SecondsFormat;
use serde::Serialize;

use crate::message::{ContainerInfo, Message};
use crate::template::{Template, TemplateError};

/// Which of a container's labels a structured route sends (route option `labels`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelection {
    /// `None`: all labels. `Some(prefixes)`: only keys starting with one of them (an empty
    /// list, from `labels=`, sends none).
    prefixes: Option<Vec<String>>,
}

impl LabelSelection {
    /// From a route's options: `labels=com.example.,app` keeps keys starting with either.
    pub fn from_options(options: &HashMap<String, String>) -> Self {
        Self {
            prefixes: options.get("labels").map(|list| {
                list.split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
        }
    }

    /// The selected labels of `container`, sorted by key.
    pub fn select<'a>(&self, container: &'a ContainerInfo) -> BTreeMap<&'a str, &'a str> {
        container
            .labels
            .iter()
            .filter(|(key, _)| match &self.prefixes {
                None => true,
                Some(prefixes) => prefixes.iter().any(|p| key.starts_with(p.as_str())),
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// What a structured route needs besides the message: the host name and the label selection.
#[derive(Debug, Clone)]
pub struct Common {
    /// `SYSLOG_HOSTNAME` (after `/etc/host_hostname`), the host field of syslog lines.
    host: Template,
    labels: LabelSelection,
}

impl Common {
    pub fn new(hostname: &str, options: &HashMap<String, String>) -> Result<Self, TemplateError> {
        Ok(Self {
            host: Template::compile("SYSLOG_HOSTNAME", hostname)?,
            labels: LabelSelection::from_options(options),
        })
    }
}

fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

fn to_vec(value: &impl Serialize) -> Vec<u8> {
    // Serialising maps with string keys and plain values cannot fail.
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// `json+…` routes: one object per line.
#[derive(Debug, Clone)]
pub struct JsonRenderer {
    common: Common,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    message: Cow<'a, str>,
    time: String,
    stream: &'static str,
    container: JsonContainer<'a>,
    host: String,
    labels: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct JsonContainer<'a> {
    id: &'a str,
    name: &'a str,
    image: &'a str,
    hostname: &'a str,
}

impl JsonRenderer {
    pub fn new(common: Common) -> Self {
        Self { common }
    }

    /// Appends the object and a LF to `out`.
    pub fn render(&self, m: &Message, out: &mut Vec<u8>) {
        let c = &*m.container;
        let line = JsonLine {
            message: text(&m.data),
            time: m.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
            stream: m.source.as_str(),
            container: JsonContainer {
                id: &c.id,
                name: c.bare_name(),
                image: &c.image,
                hostname: &c.hostname,
            },
            host: self.common.host.render_string(m),
            labels: self.common.labels.select(c),
        };
        out.extend_from_slice(&to_vec(&line));
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Source;
    use bollard::models::ContainerInspectResponse;
    use bytes::Bytes;
    use chrono::{TimeZone, Utc};
    use serde_json::Value;
    use std::sync::Arc;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn container(labels: &[(&str, &str)]) -> Arc<ContainerInfo> {
        let inspect = ContainerInspectResponse {
            id: Some(ID.into()),
            image: Some("sha256:feed".into()),
            path: Some("sh".into()),
            args: Some(vec!["-c".into(), "echo hi".into()]),
            created: Some("2026-12-02T15:00:00.123456789Z".into()),
            ..ContainerInspectResponse::default()
        };
        Arc::new(ContainerInfo {
            id: ID.into(),
            name: "/web".into(),
            hostname: "abc123".into(),
            image: "busybox:latest".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            inspect: Arc::new(inspect),
            ..ContainerInfo::default()
        })
    }

    fn message(container: Arc<ContainerInfo>, source: Source, data: &[u8]) -> Message {
        Message {
            container,
            source,
            data: Bytes::copy_from_slice(data),
            time: Utc
                .timestamp_opt(1_764_687_600, 123_456_789)
                .single()
                .unwrap(),
        }
    }

    /// Route options as the test cases write them.
    type Opts<'a> = &'a [(&'a str, &'a str)];

    fn options(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn common(pairs: &[(&str, &str)]) -> Common {
        Common::new("{{.Container.Config.Hostname}}", &options(pairs)).unwrap()
    }

    fn json_of(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
    }

    #[test]
    fn json_lines_carry_the_documented_fields() {
        let c = container(&[("app", "web"), ("com.example.tier", "front")]);
        let m = message(c, Source::Stderr, b"hello \"world\"");
        let mut out = Vec::new();
        JsonRenderer::new(common(&[])).render(&m, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "{{\"message\":\"hello \\\"world\\\"\",\"time\":\"2025-12-02T15:00:00.123456789Z\",\
                 \"stream\":\"stderr\",\"container\":{{\"id\":\"{ID}\",\"name\":\"web\",\
                 \"image\":\"busybox:latest\",\"hostname\":\"abc123\"}},\"host\":\"abc123\",\
                 \"labels\":{{\"app\":\"web\",\"com.example.tier\":\"front\"}}}}\n"
            )
        );
    }

    #[test]
    fn label_prefixes_select_labels() {
        let c = container(&[
            ("app", "1"),
            ("apple", "2"),
            ("com.example.x", "3"),
            ("z", "4"),
        ]);
        let cases: [(Opts, &[&str]); 4] = [
            (&[], &["app", "apple", "com.example.x", "z"]),
            (
                &[("labels", "com.example.,app")],
                &["app", "apple", "com.example.x"],
            ),
            (&[("labels", "zz")], &[]),
            (&[("labels", "")], &[]),
        ];
        for (opts, keys) in cases {
            let m = message(c.clone(), Source::Stdout, b"x");
            let mut out = Vec::new();
            JsonRenderer::new(common(opts)).render(&m, &mut out);
            let v = json_of(&out);
            let got: Vec<&str> = v["labels"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(got, keys, "{opts:?}");
        }
    }

    #[test]
    fn hostile_labels_and_lines_stay_one_valid_object_per_line() {
        let c = container(&[
            ("\"},\n{\"x", "\n\r\t\u{0}\u{2028}"),
            ("id", "\\"),
            ("a b/c", "é"),
            ("", ""),
        ]);
        let lines: [&[u8]; 5] = [
            b"\xff\xfe bad utf-8 \xc3",
            b"{\"message\":\"inject\"}",
            b"\0\x1b[31m",
            b"",
            b"line\rwith cr",
        ];
        for line in lines {
            for source in [Source::Stdout, Source::Stderr] {
                let m = message(c.clone(), source, line);
                let mut json = Vec::new();
                JsonRenderer::new(common(&[])).render(&m, &mut json);
                assert_eq!(json.iter().filter(|&&b| b == b'\n').count(), 1);
                assert_eq!(json.last(), Some(&b'\n'));
                let v = json_of(&json);
                assert_eq!(v["message"], String::from_utf8_lossy(line).as_ref());
                assert_eq!(v["labels"]["\"},\n{\"x"], "\n\r\t\u{0}\u{2028}");
                assert_eq!(v["labels"].as_object().unwrap().len(), 4);
            }
        }
    }

    #[test]
    fn huge_lines_are_encoded_whole() {
        let c = container(&[]);
        let line = vec![b'"'; 200_000];
        let m = message(c, Source::Stdout, &line);
        let mut out = Vec::new();
        JsonRenderer::new(common(&[])).render(&m, &mut out);
        assert_eq!(
            json_of(&out)["message"].as_str().map(str::len),
            Some(200_000)
        );
    }
}
