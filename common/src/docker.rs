//! Docker Engine connection settings: `DOCKER_HOST` parsing, socket fallbacks, and a `connect`
//! that negotiates the API version with the daemon (so any Engine from API 1.41 on works).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};

use crate::etcd::split_host_port;

/// Where registrator and the seed's units mount the socket: `-v /var/run/docker.sock:/tmp/docker.sock`.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///tmp/docker.sock";

/// Why a Docker endpoint is invalid or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("invalid DOCKER_HOST {value:?}: {reason}")]
    InvalidHost { value: String, reason: String },
    #[error("cannot connect to Docker at {host}: {source}")]
    Connect {
        host: DockerHost,
        #[source]
        source: bollard::errors::Error,
    },
}

/// A Docker Engine endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerHost {
    /// `unix:///path/to/docker.sock`
    Unix(PathBuf),
    /// `tcp://host:port` (plain HTTP).
    Tcp(String),
}

impl fmt::Display for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

impl FromStr for DockerHost {
    type Err = DockerError;

    /// Accepts `unix:///path`, a bare absolute path, `tcp://host:port` and `http://host:port`.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| DockerError::InvalidHost {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = value.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(invalid(
                    "a unix socket path must be absolute (unix:///path)",
                ));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if value.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(value)));
        }
        let rest = value
            .strip_prefix("tcp://")
            .or_else(|| value.strip_prefix("http://"))
            .ok_or_else(|| invalid("expected unix:///path or tcp://host:port"))?;
        let authority = rest.trim_end_matches('/');
        let (host, port) = split_host_port(authority).map_err(|reason| invalid(&reason))?;
        match (host.is_empty(), port) {
            (false, Some(port)) => Ok(Self::Tcp(format!("{host}:{port}"))),
            _ => Err(invalid("expected tcp://host:port")),
        }
    }
}

/// How to reach the Docker Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSettings {
    pub host: DockerHost,
    /// Bound on each non-streaming request.
    pub timeout: Duration,
}

impl DockerSettings {
    /// Settings for an explicit endpoint.
    pub fn new(host: DockerHost) -> Self {
        Self {
            host,
            timeout: Duration::from_secs(120),
        }
    }

    /// `DOCKER_HOST` if set and non-empty, else `default`.
    pub fn from_env(default: &str) -> Result<Self, DockerError> {
        Self::from_value(std::env::var("DOCKER_HOST").ok().as_deref(), &[default])
    }

    /// `value` if non-empty; otherwise the first of `sockets` that exists as a unix socket path
    /// (or the first one if none exists, so that the error names it).
    pub fn from_value(value: Option<&str>, sockets: &[&str]) -> Result<Self, DockerError> {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            return Ok(Self::new(value.trim().parse()?));
        }
        let chosen = sockets
            .iter()
            .find(|candidate| match candidate.parse::<DockerHost>() {
                Ok(DockerHost::Unix(path)) => Path::new(&path).exists(),
                _ => false,
            })
            .or(sockets.first())
            .copied()
            .unwrap_or(DEFAULT_DOCKER_HOST);
        Ok(Self::new(chosen.parse()?))
    }

    /// Connects, negotiates the API version and pings the daemon.
    pub async fn connect(&self) -> Result<Docker, DockerError> {
        let error = |source| DockerError::Connect {
            host: self.host.clone(),
            source,
        };
        let timeout = self.timeout.as_secs().max(1);
        let docker = match &self.host {
            DockerHost::Unix(path) => {
                Docker::connect_with_unix(&path.to_string_lossy(), timeout, API_DEFAULT_VERSION)
            }
            DockerHost::Tcp(addr) => Docker::connect_with_http(addr, timeout, API_DEFAULT_VERSION),
        }
        .map_err(error)?;
        let docker = docker.negotiate_version().await.map_err(error)?;
        docker.ping().await.map_err(error)?;
        Ok(docker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hosts_parse() {
        let cases = [
            (
                "unix:///tmp/docker.sock",
                DockerHost::Unix("/tmp/docker.sock".into()),
            ),
            (
                "/var/run/docker.sock",
                DockerHost::Unix("/var/run/docker.sock".into()),
            ),
            (
                "tcp://127.0.0.1:2375",
                DockerHost::Tcp("127.0.0.1:2375".into()),
            ),
            ("http://docker:2375/", DockerHost::Tcp("docker:2375".into())),
            ("tcp://[::1]:2375", DockerHost::Tcp("[::1]:2375".into())),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<DockerHost>().unwrap(), expected, "{input}");
        }
        assert_eq!(
            DockerHost::Unix("/tmp/docker.sock".into()).to_string(),
            "unix:///tmp/docker.sock"
        );
    }

    #[test]
    fn bad_docker_hosts_are_errors() {
        for bad in [
            "unix://relative",
            "tcp://host",
            "tcp://:2375",
            "ssh://x",
            "npipe:////./pipe",
            "",
        ] {
            let err = bad.parse::<DockerHost>().unwrap_err().to_string();
            assert!(err.starts_with("invalid DOCKER_HOST"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn an_explicit_value_wins_over_socket_candidates() {
        let s =
            DockerSettings::from_value(Some("tcp://127.0.0.1:2375"), &["unix:///tmp/x"]).unwrap();
        assert_eq!(s.host, DockerHost::Tcp("127.0.0.1:2375".into()));
    }

    #[test]
    fn the_first_existing_socket_is_chosen() {
        let dir = std::env::temp_dir().join(format!("docker-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let present = dir.join("present.sock");
        std::fs::write(&present, b"").unwrap();
        let missing = format!("unix://{}", dir.join("missing.sock").display());
        let present_uri = format!("unix://{}", present.display());
        let chosen = DockerSettings::from_value(None, &[&missing, &present_uri]).unwrap();
        assert_eq!(chosen.host, DockerHost::Unix(present.clone()));
        let fallback = DockerSettings::from_value(Some(" "), &[&missing]).unwrap();
        assert_eq!(fallback.host, DockerHost::Unix(dir.join("missing.sock")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
