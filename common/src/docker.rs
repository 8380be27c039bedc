//! Docker Engine connection settings: `DOCKER_HOST` parsing, socket fallbacks, TLS from
//! `DOCKER_TLS_VERIFY`/`DOCKER_CERT_PATH`, and a `connect` that negotiates the API version with
//! the daemon (so any Engine from API 1.41 on works).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, Docker};

use crate::etcd::split_host_port;

/// Where registrator and the seed's units mount the socket: `-v /var/run/docker.sock:/tmp/docker.sock`.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///tmp/docker.sock";
/// How often [`pause_unless_answering`] pings a lost daemon.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Bound on one ping (a local daemon answers in a millisecond).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a Docker endpoint is invalid or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("invalid DOCKER_HOST {value:?}: {reason}")]
    InvalidHost { value: String, reason: String },
    #[error("DOCKER_TLS_VERIFY is set but {file} cannot be read: {reason}")]
    TlsFile { file: PathBuf, reason: String },
    #[error("DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME is")]
    TlsNoCertPath,
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

/// The client certificate, key and CA with which a `tcp://` Docker Engine is reached over
/// verified TLS, as the Docker CLI names them in its certificate directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl DockerTls {
    /// The Docker CLI's rule: a non-empty `DOCKER_TLS_VERIFY` means TLS with `ca.pem`,
    /// `cert.pem` and `key.pem` from `DOCKER_CERT_PATH`, else from `$HOME/.docker`. The files
    /// must be readable now, so that a wrong path is a start-up error rather than a retry loop.
    pub fn from_values(
        verify: Option<&str>,
        cert_path: Option<&str>,
        home: Option<&str>,
    ) -> Result<Option<Self>, DockerError> {
        if verify.is_none_or(|v| v.is_empty()) {
            return Ok(None);
        }
        let dir = match (cert_path.filter(|p| !p.is_empty()), home) {
            (Some(path), _) => PathBuf::from(path),
            (None, Some(home)) if !home.is_empty() => Path::new(home).join(".docker"),
            _ => return Err(DockerError::TlsNoCertPath),
        };
        let tls = Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        for file in [&tls.ca, &tls.cert, &tls.key] {
            if let Err(e) = std::fs::File::open(file) {
                return Err(DockerError::TlsFile {
                    file: file.clone(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(Some(tls))
    }
}

/// How to reach the Docker Engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSettings {
    pub host: DockerHost,
    /// Verified TLS for a `tcp://` host (ignored for a unix socket, as by the Docker CLI).
    pub tls: Option<DockerTls>,
    /// Bound on each non-streaming request.
    pub timeout: Duration,
}

impl DockerSettings {
    /// Settings for an explicit endpoint.
    pub fn new(host: DockerHost) -> Self {
        Self {
            host,
            tls: None,
            timeout: Duration::from_secs(120),
        }
    }

    /// From the Docker CLI's variables, each read through `var`: `DOCKER_HOST` (else the first
    /// existing of `sockets`, see [`Self::from_value`]), `DOCKER_TLS_VERIFY` and
    /// `DOCKER_CERT_PATH` (see [`DockerTls::from_values`]).
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        sockets: &[&str],
    ) -> Result<Self, DockerError> {
        let settings = Self::from_value(var("DOCKER_HOST").as_deref(), sockets)?;
        let tls = DockerTls::from_values(
            var("DOCKER_TLS_VERIFY").as_deref(),
            var("DOCKER_CERT_PATH").as_deref(),
            var("HOME").as_deref(),
        )?;
        Ok(Self { tls, ..settings })
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
        let docker = self.client()?;
        let docker = docker.negotiate_version().await.map_err(error)?;
        docker.ping().await.map_err(error)?;
        Ok(docker)
    }

    /// [`pause_unless_answering`] for a daemon not connected to yet (its socket may not even
    /// exist while it restarts: that counts as not answering).
    pub async fn pause_unless_answering(
        &self,
        delay: Duration,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> bool {
        pause_while_away(delay, shutdown, || async {
            match self.client() {
                Ok(docker) => answers(&docker).await,
                Err(_) => false,
            }
        })
        .await
    }

    /// A client for the daemon (no request made yet).
    fn client(&self) -> Result<Docker, DockerError> {
        let error = |source| DockerError::Connect {
            host: self.host.clone(),
            source,
        };
        let timeout = self.timeout.as_secs().max(1);
        match (&self.host, &self.tls) {
            (DockerHost::Unix(path), _) => {
                Docker::connect_with_unix(&path.to_string_lossy(), timeout, API_DEFAULT_VERSION)
            }
            (DockerHost::Tcp(addr), None) => {
                Docker::connect_with_http(addr, timeout, API_DEFAULT_VERSION)
            }
            (DockerHost::Tcp(addr), Some(tls)) => Docker::connect_with_ssl(
                addr,
                &tls.key,
                &tls.cert,
                &tls.ca,
                timeout,
                API_DEFAULT_VERSION,
            ),
        }
        .map_err(error)
    }
}

/// True when the daemon answers a ping within [`PROBE_TIMEOUT`].
pub async fn answers(docker: &Docker) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, docker.ping()).await,
        Ok(Ok(_))
    )
}

/// Waits `delay` before retrying something that failed against the daemon. If the daemon does
/// not answer a ping now (it is down or restarting), the wait ends as soon as a ping (every
/// [`PROBE_INTERVAL`]) is answered again: a restarted daemon is followed again within a probe
/// interval of its return, whatever the backoff step. If it answers now, the failure was
/// something else and the whole `delay` is waited (no retry loop faster than the backoff).
/// Returns false if `shutdown` was cancelled first.
pub async fn pause_unless_answering(
    docker: &Docker,
    delay: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    pause_while_away(delay, shutdown, || answers(docker)).await
}

/// The rule of [`pause_unless_answering`] for any `probe` of the daemon.
async fn pause_while_away<F: std::future::Future<Output = bool>>(
    delay: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
    mut probe: impl FnMut() -> F,
) -> bool {
    if probe().await {
        return crate::backoff::sleep_unless_cancelled(delay, shutdown).await;
    }
    crate::backoff::pause_unless(delay, PROBE_INTERVAL, shutdown, probe).await
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
    fn tls_follows_the_docker_clis_variables() {
        let dir = tempfile_dir("docker-tls");
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.join(file), b"").unwrap();
        }
        let path = dir.to_str().unwrap();
        let expected = DockerTls {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        assert_eq!(
            DockerTls::from_values(None, Some(path), None).unwrap(),
            None
        );
        assert_eq!(
            DockerTls::from_values(Some(""), Some(path), None).unwrap(),
            None
        );
        assert_eq!(
            DockerTls::from_values(Some("1"), Some(path), Some("/nowhere")).unwrap(),
            Some(expected.clone())
        );
        // Without DOCKER_CERT_PATH: $HOME/.docker.
        let home = tempfile_dir("docker-tls-home");
        std::fs::create_dir_all(home.join(".docker")).unwrap();
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(home.join(".docker").join(file), b"").unwrap();
        }
        let from_home = DockerTls::from_values(Some("1"), None, home.to_str()).unwrap();
        assert_eq!(from_home.unwrap().ca, home.join(".docker/ca.pem"));
        // Missing files and no directory at all are errors naming the problem.
        std::fs::remove_file(dir.join("key.pem")).unwrap();
        let err = DockerTls::from_values(Some("1"), Some(path), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("key.pem cannot be read"), "{err}");
        let err = DockerTls::from_values(Some("yes"), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither DOCKER_CERT_PATH nor HOME"), "{err}");

        let vars = |name: &str| match name {
            "DOCKER_HOST" => Some("tcp://127.0.0.1:2376".to_owned()),
            "DOCKER_TLS_VERIFY" => Some("1".to_owned()),
            "HOME" => home.to_str().map(str::to_owned),
            _ => None,
        };
        let settings = DockerSettings::from_vars(vars, &[DEFAULT_DOCKER_HOST]).unwrap();
        assert_eq!(settings.host, DockerHost::Tcp("127.0.0.1:2376".into()));
        assert_eq!(settings.tls.unwrap().key, home.join(".docker/key.pem"));
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&home).unwrap();
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_first_existing_socket_is_chosen() {
        let dir = tempfile_dir("docker-settings");
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

    /// A minimal daemon on a unix socket: answers every request with `200 OK` (what a ping
    /// expects), until its task is aborted.
    async fn fake_daemon(path: &Path) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::UnixListener::bind(path).expect("bind the fake daemon");
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let reply =
                        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.41\r\n\r\nOK";
                    if stream.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }

    #[tokio::test]
    async fn a_pause_ends_soon_after_a_vanished_daemon_answers_again() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let socket = dir.path().join("docker.sock");
        let settings = DockerSettings::new(DockerHost::Unix(socket.clone()));
        let shutdown = tokio_util::sync::CancellationToken::new();
        // No socket at all (a daemon restarting): the pause waits for it, not for the delay.
        let appear = socket.clone();
        let daemon = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            fake_daemon(&appear).await;
        });
        let started = std::time::Instant::now();
        assert!(
            settings
                .pause_unless_answering(Duration::from_secs(30), &shutdown)
                .await
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(600) && waited < Duration::from_secs(10),
            "the pause took {waited:?}: it should end at the first ping after the daemon returns"
        );
        // A daemon that answers: the failure was something else, the whole delay is waited.
        let started = std::time::Instant::now();
        assert!(
            settings
                .pause_unless_answering(Duration::from_millis(700), &shutdown)
                .await
        );
        assert!(started.elapsed() >= Duration::from_millis(700));
        shutdown.cancel();
        assert!(
            !settings
                .pause_unless_answering(Duration::from_secs(30), &shutdown)
                .await
        );
        daemon.abort();
    }
}
