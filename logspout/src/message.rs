//! One log line of one container, and the container facts templates and filters look at.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bollard::models::ContainerInspectResponse;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// Which output stream of the container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Stdout,
    Stderr,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// What logspout knows about a container, captured by an inspect when it is attached.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerInfo {
    /// Full 64-hex-digit ID.
    pub id: String,
    /// Docker name with its leading `/` (`/web`).
    pub name: String,
    /// `Config.Hostname`.
    pub hostname: String,
    /// `Config.Image`.
    pub image: String,
    /// `Config.Labels`.
    pub labels: HashMap<String, String>,
    /// `Config.Env` as `KEY=value` strings.
    pub env: Vec<String>,
    /// `State.Pid`: host PID of the main process.
    pub pid: i64,
    /// `Config.Tty`.
    pub tty: bool,
    /// `HostConfig.LogConfig.Type`.
    pub log_driver: String,
    /// The whole inspect result: `Container` in `/logs` JSON messages.
    pub inspect: Arc<ContainerInspectResponse>,
    /// `inspect` (with `name`) as `/logs` JSON, made at the first JSON line of this container
    /// (once per container and rename) and spliced into every JSON line.
    pub inspect_json: OnceLock<Arc<str>>,
    /// `inspect` as Docker's JSON, for templates (`.Container.HostConfig…`);
    /// `Null` where it is not known. The fields above win over it.
    pub inspect_value: Arc<serde_json::Value>,
}

impl ContainerInfo {
    /// The 12-character short ID.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// The name without its leading `/` (what `{{.ContainerName}}` renders).
    pub fn bare_name(&self) -> &str {
        self.name.strip_prefix('/').unwrap_or(&self.name)
    }

    /// This container under a new name (a `rename` event); `/logs` JSON shows it too.
    pub fn renamed(&self, name: String) -> Self {
        let mut inspect = ContainerInspectResponse::clone(&self.inspect);
        inspect.name = Some(name.clone());
        Self {
            name,
            inspect: Arc::new(inspect),
            inspect_json: OnceLock::new(),
            ..self.clone()
        }
    }

    /// The inspect result as pretty-printed JSON (2-space indent, Go's HTML-safe escaping),
    /// indented one level to sit as a value inside a `/logs` JSON message.
    pub fn inspect_json(&self) -> Arc<str> {
        self.inspect_json
            .get_or_init(|| {
                let json =
                    serde_json::to_string_pretty(&*self.inspect).unwrap_or_else(|_| "{}".into());
                Arc::from(go_json_escape(&json).replace('\n', "\n  "))
            })
            .clone()
    }

    /// The value of env var `key` in the container's environment.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
        })
    }
}

/// One line of a container's output.
#[derive(Debug, Clone)]
pub struct Message {
    pub container: Arc<ContainerInfo>,
    pub source: Source,
    /// The line without its trailing `\n` (a `\r` is kept). Not necessarily UTF-8.
    pub data: Bytes,
    /// Docker's timestamp of the line.
    pub time: DateTime<Utc>,
}

/// The first 12 characters of a container ID (all of it if shorter). Docker's IDs are hex, but
/// the ID is outside input: cut at a character boundary, never inside one.
pub fn short_id(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(end, _)| &id[..end])
}

/// Escapes serialized JSON as Go's `encoding/json` does: `<`, `>`, `&`, U+2028 and U+2029 as
/// `\uXXXX`. They can only occur inside JSON strings, where the escape means the same.
pub fn go_json_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}
