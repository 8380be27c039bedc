//! The configuration, read from the environment as the original reads it (plus our additions),
//! with every value checked at start-up so that a typo is one clear error line.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use common::{Backoff, DockerSettings};

use crate::filter::Exclusions;
use crate::multiline::MultilineSettings;
use crate::pump::PumpSettings;
use crate::render::{AdapterSettings, DEFAULT_RAW_FORMAT};
use crate::route::{Route, RouteError, split_route_uris};
use crate::sender::Timeouts;
use crate::syslog::{SyslogFormat, SyslogRenderer, SyslogSettings, TcpFraming};
use crate::template::Template;
use crate::tls::TlsSettings;

/// Default bound of each route's queue (our addition: `LOGSPOUT_QUEUE_SIZE`).
pub const DEFAULT_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Default longest wait for queues to drain on shutdown (`LOGSPOUT_FLUSH_TIMEOUT`).
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// The original's default `RETRY_COUNT`.
pub const DEFAULT_RETRY_COUNT: u32 = 10;
/// Where the original looks for persisted routes.
pub const DEFAULT_ROUTES_PATH: &str = "/mnt/routes";
/// The Docker sockets tried when `DOCKER_HOST` is unset: the standard one, then where the seed's
/// unit mounts it (`-v /var/run/docker.sock:/tmp/docker.sock`).
pub const DOCKER_SOCKETS: [&str; 2] = ["unix:///var/run/docker.sock", "unix:///tmp/docker.sock"];
/// The positions file's name inside `ROUTESPATH` (not `.json`: that directory holds routes).
pub const POSITIONS_FILE_NAME: &str = ".positions";
/// Overrides `SYSLOG_HOSTNAME` when it exists and is not empty (swarm setups mount it).
pub const HOST_HOSTNAME_FILE: &str = "/etc/host_hostname";

/// A bad setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown SYSLOG_FORMAT value: {0}")]
    SyslogFormat(String),
    #[error("unknown SYSLOG_TCP_FRAMING value: {0}")]
    TcpFraming(String),
    #[error(
        "Couldn't parse env var INACTIVITY_TIMEOUT. See https://golang.org/pkg/time/#ParseDuration for valid format.: {0}"
    )]
    InactivityTimeout(String),
    #[error("invalid {name} value {value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid {name} value {value:?}: not valid UTF-8")]
    NotUtf8 { name: String, value: String },
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Multiline(#[from] crate::multiline::MultilineError),
    #[error(transparent)]
    Docker(#[from] common::docker::DockerError),
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Route URIs from the first argument or `ROUTE_URIS`, env-expanded.
    pub routes: Vec<Route>,
    pub http_addr: SocketAddr,
    pub docker: DockerSettings,
    /// `ROUTESPATH` (default `/mnt/routes`) if that directory exists.
    pub routes_path: Option<PathBuf>,
    pub adapters: AdapterSettings,
    pub tls: TlsSettings,
    pub pump: PumpSettings,
    pub queue_bytes: usize,
    pub flush_timeout: Duration,
    /// `LOGSPOUT_HTTP_TOKEN`: bearer token required by `/routes` and `/logs`.
    pub http_token: Option<String>,
    /// `LOGSPOUT_MAX_TAPS`: `/logs` streams open at once (more are answered `429`).
    pub max_taps: usize,
    /// Reconnect policy of the route senders.
    pub sender_backoff: Backoff,
    /// `LOGSPOUT_CONNECT_TIMEOUT`, `LOGSPOUT_TLS_HANDSHAKE_TIMEOUT`, `LOGSPOUT_WRITE_TIMEOUT`,
    /// `LOGSPOUT_TCP_KEEPALIVE`.
    pub sender_timeouts: Timeouts,
    /// `RETRY_COUNT`: failed retries of a route after which it is reported at error level.
    pub retry_count: u32,
    /// `DEBUG` set.
    pub debug: bool,
}

impl Config {
    /// Reads the process environment; `first_arg` is the route list given on the command line.
    pub fn from_env(first_arg: Option<&str>) -> Result<Self, ConfigError> {
        // `vars_os`, not `vars` (which panics on a value that is not UTF-8): such a value is
        // an error only if logspout reads that variable.
        let mut vars: HashMap<String, String> = HashMap::new();
        let mut not_utf8: HashMap<String, String> = HashMap::new();
        for (name, value) in std::env::vars_os() {
            let Ok(name) = name.into_string() else {
                continue;
            };
            match value.into_string() {
                Ok(value) => vars.insert(name, value),
                Err(value) => not_utf8.insert(name, value.to_string_lossy().into_owned()),
            };
        }
        let host_hostname = std::fs::read_to_string(HOST_HOSTNAME_FILE).ok();
        let read_bad = std::cell::RefCell::new(None);
        let lookup = |name: &str| {
            if let Some(lossy) = not_utf8.get(name) {
                read_bad
                    .borrow_mut()
                    .get_or_insert_with(|| (name.to_owned(), lossy.clone()));
            }
            vars.get(name).cloned()
        };
        let config = Self::from_lookup(first_arg, lookup, host_hostname);
        if let Some((name, value)) = read_bad.into_inner() {
            return Err(ConfigError::NotUtf8 { name, value });
        }
        config
    }

    /// Builds the configuration from `env` (empty values count as unset, as in the original).
    pub fn from_lookup(
        first_arg: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
        host_hostname: Option<String>,
    ) -> Result<Self, ConfigError> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let is_true = |name: &str| var(name).as_deref() == Some("true");

        let uris = first_arg
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .or_else(|| var("ROUTE_URIS"))
            .unwrap_or_default();
        let routes = split_route_uris(&uris, &env)
            .iter()
            .map(|uri| {
                Route::from_uri(uri)
                    .and_then(|r| r.validate())
                    .map(|(r, _)| r)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let port_text = var("PORT").or_else(|| var("HTTP_PORT"));
        let port = match port_text {
            None => 80,
            Some(text) => text.parse::<u16>().map_err(|e| ConfigError::Invalid {
                name: if var("PORT").is_some() {
                    "PORT"
                } else {
                    "HTTP_PORT"
                },
                value: text.clone(),
                reason: e.to_string(),
            })?,
        };
        let bind_text = var("HTTP_BIND_ADDRESS").unwrap_or_else(|| "0.0.0.0".into());
        let bind: IpAddr = bind_text
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                name: "HTTP_BIND_ADDRESS",
                value: bind_text.clone(),
                reason: e.to_string(),
            })?;

        let docker = DockerSettings::from_vars(var, &DOCKER_SOCKETS)?;
        let routes_path =
            PathBuf::from(var("ROUTESPATH").unwrap_or_else(|| DEFAULT_ROUTES_PATH.into()));
        let routes_path = routes_path.is_dir().then_some(routes_path);

        let syslog = syslog_settings(&var, host_hostname)?;
        let adapters = AdapterSettings {
            syslog,
            raw_format: var("RAW_FORMAT").unwrap_or_else(|| DEFAULT_RAW_FORMAT.into()),
            multiline: MultilineSettings::from_vars(var)?,
        };
        // Templates are checked now, not when the first line arrives.
        SyslogRenderer::new(&adapters.syslog, &HashMap::new()).map_err(RouteError::from)?;
        Template::compile("RAW_FORMAT", &adapters.raw_format).map_err(RouteError::from)?;

        let tail = var("TAIL").unwrap_or_else(|| "all".into());
        if tail != "all" && tail.parse::<u64>().is_err() {
            return Err(ConfigError::Invalid {
                name: "TAIL",
                value: tail,
                reason: "expected \"all\" or a number of lines".into(),
            });
        }
        let inactivity_timeout = match var("INACTIVITY_TIMEOUT") {
            None => None,
            Some(text) => {
                let d = parse_go_duration(&text).map_err(ConfigError::InactivityTimeout)?;
                (!d.is_zero()).then_some(d)
            }
        };
        let exclude_labels = var("EXCLUDE_LABELS").or_else(|| var("EXCLUDE_LABEL"));
        let pump = PumpSettings {
            backlog: is_true("BACKLOG"),
            tail,
            exclusions: Exclusions {
                allow_tty: is_true("ALLOW_TTY"),
                exclude_labels,
            },
            inactivity_timeout,
            positions_file: var("LOGSPOUT_POSITIONS_FILE")
                .map(PathBuf::from)
                .or_else(|| {
                    routes_path
                        .as_ref()
                        .map(|dir| dir.join(POSITIONS_FILE_NAME))
                }),
            max_line: match var("LOGSPOUT_MAX_LINE_BYTES") {
                None => crate::lines::MAX_LINE,
                Some(text) => parse_size(&text)
                    .filter(|n| crate::lines::MAX_LINE_RANGE.contains(n))
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "LOGSPOUT_MAX_LINE_BYTES",
                        value: text.clone(),
                        reason: "expected a size in bytes from 1KiB to 16MiB, e.g. 65536 or 1MiB"
                            .into(),
                    })?,
            },
            ..PumpSettings::default()
        };

        let tls = TlsSettings {
            disable_system_roots: is_true("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS"),
            ca_certs: var("LOGSPOUT_TLS_CA_CERTS")
                .map(|v| v.split(',').map(PathBuf::from).collect())
                .unwrap_or_default(),
            client_cert: match (
                var("LOGSPOUT_TLS_CLIENT_CERT"),
                var("LOGSPOUT_TLS_CLIENT_KEY"),
            ) {
                (Some(cert), Some(key)) => Some((cert.into(), key.into())),
                _ => None,
            },
        };
        tls.check_files().map_err(RouteError::from)?;

        let queue_bytes = match var("LOGSPOUT_QUEUE_SIZE") {
            None => DEFAULT_QUEUE_BYTES,
            Some(text) => parse_size(&text)
                .filter(|n| *n >= 64 * 1024)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "LOGSPOUT_QUEUE_SIZE",
                    value: text.clone(),
                    reason:
                        "expected a size in bytes, e.g. 4194304, 512KiB or 4MiB (at least 64KiB)"
                            .into(),
                })?,
        };
        let flush_timeout = match var("LOGSPOUT_FLUSH_TIMEOUT") {
            None => DEFAULT_FLUSH_TIMEOUT,
            Some(text) => parse_go_duration(&text).map_err(|reason| ConfigError::Invalid {
                name: "LOGSPOUT_FLUSH_TIMEOUT",
                value: text.clone(),
                reason,
            })?,
        };
        let timeout = |name: &'static str, default: Duration| match var(name) {
            None => Ok(default),
            Some(text) => match parse_go_duration(&text) {
                Ok(d) if d.is_zero() => Err(ConfigError::Invalid {
                    name,
                    value: text.clone(),
                    reason: "must be greater than 0".into(),
                }),
                Ok(d) => Ok(d),
                Err(reason) => Err(ConfigError::Invalid {
                    name,
                    value: text.clone(),
                    reason,
                }),
            },
        };
        let sender_timeouts = Timeouts {
            connect: timeout("LOGSPOUT_CONNECT_TIMEOUT", Timeouts::DEFAULT.connect)?,
            handshake: timeout(
                "LOGSPOUT_TLS_HANDSHAKE_TIMEOUT",
                Timeouts::DEFAULT.handshake,
            )?,
            write: timeout("LOGSPOUT_WRITE_TIMEOUT", Timeouts::DEFAULT.write)?,
            // `0` turns keepalive off.
            keepalive: match var("LOGSPOUT_TCP_KEEPALIVE") {
                None => Timeouts::DEFAULT.keepalive,
                Some(text) => {
                    let d = parse_go_duration(&text).map_err(|reason| ConfigError::Invalid {
                        name: "LOGSPOUT_TCP_KEEPALIVE",
                        value: text.clone(),
                        reason,
                    })?;
                    (!d.is_zero()).then_some(d)
                }
            },
        };
        Ok(Self {
            routes,
            http_addr: SocketAddr::new(bind, port),
            docker,
            routes_path,
            adapters,
            tls,
            pump,
            queue_bytes,
            flush_timeout,
            http_token: var("LOGSPOUT_HTTP_TOKEN"),
            max_taps: match var("LOGSPOUT_MAX_TAPS") {
                None => crate::tap::DEFAULT_MAX_TAPS,
                Some(text) => text
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ConfigError::Invalid {
                        name: "LOGSPOUT_MAX_TAPS",
                        value: text.clone(),
                        reason: "expected a number of streams, at least 1".into(),
                    })?,
            },
            // Capped at 500 ms (at most 1 s with the jitter) so that a destination that
            // accepts again is written to within a second: a failed attempt is cheap (a refused
            // connect is one SYN and one RST; one that times out already waited its timeout),
            // and a stalled route logs its failures at debug level only.
            sender_backoff: Backoff {
                min_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(500),
                ..Backoff::default()
            },
            sender_timeouts,
            retry_count: match var("RETRY_COUNT") {
                None => DEFAULT_RETRY_COUNT,
                Some(text) => text.parse().map_err(|_| ConfigError::Invalid {
                    name: "RETRY_COUNT",
                    value: text.clone(),
                    reason: "expected a number of retries (0 or more)".into(),
                })?,
            },
            debug: var("DEBUG").is_some(),
        })
    }
}

fn syslog_settings(
    var: &impl Fn(&str) -> Option<String>,
    host_hostname: Option<String>,
) -> Result<SyslogSettings, ConfigError> {
    let defaults = SyslogSettings::default();
    let format = match var("SYSLOG_FORMAT").as_deref() {
        None | Some("rfc5424") => SyslogFormat::Rfc5424,
        Some("rfc3164") => SyslogFormat::Rfc3164,
        Some(other) => return Err(ConfigError::SyslogFormat(other.to_owned())),
    };
    let framing = match var("SYSLOG_TCP_FRAMING").as_deref() {
        None | Some("traditional") => TcpFraming::Traditional,
        Some("octet-counted") => TcpFraming::OctetCounted,
        Some(other) => return Err(ConfigError::TcpFraming(other.to_owned())),
    };
    let file_hostname = host_hostname
        .map(|h| h.trim_end_matches(['\r', '\n']).to_owned())
        .filter(|h| !h.is_empty());
    Ok(SyslogSettings {
        format,
        framing,
        priority: var("SYSLOG_PRIORITY").unwrap_or(defaults.priority),
        timestamp: var("SYSLOG_TIMESTAMP").unwrap_or(defaults.timestamp),
        hostname: file_hostname
            .or_else(|| var("SYSLOG_HOSTNAME"))
            .unwrap_or(defaults.hostname),
        tag: var("SYSLOG_TAG"),
        pid: var("SYSLOG_PID").unwrap_or(defaults.pid),
        structured_data: var("SYSLOG_STRUCTURED_DATA").unwrap_or_default(),
        data: var("SYSLOG_DATA").unwrap_or(defaults.data),
    })
}

/// Go's `time.ParseDuration` (`300ms`, `1h30m`, `0`), the message on error reading like Go's.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    common::duration::parse_go_duration(text).map_err(|e| e.to_string())
}

/// `4194304`, `512KiB`, `4MiB`, `1GiB` (also `K`/`M`/`G`, `KB`/`MB`/`GB` as powers of 1024).
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: usize = text[..digits].parse().ok()?;
    let scale = match text[digits..].trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" | "k" => 1024,
        "M" | "MB" | "MiB" => 1024 * 1024,
        "G" | "GB" | "GiB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(env: &[(&str, &str)], arg: Option<&str>) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::from_lookup(arg, |n| env.get(n).cloned(), None)
    }

    #[test]
    fn the_argument_wins_over_route_uris_and_vars_expand() {
        let c = config(
            &[("ROUTE_URIS", "raw://127.0.0.1:1"), ("DEST", "127.0.0.1:2")],
            Some("raw://$DEST,syslog+tcp://h:3"),
        )
        .unwrap();
        let addrs: Vec<&str> = c.routes.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(addrs, ["127.0.0.1:2", "h:3"]);
        let c = config(&[("ROUTE_URIS", "raw://127.0.0.1:1")], None).unwrap();
        assert_eq!(c.routes[0].address, "127.0.0.1:1");
        assert!(config(&[], None).unwrap().routes.is_empty());
    }

    #[test]
    fn http_port_and_bind_address() {
        let c = config(&[("PORT", "8080"), ("HTTP_PORT", "9090")], None).unwrap();
        assert_eq!(c.http_addr, "0.0.0.0:8080".parse().unwrap());
        let c = config(
            &[("HTTP_PORT", "9090"), ("HTTP_BIND_ADDRESS", "127.0.0.1")],
            None,
        )
        .unwrap();
        assert_eq!(c.http_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(config(&[], None).unwrap().http_addr.port(), 80);
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str);
        let cases: &[Case] = &[
            (
                &[("SYSLOG_FORMAT", "bogus")],
                None,
                "unknown SYSLOG_FORMAT value: bogus",
            ),
            (
                &[("SYSLOG_TCP_FRAMING", "x")],
                None,
                "unknown SYSLOG_TCP_FRAMING value: x",
            ),
            (
                &[("INACTIVITY_TIMEOUT", "60")],
                None,
                "Couldn't parse env var INACTIVITY_TIMEOUT. See https://golang.org/pkg/time/#ParseDuration for valid format.: time: missing unit in duration \"60\"",
            ),
            (&[("PORT", "http")], None, "invalid PORT value \"http\""),
            (
                &[("HTTP_BIND_ADDRESS", "nowhere")],
                None,
                "invalid HTTP_BIND_ADDRESS",
            ),
            (&[("TAIL", "lots")], None, "invalid TAIL"),
            (&[("RETRY_COUNT", "-1")], None, "invalid RETRY_COUNT"),
            (
                &[("LOGSPOUT_QUEUE_SIZE", "12")],
                None,
                "invalid LOGSPOUT_QUEUE_SIZE",
            ),
            (
                &[("LOGSPOUT_MAX_LINE_BYTES", "100")],
                None,
                "invalid LOGSPOUT_MAX_LINE_BYTES",
            ),
            (
                &[("LOGSPOUT_MAX_LINE_BYTES", "17MiB")],
                None,
                "invalid LOGSPOUT_MAX_LINE_BYTES",
            ),
            (
                &[("LOGSPOUT_MAX_LINE_BYTES", "lots")],
                None,
                "invalid LOGSPOUT_MAX_LINE_BYTES",
            ),
            (
                &[("SYSLOG_TAG", "{{.Nope}}")],
                None,
                "SYSLOG_TAG: bad template",
            ),
            (
                &[("RAW_FORMAT", "{{.Data")],
                None,
                "RAW_FORMAT: bad template",
            ),
            (&[("DOCKER_HOST", "ssh://x")], None, "invalid DOCKER_HOST"),
            (&[], Some("foo://h:1"), "bad adapter: foo"),
            (&[], Some("syslog+foo://h:1"), "bad transport: syslog+foo"),
            (
                &[],
                Some("syslog://h"),
                "address h: missing port in address",
            ),
        ];
        for (env, arg, start) in cases {
            let Err(err) = config(env, *arg) else {
                panic!("{env:?} {arg:?} accepted");
            };
            let text = err.to_string();
            assert!(text.starts_with(start), "{env:?} {arg:?}: {text}");
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn env_booleans_accept_only_lowercase_true() {
        let c = config(&[("BACKLOG", "true"), ("ALLOW_TTY", "TRUE")], None).unwrap();
        assert!(c.pump.backlog);
        assert!(!c.pump.exclusions.allow_tty);
        assert!(!config(&[("BACKLOG", "1")], None).unwrap().pump.backlog);
        let c = config(&[("EXCLUDE_LABEL", "a"), ("EXCLUDE_LABELS", "b:c")], None).unwrap();
        assert_eq!(c.pump.exclusions.exclude_labels.as_deref(), Some("b:c"));
    }

    #[test]
    fn host_hostname_file_overrides_syslog_hostname() {
        let env = |n: &str| (n == "SYSLOG_HOSTNAME").then(|| "myhost".to_owned());
        let c = Config::from_lookup(None, env, Some("node1\r\n".into())).unwrap();
        assert_eq!(c.adapters.syslog.hostname, "node1");
        let c = Config::from_lookup(None, env, Some("\n".into())).unwrap();
        assert_eq!(c.adapters.syslog.hostname, "myhost");
    }

    #[test]
    fn sender_timeouts_default_to_10s_and_read_go_durations() {
        let c = config(&[], None).unwrap();
        assert_eq!(c.sender_timeouts, Timeouts::DEFAULT);
        assert_eq!(c.sender_timeouts.write, Duration::from_secs(10));
        // A recovered destination waits at most one (jittered, up to doubled) pause.
        assert!(c.sender_backoff.max_delay <= Duration::from_millis(500));
        let c = config(
            &[
                ("LOGSPOUT_CONNECT_TIMEOUT", "1s"),
                ("LOGSPOUT_TLS_HANDSHAKE_TIMEOUT", "1500ms"),
                ("LOGSPOUT_WRITE_TIMEOUT", "2s"),
                ("LOGSPOUT_TCP_KEEPALIVE", "0"),
            ],
            None,
        )
        .unwrap();
        let t = c.sender_timeouts;
        assert_eq!(t.connect, Duration::from_secs(1));
        assert_eq!(t.handshake, Duration::from_millis(1500));
        assert_eq!(t.write, Duration::from_secs(2));
        assert_eq!(t.keepalive, None);
        for (name, value) in [
            ("LOGSPOUT_WRITE_TIMEOUT", "10"),
            ("LOGSPOUT_CONNECT_TIMEOUT", "0s"),
            ("LOGSPOUT_TLS_HANDSHAKE_TIMEOUT", "-1s"),
            ("LOGSPOUT_TCP_KEEPALIVE", "soon"),
        ] {
            let Err(err) = config(&[(name, value)], None) else {
                panic!("{name}={value} accepted");
            };
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid {name} value")),
                "{err}"
            );
        }
    }
}
