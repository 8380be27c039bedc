//! The structured adapters' output: `json` lines, GELF 1.1 messages (with GELF's UDP chunking)
//! and Logstash events as the `logspout-logstash` module writes them. Each message is one JSON
//! object encoded by serde_json; lines that are not UTF-8 are sent with U+FFFD in place of the
//! bad bytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::SecondsFormat;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::message::{ContainerInfo, Message};
use crate::template::{Template, TemplateError};

/// Largest GELF UDP datagram, chunk header included (the GELF spec's limit).
pub const GELF_CHUNK_BYTES: usize = 8192;
/// Bytes of a GELF chunk header: magic, message ID, sequence number, sequence count.
pub const GELF_CHUNK_HEADER: usize = 12;
/// Most chunks one GELF message may have; a larger message is dropped.
pub const GELF_MAX_CHUNKS: usize = 128;

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

/// `gelf…` routes: GELF 1.1 with the fields Docker's `gelf` log driver sends.
#[derive(Debug, Clone)]
pub struct GelfRenderer {
    common: Common,
}

/// GELF's additional field name for label `key`: `_` in front (unless it starts with one, as
/// Docker does), characters outside `[A-Za-z0-9_.-]` replaced by `_`. `None` for `_id`, which
/// GELF reserves.
pub fn gelf_field_name(key: &str) -> Option<String> {
    let mut name = String::with_capacity(key.len() + 1);
    if !key.starts_with('_') {
        name.push('_');
    }
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            c
        } else {
            '_'
        }
    }));
    (name != "_id").then_some(name)
}

impl GelfRenderer {
    pub fn new(common: Common) -> Self {
        Self { common }
    }

    /// Appends the GELF object (no terminator) to `out`.
    pub fn render(&self, m: &Message, out: &mut Vec<u8>) {
        let c = &*m.container;
        let inspect = &c.inspect;
        let mut object = Map::new();
        // Labels first: the fields below win over a label with the same name.
        for (key, value) in self.common.labels.select(c) {
            if let Some(name) = gelf_field_name(key) {
                object.insert(name, Value::from(value));
            }
        }
        let command = std::iter::once(inspect.path.clone().unwrap_or_default())
            .chain(inspect.args.iter().flatten().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let level = match m.source {
            crate::message::Source::Stdout => 6,
            crate::message::Source::Stderr => 3,
        };
        let fields: [(&str, Value); 12] = [
            ("version", "1.1".into()),
            ("host", self.common.host.render_string(m).into()),
            ("short_message", text(&m.data).into()),
            // Docker's precision: milliseconds.
            (
                "timestamp",
                Value::from(m.time.timestamp_millis() as f64 / 1000.0),
            ),
            ("level", level.into()),
            ("_container_id", c.id.as_str().into()),
            ("_container_name", c.bare_name().into()),
            (
                "_image_id",
                inspect.image.clone().unwrap_or_default().into(),
            ),
            ("_image_name", c.image.as_str().into()),
            ("_command", command.into()),
            ("_tag", c.short_id().into()),
            (
                "_created",
                inspect.created.clone().unwrap_or_default().into(),
            ),
        ];
        for (name, value) in fields {
            object.insert(name.to_owned(), value);
        }
        out.extend_from_slice(&to_vec(&object));
    }
}

/// `message` as GELF UDP chunks of at most [`GELF_CHUNK_BYTES`] each, concatenated (every
/// chunk but the last exactly that long), all with message ID `id`. `None` when it would take
/// more than [`GELF_MAX_CHUNKS`].
pub fn gelf_chunks(message: &[u8], id: [u8; 8]) -> Option<Vec<u8>> {
    let room = GELF_CHUNK_BYTES - GELF_CHUNK_HEADER;
    let count = message.len().div_ceil(room);
    if count > GELF_MAX_CHUNKS {
        return None;
    }
    let count = u8::try_from(count).ok()?;
    let mut out = Vec::with_capacity(message.len() + usize::from(count) * GELF_CHUNK_HEADER);
    for (seq, piece) in (0u8..).zip(message.chunks(room)) {
        out.extend_from_slice(&[0x1e, 0x0f]);
        out.extend_from_slice(&id);
        out.push(seq);
        out.push(count);
        out.extend_from_slice(piece);
    }
    Some(out)
}

/// `logstash…` routes: the event `logspout-logstash` writes.
#[derive(Debug, Clone)]
pub struct LogstashRenderer {
    labels: LabelSelection,
    /// A line that is a JSON object is merged into the event (route option
    /// `decode_json_logs=false` turns it off).
    decode_json: bool,
    /// Route options `tags` and `fields`, used when the container has no `LOGSTASH_TAGS` or
    /// `LOGSTASH_FIELDS` of its own.
    tags: Option<String>,
    fields: Option<String>,
}

#[derive(Serialize)]
struct LogstashDocker<'a> {
    name: &'a str,
    id: &'a str,
    image: &'a str,
    hostname: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
}

impl LogstashRenderer {
    pub fn new(options: &HashMap<String, String>) -> Self {
        Self {
            labels: LabelSelection::from_options(options),
            decode_json: options.get("decode_json_logs").map(String::as_str) != Some("false"),
            tags: options.get("tags").cloned(),
            fields: options.get("fields").cloned(),
        }
    }

    /// Appends the event and a LF to `out`.
    pub fn render(&self, m: &Message, out: &mut Vec<u8>) {
        let c = &*m.container;
        let mut event = match self.decode_json {
            true => serde_json::from_slice::<Map<String, Value>>(&m.data).ok(),
            false => None,
        }
        .unwrap_or_else(|| {
            let mut event = Map::new();
            event.insert("message".into(), text(&m.data).into());
            event
        });
        let docker = LogstashDocker {
            name: &c.name,
            id: &c.id,
            image: &c.image,
            hostname: &c.hostname,
            labels: self.labels.select(c),
        };
        event.insert(
            "docker".into(),
            serde_json::to_value(&docker).unwrap_or_default(),
        );
        event.insert("stream".into(), m.source.as_str().into());
        let tags = c
            .env_var("LOGSTASH_TAGS")
            .or(self.tags.as_deref())
            .filter(|t| !t.is_empty());
        let tags: Vec<&str> = tags.map(|t| t.split(',').collect()).unwrap_or_default();
        event.insert("tags".into(), tags.into());
        let fields = c.env_var("LOGSTASH_FIELDS").or(self.fields.as_deref());
        for field in fields.into_iter().flat_map(|f| f.split(',')) {
            if let Some((key, value)) = field.split_once('=') {
                event.insert(key.to_owned(), value.into());
            }
        }
        out.extend_from_slice(&to_vec(&event));
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
            env: vec!["LOGSTASH_TAGS=a,b".into()],
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
    fn a_label_list_in_a_route_uri_is_written_with_an_encoded_comma() {
        let uris = crate::route::split_route_uris(
            "json+tcp://127.0.0.1:9?labels=com.example.%2Capp,gelf://127.0.0.1:9",
            |_| None,
        );
        assert_eq!(uris.len(), 2, "{uris:?}");
        let route = crate::route::Route::from_uri(&uris[0]).unwrap();
        let options: HashMap<String, String> = route.options.into_iter().collect();
        let c = container(&[("app", "1"), ("com.example.x", "2"), ("other", "3")]);
        let keys: Vec<&str> = LabelSelection::from_options(&options)
            .select(&c)
            .into_keys()
            .collect();
        assert_eq!(keys, ["app", "com.example.x"]);
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

                let mut gelf = Vec::new();
                GelfRenderer::new(common(&[])).render(&m, &mut gelf);
                assert!(!gelf.contains(&0), "a NUL would end the GELF TCP frame");
                let v = json_of(&gelf);
                assert_eq!(v["short_message"], String::from_utf8_lossy(line).as_ref());
                assert_eq!(v["_______x"], "\n\r\t\u{0}\u{2028}");
                assert_eq!(gelf_field_name("\"},\n{\"x").as_deref(), Some("_______x"));
                assert_eq!(v["_a_b_c"], "é");
                assert_eq!(v["_"], "");
                assert!(v.get("_id").is_none(), "{v}");

                let mut logstash = Vec::new();
                LogstashRenderer::new(&options(&[])).render(&m, &mut logstash);
                assert_eq!(logstash.iter().filter(|&&b| b == b'\n').count(), 1);
                let v = json_of(&logstash);
                assert_eq!(v["docker"]["labels"]["id"], "\\");
                assert_eq!(v["stream"], source.as_str());
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
        let mut gelf = Vec::new();
        GelfRenderer::new(common(&[])).render(&m, &mut gelf);
        assert!(gelf.len() > 400_000);
        let chunks = gelf_chunks(&gelf, [7; 8]).unwrap();
        let mut joined = Vec::new();
        let pieces: Vec<&[u8]> = chunks.chunks(GELF_CHUNK_BYTES).collect();
        for (i, chunk) in pieces.iter().enumerate() {
            assert_eq!(&chunk[..10], &[0x1e, 0x0f, 7, 7, 7, 7, 7, 7, 7, 7]);
            assert_eq!(usize::from(chunk[10]), i);
            assert_eq!(usize::from(chunk[11]), pieces.len());
            joined.extend_from_slice(&chunk[GELF_CHUNK_HEADER..]);
        }
        assert_eq!(joined, gelf);
    }

    #[test]
    fn gelf_chunking_limits() {
        let room = GELF_CHUNK_BYTES - GELF_CHUNK_HEADER;
        assert_eq!(gelf_chunks(&[1; 10], [0; 8]).unwrap().len(), 22);
        let full = gelf_chunks(&vec![1; room * GELF_MAX_CHUNKS], [0; 8]).unwrap();
        assert_eq!(full.len(), GELF_CHUNK_BYTES * GELF_MAX_CHUNKS);
        assert_eq!(full[GELF_CHUNK_BYTES * 127 + 10..][..2], [127, 128]);
        assert!(gelf_chunks(&vec![1; room * GELF_MAX_CHUNKS + 1], [0; 8]).is_none());
    }

    #[test]
    fn gelf_has_docker_fields_and_levels() {
        let c = container(&[("container_id", "spoof"), ("_own", "x"), ("version", "9")]);
        for (source, level) in [(Source::Stdout, 6), (Source::Stderr, 3)] {
            let m = message(c.clone(), source, b"hello");
            let mut out = Vec::new();
            GelfRenderer::new(common(&[])).render(&m, &mut out);
            let v = json_of(&out);
            let expected = serde_json::json!({
                "version": "1.1",
                "host": "abc123",
                "short_message": "hello",
                "timestamp": 1_764_687_600.123,
                "level": level,
                "_container_id": ID,
                "_container_name": "web",
                "_image_id": "sha256:feed",
                "_image_name": "busybox:latest",
                "_command": "sh -c echo hi",
                "_tag": "0123456789ab",
                "_created": "2026-12-02T15:00:00.123456789Z",
                "_own": "x",
                "_version": "9",
            });
            assert_eq!(v, expected);
        }
        let mut out = Vec::new();
        let m = message(c, Source::Stdout, b"x");
        GelfRenderer::new(common(&[("labels", "_")])).render(&m, &mut out);
        assert_eq!(json_of(&out)["_own"], "x");
        assert!(json_of(&out).get("_version").is_none());
    }

    #[test]
    fn logstash_events_follow_logspout_logstash() {
        let c = container(&[("app", "web")]);
        let cases: [(Opts, &[u8], Value); 4] = [
            (&[], b"plain", serde_json::json!({"message": "plain"})),
            (
                &[],
                b"{\"level\":\"info\",\"stream\":\"spoof\",\"n\":1}",
                serde_json::json!({"level": "info", "n": 1}),
            ),
            (
                &[("decode_json_logs", "false")],
                b"{\"n\":1}",
                serde_json::json!({"message": "{\"n\":1}"}),
            ),
            (&[], b"[1,2]", serde_json::json!({"message": "[1,2]"})),
        ];
        for (opts, line, extra) in cases {
            let m = message(c.clone(), Source::Stdout, line);
            let mut out = Vec::new();
            LogstashRenderer::new(&options(opts)).render(&m, &mut out);
            let mut expected = serde_json::json!({
                "docker": {
                    "name": "/web",
                    "id": ID,
                    "image": "busybox:latest",
                    "hostname": "abc123",
                    "labels": {"app": "web"},
                },
                "stream": "stdout",
                "tags": ["a", "b"],
            });
            for (k, v) in extra.as_object().unwrap() {
                expected[k] = v.clone();
            }
            assert_eq!(json_of(&out), expected, "{}", String::from_utf8_lossy(line));
        }
        let bare = Arc::new(ContainerInfo {
            env: Vec::new(),
            ..ContainerInfo::clone(&c)
        });
        let m = message(bare, Source::Stderr, b"x");
        let mut out = Vec::new();
        LogstashRenderer::new(&options(&[
            ("tags", "t1"),
            ("fields", "env=prod,bad,k=v=w"),
        ]))
        .render(&m, &mut out);
        let v = json_of(&out);
        assert_eq!(v["tags"], serde_json::json!(["t1"]));
        assert_eq!(v["env"], "prod");
        assert_eq!(v["k"], "v=w");
        assert_eq!(v["stream"], "stderr");
    }
}
