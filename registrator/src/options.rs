//! The command line (the original's flags, Go-style, each also from an env var) and its
//! validation into a [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use common::backoff::Backoff;
use common::etcd::EtcdError;
use common::{DockerSettings, EtcdTls};

use crate::derive::DeriveOptions;
use crate::registry_uri::{RegistryUri, UriError};

/// Why the command line was refused (each is one line; the original exits 1 for these).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("-ttl and -ttl-refresh must be specified together or not at all")]
    TtlWithoutRefresh,
    #[error("-ttl must be greater than -ttl-refresh")]
    TtlNotAboveRefresh,
    #[error("-retry-interval must be greater than 0")]
    RetryInterval,
    #[error("-deregister must be \"always\" or \"on-success\"")]
    Deregister,
    #[error(transparent)]
    Uri(#[from] UriError),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error(transparent)]
    Docker(#[from] common::docker::DockerError),
}

/// Registers the published ports of running Docker containers as service records in etcd.
///
/// Options are written Go-style (-ip 10.0.0.5, -ttl=40) or with two dashes, before the one
/// registry URI; each can also be set by the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "registrator",
    version,
    after_help = "Registry URIs:\n  skydns2://<host>:<port>[,<host>:<port>...]/<domain>\n  etcd://<host>:<port>[,<host>:<port>...]/<prefix>\n\nThe Docker endpoint is DOCKER_HOST (default unix:///tmp/docker.sock); RUST_LOG sets the log filter."
)]
pub struct Options {
    /// IP for ports mapped to the host (overrides detection)
    #[arg(
        long,
        env = "REGISTRATOR_IP",
        default_value = "",
        hide_default_value = true
    )]
    pub ip: String,

    /// Use the container's own IP and exposed ports instead of the published ones
    #[arg(long, env = "REGISTRATOR_INTERNAL", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub internal: bool,

    /// Only register containers that have SERVICE_NAME (or SERVICE_<port>_NAME) set
    #[arg(long, env = "REGISTRATOR_EXPLICIT", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub explicit: bool,

    /// With -internal: register the address on this Docker network (a container's
    /// SERVICE_NETWORK wins)
    #[arg(
        long,
        env = "REGISTRATOR_NETWORK",
        default_value = "",
        hide_default_value = true
    )]
    pub network: String,

    /// With -internal: also register the container's IPv6 address on that network, when it
    /// has one besides its IPv4 address, as a second record `<id>-ipv6` (an AAAA in skydns)
    #[arg(long, env = "REGISTRATOR_IPV6", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub ipv6: bool,

    /// Take the service IP from this container label (a /prefix suffix is cut off)
    #[arg(
        long = "useIpFromLabel",
        env = "REGISTRATOR_USE_IP_FROM_LABEL",
        default_value = "",
        hide_default_value = true
    )]
    pub use_ip_from_label: String,

    /// Comma-separated tags added to every service (`\,` is a literal comma)
    #[arg(
        long,
        env = "REGISTRATOR_TAGS",
        default_value = "",
        hide_default_value = true
    )]
    pub tags: String,

    /// TTL of the records in seconds (0 = they never expire)
    #[arg(long, env = "REGISTRATOR_TTL", default_value_t = 0)]
    pub ttl: u32,

    /// How often the TTL is renewed, in seconds
    #[arg(
        long = "ttl-refresh",
        env = "REGISTRATOR_TTL_REFRESH",
        default_value_t = 0
    )]
    pub ttl_refresh: u32,

    /// How often all containers are re-listed and re-registered, in seconds (0 = never)
    #[arg(long, env = "REGISTRATOR_RESYNC", default_value_t = 0)]
    pub resync: u32,

    /// On a container's death: "always" deregister, or only "on-success"
    #[arg(long, env = "REGISTRATOR_DEREGISTER", default_value = "always")]
    pub deregister: String,

    /// Attempts to reach the registry at start-up (-1 = forever)
    #[arg(
        long = "retry-attempts",
        env = "REGISTRATOR_RETRY_ATTEMPTS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub retry_attempts: i64,

    /// Milliseconds between those attempts
    #[arg(
        long = "retry-interval",
        env = "REGISTRATOR_RETRY_INTERVAL",
        default_value_t = 2000,
        allow_negative_numbers = true
    )]
    pub retry_interval: i64,

    /// On resync, remove records of this host whose container is gone
    #[arg(long, env = "REGISTRATOR_CLEANUP", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub cleanup: bool,

    /// Register containers that have a Docker HEALTHCHECK only while they are healthy
    #[arg(long = "require-healthy", env = "REGISTRATOR_REQUIRE_HEALTHY", num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub require_healthy: bool,

    /// On SIGTERM/SIGINT keep this instance's records (they expire with -ttl) instead of removing them
    #[arg(long = "keep-on-exit", env = "REGISTRATOR_KEEP_ON_EXIT", num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub keep_on_exit: bool,

    /// Serve Prometheus metrics on this address (host:port, path /metrics)
    #[arg(long, env = "REGISTRATOR_METRICS")]
    pub metrics: Option<SocketAddr>,

    /// CA bundle (PEM) for TLS to etcd
    #[arg(long = "etcd-cacert", env = "REGISTRATOR_ETCD_CACERT")]
    pub etcd_cacert: Option<PathBuf>,

    /// Client certificate (PEM) for TLS to etcd
    #[arg(long = "etcd-cert", env = "REGISTRATOR_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,

    /// Client key (PEM) for TLS to etcd
    #[arg(long = "etcd-key", env = "REGISTRATOR_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,

    /// etcd user name (authentication)
    #[arg(
        long = "etcd-username",
        env = "REGISTRATOR_ETCD_USERNAME",
        default_value = "",
        hide_default_value = true
    )]
    pub etcd_username: String,

    /// etcd password
    #[arg(
        long = "etcd-password",
        env = "REGISTRATOR_ETCD_PASSWORD",
        default_value = "",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub etcd_password: String,

    /// Debug logging for registrator (RUST_LOG overrides)
    #[arg(short, long, env = "REGISTRATOR_VERBOSE", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub verbose: bool,

    /// Log as JSON lines
    #[arg(long = "log-json", env = "REGISTRATOR_LOG_JSON", num_args = 0..=1,
          require_equals = true, default_value = "false", default_missing_value = "true",
          value_parser = BoolishValueParser::new(), action = ArgAction::Set)]
    pub log_json: bool,

    /// The registry URI; as with Go's flag package, everything after it is left unparsed
    #[arg(value_name = "REGISTRY_URI", num_args = 0.., trailing_var_arg = true,
          allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// What `-deregister` asks for on a `die` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeregisterPolicy {
    Always,
    /// Only after exit code 0, a death by signal (bit 128 set), or when the container is gone.
    OnSuccess,
}

/// Record lifetime with `-ttl`/`-ttl-refresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    pub ttl: Duration,
    pub refresh: Duration,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub registry: RegistryUri,
    pub docker: DockerSettings,
    pub derive: DeriveOptions,
    pub ttl: Option<Ttl>,
    pub resync: Option<Duration>,
    pub deregister: DeregisterPolicy,
    /// How the registry is pinged at start-up (`-retry-attempts`, `-retry-interval`).
    pub startup_retry: Backoff,
    pub cleanup: bool,
    pub require_healthy: bool,
    pub keep_on_exit: bool,
    pub metrics: Option<SocketAddr>,
}

/// How the positional arguments are wrong (exit 2, as Go's flag package).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    MissingUri,
    Extra(Vec<String>),
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingUri => f.write_str("missing registry URI"),
            Self::Extra(args) => write!(
                f,
                "Extra unparsed arguments:\n  {}\nOptions should come before the registry URI argument.",
                args.join(" ")
            ),
        }
    }
}

impl Options {
    /// The one registry URI, or what is wrong with the positional arguments.
    pub fn uri(&self) -> Result<&str, UsageError> {
        match self.args.as_slice() {
            [] => Err(UsageError::MissingUri),
            [uri] => Ok(uri),
            [_, extra @ ..] => Err(UsageError::Extra(extra.to_vec())),
        }
    }

    /// Validates the options; `env` reads the Docker CLI's variables (`DOCKER_HOST`,
    /// `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`, `HOME`) from the environment.
    pub fn into_config(self, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let uri = self.uri().map_err(|_| UriError::Missing)?.to_owned();
        if (self.ttl > 0) != (self.ttl_refresh > 0) {
            return Err(ConfigError::TtlWithoutRefresh);
        }
        if self.ttl > 0 && self.ttl <= self.ttl_refresh {
            return Err(ConfigError::TtlNotAboveRefresh);
        }
        if self.retry_interval <= 0 {
            return Err(ConfigError::RetryInterval);
        }
        let deregister = match self.deregister.as_str() {
            "always" => DeregisterPolicy::Always,
            "on-success" => DeregisterPolicy::OnSuccess,
            _ => return Err(ConfigError::Deregister),
        };
        let tls = EtcdTls {
            ca: self.etcd_cacert,
            cert: self.etcd_cert,
            key: self.etcd_key,
        };
        let registry = RegistryUri::parse(&uri)?;
        let registry = RegistryUri {
            etcd: registry
                .etcd
                .with_tls(tls)?
                .with_auth(&self.etcd_username, &self.etcd_password),
            ..registry
        };
        let docker = DockerSettings::from_vars(env, &[common::docker::DEFAULT_DOCKER_HOST])?;
        let retries = match self.retry_attempts {
            -1 => None,
            n => Some(usize::try_from(n).unwrap_or(0)),
        };
        let interval = Duration::from_millis(u64::try_from(self.retry_interval).unwrap_or(1));
        Ok(Config {
            registry,
            docker,
            derive: DeriveOptions {
                host_ip: non_empty(self.ip),
                internal: self.internal,
                explicit: self.explicit,
                ip_label: non_empty(self.use_ip_from_label),
                network: non_empty(self.network),
                ipv6: self.ipv6,
                forced_tags: self.tags,
                ..DeriveOptions::default()
            },
            ttl: (self.ttl > 0).then(|| Ttl {
                ttl: Duration::from_secs(u64::from(self.ttl)),
                refresh: Duration::from_secs(u64::from(self.ttl_refresh)),
            }),
            resync: (self.resync > 0).then(|| Duration::from_secs(u64::from(self.resync))),
            deregister,
            startup_retry: Backoff::fixed(interval, retries),
            cleanup: self.cleanup,
            require_healthy: self.require_healthy,
            keep_on_exit: self.keep_on_exit,
            metrics: self.metrics,
        })
    }
}

fn non_empty(value: String) -> Option<String> {
    let value = value.trim().to_owned();
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        let argv = common::cli::go_style_args(
            &Options::command(),
            std::iter::once("registrator").chain(args.iter().copied()),
        );
        Options::try_parse_from(argv)
    }

    #[test]
    fn the_seed_command_line_parses() {
        let options = parse(&[
            "-ip",
            "10.0.0.5",
            "-ttl-refresh",
            "30",
            "-ttl",
            "40",
            "skydns2://10.0.0.5:4001/staging.example.local",
        ])
        .unwrap();
        assert_eq!(options.ip, "10.0.0.5");
        assert_eq!((options.ttl, options.ttl_refresh), (40, 30));
        let config = options.into_config(|_| None).unwrap();
        assert_eq!(
            config.ttl,
            Some(Ttl {
                ttl: Duration::from_secs(40),
                refresh: Duration::from_secs(30)
            })
        );
        assert_eq!(config.derive.host_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(
            config.docker.host.to_string(),
            common::docker::DEFAULT_DOCKER_HOST
        );
        assert_eq!(config.registry.etcd.endpoints(), ["http://10.0.0.5:4001"]);
    }

    #[test]
    fn spellings_of_flags() {
        let cases: &[&[&str]] = &[
            &["-ip", "1.2.3.4", "-internal", "-explicit", "etcd://h/p"],
            &[
                "--ip",
                "1.2.3.4",
                "--internal",
                "--explicit=true",
                "etcd://h/p",
            ],
            &["-ip=1.2.3.4", "-internal=1", "-explicit=t", "etcd://h/p"],
        ];
        for args in cases {
            let options = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(options.ip, "1.2.3.4", "{args:?}");
            assert!(options.internal && options.explicit, "{args:?}");
            assert_eq!(options.args, ["etcd://h/p"], "{args:?}");
        }
        let options = parse(&["-useIpFromLabel", "ip", "-retry-attempts", "-1", "u"]).unwrap();
        assert_eq!(options.use_ip_from_label, "ip");
        assert_eq!(options.retry_attempts, -1);
        assert!(!parse(&["-internal=false", "u"]).unwrap().internal);
    }

    #[test]
    fn positional_arguments() {
        assert_eq!(parse(&[]).unwrap().uri(), Err(UsageError::MissingUri));
        let extra = parse(&["skydns2://h/d", "-ip", "1.2.3.4"]).unwrap();
        assert_eq!(
            extra.uri(),
            Err(UsageError::Extra(vec!["--ip".into(), "1.2.3.4".into()]))
        );
        assert!(
            UsageError::Extra(vec!["x".into()])
                .to_string()
                .contains("Options should come before the registry URI")
        );
    }

    #[test]
    fn validation_errors_are_the_originals() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["-ttl", "40", "u://"],
                "-ttl and -ttl-refresh must be specified together",
            ),
            (
                &["-ttl-refresh", "4", "u://"],
                "-ttl and -ttl-refresh must be specified together",
            ),
            (
                &["-ttl", "4", "-ttl-refresh", "4", "skydns2://h/d"],
                "-ttl must be greater than -ttl-refresh",
            ),
            (
                &["-retry-interval", "0", "skydns2://h/d"],
                "-retry-interval must be greater than 0",
            ),
            (
                &["-retry-interval=-5", "skydns2://h/d"],
                "-retry-interval must be greater than 0",
            ),
            (
                &["-deregister", "never", "skydns2://h/d"],
                "-deregister must be \"always\" or \"on-success\"",
            ),
            (
                &["consul://h:8500"],
                "unrecognized adapter: consul://h:8500",
            ),
            (
                &["skydns2://h:4001"],
                "skydns2: the registry URI needs a domain",
            ),
            (
                &["-etcd-cert", "/c.pem", "skydns2://h/d"],
                "etcd TLS: a client certificate is given without its key",
            ),
        ];
        for (args, message) in cases {
            let err = parse(args)
                .unwrap()
                .into_config(|_| None)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(message), "{args:?}: {err}");
            assert!(!err.contains('\n'), "{args:?}: {err}");
        }
    }

    #[test]
    fn flags_come_from_the_environment_too() {
        let command = Options::command();
        let missing: Vec<String> = command
            .get_arguments()
            .filter(|a| a.get_long().is_some() && a.get_env().is_none())
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(missing.is_empty(), "flags without an env var: {missing:?}");
    }
}
