//! One log line of one container, and the container facts templates and filters look at.

use std::collections::HashMap;
use std::sync::Arc;

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
