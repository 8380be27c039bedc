//! The subset of Go `text/template` that logspout's format variables use (`SYSLOG_TAG`,
//! `RAW_FORMAT`, …): field paths, label/env look-ups and `toJSON`. Anything else is rejected
//! when the template is compiled, so a typo is a start-up error instead of a dead route.

use chrono::{Local, SecondsFormat};

use crate::message::{Message, Source};

/// Why a template was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: unsupported template {action:?}: {reason}")]
pub struct TemplateError {
    /// The variable the template came from (`SYSLOG_TAG`).
    pub setting: String,
    /// The offending `{{ … }}` action (or the whole text if it is malformed).
    pub action: String,
    pub reason: String,
}

/// A value a template can print.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    Data,
    Source,
    /// `.Timestamp`: RFC 3339, whole seconds, local zone (`Z` for UTC).
    Timestamp,
    /// `.Time.Unix`
    TimeUnix,
    /// `.Priority`: 14 for stdout, 11 for stderr.
    Priority,
    /// `.ContainerName`: the name without its leading `/`.
    ContainerName,
    /// `.Container.Name`: with the leading `/`.
    ContainerFullName,
    ContainerId,
    Hostname,
    Image,
    Pid,
    Label(String),
    Env(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
    Json(Field),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `text`; `setting` names its source in errors.
    pub fn compile(setting: &str, text: &str) -> Result<Self, TemplateError> {
        let error = |action: &str, reason: &str| TemplateError {
            setting: setting.to_owned(),
            action: action.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = Vec::new();
        let mut rest = text;
        let mut trim_next_text = false;
        while let Some(open) = rest.find("{{") {
            let mut literal = &rest[..open];
            if trim_next_text {
                literal = literal.trim_start();
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| error(&rest[open..], "unclosed action"))?;
            let mut inner = &after[..close];
            let action = format!("{{{{{inner}}}}}");
            if let Some(stripped) = inner.strip_prefix("- ") {
                literal = literal.trim_end();
                inner = stripped;
            }
            trim_next_text = false;
            if let Some(stripped) = inner.strip_suffix(" -") {
                trim_next_text = true;
                inner = stripped;
            }
            if !literal.is_empty() {
                parts.push(Part::Text(literal.to_owned()));
            }
            parts.push(parse_action(inner).map_err(|reason| error(&action, &reason))?);
            rest = &after[close + 2..];
        }
        let literal = if trim_next_text {
            rest.trim_start()
        } else {
            rest
        };
        if !literal.is_empty() {
            parts.push(Part::Text(literal.to_owned()));
        }
        Ok(Self { parts })
    }

    /// Renders the template for `message`, appending to `out`.
    pub fn render(&self, message: &Message, out: &mut Vec<u8>) {
        for part in &self.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text.as_bytes()),
                Part::Field(field) => write_field(field, message, out),
                Part::Json(field) => write_json(field, message, out),
            }
        }
    }

    /// Renders to a string (invalid UTF-8 in the line becomes U+FFFD).
    pub fn render_string(&self, message: &Message) -> String {
        let mut out = Vec::new();
        self.render(message, &mut out);
        match String::from_utf8(out) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

/// Splits an action into words, keeping double-quoted strings whole (quotes removed).
fn words(action: &str) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    let mut chars = action.trim().chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut word = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(escaped) => word.push(escaped),
                        None => return Err("unterminated string".into()),
                    },
                    Some(other) => word.push(other),
                    None => return Err("unterminated string".into()),
                }
            }
            out.push((word, true));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push((word, false));
        }
    }
    Ok(out)
}

fn parse_action(action: &str) -> Result<Part, String> {
    let words = words(action)?;
    let plain: Vec<(&str, bool)> = words.iter().map(|(w, q)| (w.as_str(), *q)).collect();
    match plain.as_slice() {
        [("toJSON", false), rest @ ..] => parse_value(rest).map(Part::Json),
        rest => parse_value(rest).map(Part::Field),
    }
}

fn parse_value(words: &[(&str, bool)]) -> Result<Field, String> {
    match words {
        [(path, false)] => parse_path(path),
        [
            ("index", false),
            (".Container.Config.Labels", false),
            (key, true),
        ] => Ok(Field::Label((*key).to_owned())),
        [("env", false), (key, true)] => Ok(Field::Env((*key).to_owned())),
        [] => Err("empty action".into()),
        _ => Err(SUPPORTED.into()),
    }
}

const SUPPORTED: &str = "supported are .Data, .Source, .Timestamp, .Time.Unix, .Priority, \
    .ContainerName, .Container.Name, .Container.ID, .Container.Config.Hostname, \
    .Container.Config.Image, .Container.State.Pid, .Container.Config.Labels.<key>, \
    index .Container.Config.Labels \"<key>\", env \"<VAR>\" and toJSON of any of these";

fn parse_path(path: &str) -> Result<Field, String> {
    let field = match path {
        ".Data" => Field::Data,
        ".Source" => Field::Source,
        ".Timestamp" => Field::Timestamp,
        ".Time.Unix" => Field::TimeUnix,
        ".Priority" => Field::Priority,
        ".ContainerName" => Field::ContainerName,
        ".Container.Name" => Field::ContainerFullName,
        ".Container.ID" | ".Container.Id" => Field::ContainerId,
        ".Container.Config.Hostname" => Field::Hostname,
        ".Container.Config.Image" => Field::Image,
        ".Container.State.Pid" => Field::Pid,
        other => match other.strip_prefix(".Container.Config.Labels.") {
            Some(key) if !key.is_empty() && !key.contains('.') => Field::Label(key.to_owned()),
            _ => return Err(SUPPORTED.into()),
        },
    };
    Ok(field)
}

/// The syslog priority of a line: LOG_USER|LOG_INFO for stdout, LOG_USER|LOG_ERR for stderr.
pub fn priority(source: Source) -> u8 {
    match source {
        Source::Stdout => 14,
        Source::Stderr => 11,
    }
}

/// Go's `time.RFC3339` in the local zone: whole seconds, `Z` when the zone is UTC.
pub fn rfc3339_seconds(message: &Message) -> String {
    message
        .time
        .with_timezone(&Local)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn write_field(field: &Field, m: &Message, out: &mut Vec<u8>) {
    let c = &m.container;
    match field {
        Field::Data => out.extend_from_slice(&m.data),
        Field::Source => out.extend_from_slice(m.source.as_str().as_bytes()),
        Field::Timestamp => out.extend_from_slice(rfc3339_seconds(m).as_bytes()),
        Field::TimeUnix => out.extend_from_slice(m.time.timestamp().to_string().as_bytes()),
        Field::Priority => out.extend_from_slice(priority(m.source).to_string().as_bytes()),
        Field::ContainerName => out.extend_from_slice(c.bare_name().as_bytes()),
        Field::ContainerFullName => out.extend_from_slice(c.name.as_bytes()),
        Field::ContainerId => out.extend_from_slice(c.id.as_bytes()),
        Field::Hostname => out.extend_from_slice(c.hostname.as_bytes()),
        Field::Image => out.extend_from_slice(c.image.as_bytes()),
        Field::Pid => out.extend_from_slice(c.pid.to_string().as_bytes()),
        Field::Label(key) => {
            out.extend_from_slice(c.labels.get(key).map_or("", String::as_str).as_bytes())
        }
        Field::Env(key) => out.extend_from_slice(c.env_var(key).unwrap_or("").as_bytes()),
    }
}

/// Go's `json.Marshal`: strings HTML-safe escaped (`<` → `\u003c`), numbers bare.
fn write_json(field: &Field, m: &Message, out: &mut Vec<u8>) {
    match field {
        Field::Pid => out.extend_from_slice(m.container.pid.to_string().as_bytes()),
        Field::Priority => out.extend_from_slice(priority(m.source).to_string().as_bytes()),
        Field::TimeUnix => out.extend_from_slice(m.time.timestamp().to_string().as_bytes()),
        other => {
            let mut raw = Vec::new();
            write_field(other, m, &mut raw);
            let text = String::from_utf8_lossy(&raw);
            let encoded = serde_json::Value::String(text.into_owned()).to_string();
            for ch in encoded.chars() {
                match ch {
                    '<' => out.extend_from_slice(b"\\u003c"),
                    '>' => out.extend_from_slice(b"\\u003e"),
                    '&' => out.extend_from_slice(b"\\u0026"),
                    '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                    '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                    other => {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ContainerInfo;
    use bytes::Bytes;
    use chrono::{TimeZone, Utc};
    use std::sync::Arc;

    fn message(data: &str) -> Message {
        let container = ContainerInfo {
            id: "abc123def4567890".into(),
            name: "/web".into(),
            hostname: "abc123".into(),
            image: "nginx".into(),
            labels: [("team".to_owned(), "core".to_owned())].into(),
            env: vec!["APP=shop".into(), "EMPTY=".into()],
            pid: 4242,
            ..ContainerInfo::default()
        };
        Message {
            container: Arc::new(container),
            source: Source::Stdout,
            data: Bytes::copy_from_slice(data.as_bytes()),
            time: Utc.with_ymd_and_hms(2021, 12, 6, 15, 4, 5).unwrap(),
        }
    }

    #[test]
    fn supported_templates_render() {
        let cases = [
            ("{{.Data}}", "hello"),
            ("{{.Source}}:{{.Data}}", "stdout:hello"),
            (
                "{{.Container.Name}}|{{.Source}}|{{.Data}}\n",
                "/web|stdout|hello\n",
            ),
            ("{{.ContainerName}}", "web"),
            ("{{.Container.Config.Hostname}}", "abc123"),
            ("{{ .Container.Config.Image }}", "nginx"),
            ("{{.Container.State.Pid}}", "4242"),
            ("{{.Container.ID}}", "abc123def4567890"),
            ("{{.Priority}}", "14"),
            ("{{.Time.Unix}}", "1638803045"),
            ("{{index .Container.Config.Labels \"team\"}}", "core"),
            ("{{.Container.Config.Labels.team}}", "core"),
            ("{{index .Container.Config.Labels \"missing\"}}", ""),
            ("{{env \"APP\"}}-{{env \"NOPE\"}}", "shop-"),
            ("{{toJSON .Data}}", "\"say \\\"hi\\\" \\u003cb\\u003e\""),
            ("{{toJSON .Container.State.Pid}}", "4242"),
            ("a {{- .Data -}} b", "asay \"hi\" <b>b"),
            ("plain", "plain"),
        ];
        for (text, expected) in cases {
            let template = Template::compile("T", text).unwrap();
            let data = if text.contains("toJSON .Data") || text.contains("{{-") {
                "say \"hi\" <b>"
            } else {
                "hello"
            };
            assert_eq!(template.render_string(&message(data)), expected, "{text}");
        }
        if Local::now().offset().local_minus_utc() == 0 {
            let ts = Template::compile("T", "{{.Timestamp}}").unwrap();
            assert_eq!(ts.render_string(&message("x")), "2021-12-06T15:04:05Z");
        }
    }

    #[test]
    fn unsupported_templates_are_errors_naming_the_setting() {
        for text in [
            "{{.Nope}}",
            "{{.Hostname}}",
            "{{.Container.Config.Labels}}",
            "{{printf \"%s\" .Data}}",
            "{{.Data",
            "{{}}",
            "{{index .Container.Config.Env \"X\"}}",
            "{{env \"unterminated}}",
        ] {
            let err = Template::compile("SYSLOG_TAG", text).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("SYSLOG_TAG: unsupported template"),
                "{err}"
            );
        }
    }
}
