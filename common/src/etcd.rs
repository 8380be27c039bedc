//! etcd connection settings shared by all components: endpoint lists, TLS, authentication, and
//! one `connect` that gives up after a timeout instead of hanging.
//!
//! Only etcd's v3 API is used (etcd 3.6 removed v2). Endpoints are accepted as the originals
//! accept them: `http://10.0.0.5:4001`, `10.0.0.5:4001`, or several of either, comma-separated.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

/// etcd's standard client port, used when an endpoint names none.
pub const DEFAULT_ETCD_PORT: u16 = 2379;
/// The endpoint used when none is configured.
pub const DEFAULT_ETCD_ENDPOINT: &str = "http://127.0.0.1:2379";

/// Why etcd settings are invalid or a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("no etcd endpoint given")]
    NoEndpoints,
    #[error("invalid etcd endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("etcd TLS: {what} is given without {missing}")]
    IncompleteTls {
        what: &'static str,
        missing: &'static str,
    },
    #[error("cannot read etcd TLS file {path}: {source}")]
    ReadTlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to etcd at {endpoints}: {source}")]
    Connect {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd at {endpoints} did not answer within {timeout:?}")]
    Timeout {
        endpoints: String,
        timeout: Duration,
    },
}

/// Files for TLS to etcd. A client certificate needs its key and the other way round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA bundle that signed the servers' certificates (PEM).
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
}

/// Username and password for etcd's authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdAuth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// HTTP/2 pings on etcd connections with a stream open: how often (above etcd's default
/// `--grpc-keepalive-min-time` of 5 s, below which it counts pings as abuse), and how long an
/// answer may take before the connection (and every watch on it) is dropped.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(6);
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything needed to reach an etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Normalised endpoints: `http://host:port` or `https://host:port`.
    endpoints: Vec<String>,
    pub tls: Option<EtcdTls>,
    pub auth: Option<EtcdAuth>,
    /// Bound on establishing the connection and on the first status request.
    pub connect_timeout: Duration,
    /// Bound on each request (not on watches, which are long-lived streams).
    pub request_timeout: Duration,
}

impl EtcdSettings {
    /// Settings for a comma-separated endpoint list, with default timeouts, no TLS, no auth.
    pub fn new(endpoints: &str) -> Result<Self, EtcdError> {
        Ok(Self {
            endpoints: parse_endpoints(endpoints)?,
            tls: None,
            auth: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        })
    }

    /// Sets TLS files; an empty set (`EtcdTls::default()`) means none.
    pub fn with_tls(mut self, tls: EtcdTls) -> Result<Self, EtcdError> {
        match (&tls.cert, &tls.key) {
            (Some(_), None) => {
                return Err(EtcdError::IncompleteTls {
                    what: "a client certificate",
                    missing: "its key",
                });
            }
            (None, Some(_)) => {
                return Err(EtcdError::IncompleteTls {
                    what: "a client key",
                    missing: "its certificate",
                });
            }
            _ => {}
        }
        self.tls = (tls != EtcdTls::default()).then_some(tls);
        Ok(self)
    }

    /// Sets username and password; an empty username means none.
    pub fn with_auth(mut self, username: &str, password: &str) -> Self {
        self.auth = (!username.is_empty()).then(|| EtcdAuth {
            username: username.to_owned(),
            password: password.to_owned(),
        });
        self
    }

    /// The endpoints as they will be dialled. With TLS files set, `http://` becomes `https://`.
    pub fn endpoints(&self) -> Vec<String> {
        if self.tls.is_none() {
            return self.endpoints.clone();
        }
        self.endpoints
            .iter()
            .map(|e| match e.strip_prefix("http://") {
                Some(rest) => format!("https://{rest}"),
                None => e.clone(),
            })
            .collect()
    }

    /// True when connections use TLS (an `https://` endpoint or TLS files).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some() || self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    fn describe(&self) -> String {
        self.endpoints().join(",")
    }

    fn connect_options(&self) -> Result<ConnectOptions, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_timeout(self.request_timeout)
            // A paused or unplugged member is noticed within 8 s even on a silent watch. Pings
            // go out only while a stream is open: etcd counts pings on a connection without
            // one as abuse and closes it (grpc-go's `PermitWithoutStream: false`), and unary
            // requests have their own timeout.
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(false)
            // A member without a leader (partitioned into a minority, or during an election)
            // refuses requests at once and ends watches (etcd's `hasleader` metadata, as Go's
            // `clientv3.WithRequireLeader`): a watch on it would stay open and silent while the
            // rest of the cluster moves on, and a write would wait out its timeout.
            .with_require_leader(true);
        if let Some(auth) = &self.auth {
            options = options.with_user(auth.username.clone(), auth.password.clone());
        }
        if self.uses_tls() {
            let mut tls = TlsOptions::new();
            if let Some(files) = &self.tls {
                if let Some(ca) = &files.ca {
                    tls = tls.ca_certificate(Certificate::from_pem(read_file(ca)?));
                }
                if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
                    tls = tls.identity(Identity::from_pem(read_file(cert)?, read_file(key)?));
                }
            }
            options = options.with_tls(tls);
        }
        Ok(options)
    }

    /// Connects and checks that the cluster answers, all within `connect_timeout` (plus the
    /// authentication round trip, if any).
    pub async fn connect(&self) -> Result<Client, EtcdError> {
        let options = self.connect_options()?;
        let endpoints = self.endpoints();
        let timeout = self.connect_timeout * 2;
        let attempt = async {
            let mut client = Client::connect(&endpoints, Some(options)).await?;
            client.status().await?;
            Ok::<_, etcd_client::Error>(client)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(source)) => Err(EtcdError::Connect {
                endpoints: self.describe(),
                source,
            }),
            Err(_) => Err(EtcdError::Timeout {
                endpoints: self.describe(),
                timeout,
            }),
        }
    }
}

/// How every component retries etcd when it cannot be reached, read or written: 250 ms
/// doubling to 5 s, jittered, until it answers (waits taken through [`pause_unless_answering`]
/// end as soon as etcd answers again).
pub fn retry_policy() -> crate::backoff::Backoff {
    crate::backoff::Backoff {
        max_delay: Duration::from_secs(5),
        ..crate::backoff::Backoff::default()
    }
}

/// How often [`pause_unless_answering`] asks etcd whether it answers again.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Bound on one probe (a healthy member answers a count-only read in milliseconds).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// True when etcd serves a linearizable read (a quorum answers) within [`PROBE_TIMEOUT`]. The
/// read is count-only, of one key: cheap for etcd whatever it holds.
pub async fn answers(client: &mut Client) -> bool {
    let read = client.get("/", Some(etcd_client::GetOptions::new().with_count_only()));
    matches!(tokio::time::timeout(PROBE_TIMEOUT, read).await, Ok(Ok(_)))
}

/// Waits up to `delay` between two attempts of something that failed because etcd did not
/// answer, but ends the wait as soon as a probe ([`answers`], every [`PROBE_INTERVAL`]) finds
/// etcd answering again: work resumes right after an outage instead of after the backoff step.
/// Returns false if `shutdown` was cancelled first.
pub async fn pause_unless_answering(
    client: &Client,
    delay: Duration,
    shutdown: &tokio_util::sync::CancellationToken,
) -> bool {
    // A clone per probe (a handle on the same channel): the probe's future owns what it uses.
    crate::backoff::pause_unless(delay, PROBE_INTERVAL, shutdown, || {
        let mut client = client.clone();
        async move { answers(&mut client).await }
    })
    .await
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|source| EtcdError::ReadTlsFile {
        path: path.clone(),
        source,
    })
}

/// Parses a comma-separated endpoint list into `scheme://host:port` strings. Empty entries are
/// skipped; a missing scheme means `http`; a missing port means 2379.
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, EtcdError> {
    let endpoints = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(parse_endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err(EtcdError::NoEndpoints);
    }
    Ok(endpoints)
}

fn parse_endpoint(text: &str) -> Result<String, EtcdError> {
    let invalid = |reason: &str| EtcdError::InvalidEndpoint {
        endpoint: text.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_owned(), text),
    };
    if scheme != "http" && scheme != "https" {
        return Err(invalid("the scheme must be http:// or https://"));
    }
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') || authority.contains('@') || authority.contains('?') {
        return Err(invalid("expected host:port, with no path or user"));
    }
    let (host, port) = split_host_port(authority).map_err(|reason| invalid(&reason))?;
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    Ok(format!(
        "{scheme}://{host}:{}",
        port.unwrap_or(DEFAULT_ETCD_PORT)
    ))
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; the host keeps its brackets.
pub(crate) fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or_else(|| "unclosed '[' in IPv6 address".to_owned())?;
        let host = &authority[..=end];
        match &authority[end + 1..] {
            "" => (host, None),
            rest => match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err("unexpected text after ']'".to_owned()),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("an IPv6 address must be written in brackets".to_owned());
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("port {p:?} is not a number from 1 to 65535")),
            Ok(port) => Ok(port),
        })
        .transpose()?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lists_are_normalised() {
        let cases: &[(&str, &[&str])] = &[
            ("http://10.0.0.5:4001", &["http://10.0.0.5:4001"]),
            ("10.0.0.5:4001", &["http://10.0.0.5:4001"]),
            ("10.0.0.5", &["http://10.0.0.5:2379"]),
            ("https://etcd.example:2379/", &["https://etcd.example:2379"]),
            (
                "http://10.0.0.5:4001, 10.0.0.6:4001,,",
                &["http://10.0.0.5:4001", "http://10.0.0.6:4001"],
            ),
            ("[::1]:2379", &["http://[::1]:2379"]),
            ("HTTP://[fe80::1]", &["http://[fe80::1]:2379"]),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_endpoints(input).unwrap(), *expected, "{input:?}");
        }
    }

    #[test]
    fn bad_endpoints_say_what_is_wrong() {
        let cases = [
            ("", "no etcd endpoint given"),
            (" , ", "no etcd endpoint given"),
            ("unix:///x", "the scheme must be"),
            ("10.0.0.5:0", "not a number from 1 to 65535"),
            ("10.0.0.5:http", "not a number from 1 to 65535"),
            ("10.0.0.5:99999", "not a number from 1 to 65535"),
            ("http://:2379", "the host is empty"),
            ("::1:2379", "brackets"),
            ("[::1", "unclosed"),
            ("http://h:1/v2/keys", "no path"),
        ];
        for (input, message) in cases {
            let err = parse_endpoints(input).unwrap_err().to_string();
            assert!(err.contains(message), "{input:?}: {err}");
        }
    }

    #[test]
    fn tls_files_switch_endpoints_to_https_and_must_come_in_pairs() {
        let settings = EtcdSettings::new("http://10.0.0.5:4001").unwrap();
        assert!(!settings.uses_tls());
        let with_ca = settings
            .clone()
            .with_tls(EtcdTls {
                ca: Some("/ca.pem".into()),
                ..EtcdTls::default()
            })
            .unwrap();
        assert!(with_ca.uses_tls());
        assert_eq!(with_ca.endpoints(), ["https://10.0.0.5:4001"]);
        let none = settings.clone().with_tls(EtcdTls::default()).unwrap();
        assert!(none.tls.is_none());
        let half = settings.with_tls(EtcdTls {
            cert: Some("/c.pem".into()),
            ..EtcdTls::default()
        });
        assert!(matches!(half, Err(EtcdError::IncompleteTls { .. })));
    }

    #[test]
    fn missing_tls_files_are_reported_by_path() {
        let settings = EtcdSettings::new("127.0.0.1:1")
            .unwrap()
            .with_tls(EtcdTls {
                ca: Some("/nonexistent/ca.pem".into()),
                ..EtcdTls::default()
            })
            .unwrap();
        let err = settings.connect_options().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn auth_is_optional_and_its_password_is_not_printed() {
        let settings = EtcdSettings::new("127.0.0.1").unwrap();
        assert!(settings.clone().with_auth("", "x").auth.is_none());
        let with = settings.with_auth("root", "s3cret");
        let printed = format!("{with:?}");
        assert!(
            printed.contains("root") && !printed.contains("s3cret"),
            "{printed}"
        );
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_fails_naming_the_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut settings = EtcdSettings::new(&format!("127.0.0.1:{port}")).unwrap();
        settings.connect_timeout = Duration::from_millis(300);
        let err = match settings.connect().await {
            Ok(_) => panic!("connected to a closed port"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    }
}
