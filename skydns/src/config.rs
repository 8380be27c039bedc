//! Configuration as SkyDNS 2 takes it: command-line flags (Go-style single dash accepted),
//! environment variables, and the `/skydns/config` JSON document in etcd, which overrides both.
//! Precedence: etcd JSON > flag > environment > default.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use common::{EtcdSettings, EtcdTls, KeySchema};
use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde_json::Value;

/// The version the original reports; `-version` and CHAOS `version.bind` print it.
pub const ORIGINAL_VERSION: &str = "2.5.3a";

/// Networks whose clients may use forwarding by default: loopback and private ranges.
pub const DEFAULT_FORWARD_ALLOW: &str =
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7,fe80::/10";

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("addr is invalid: {value:?} must be a literal IP:port")]
    Addr { value: String },
    #[error("nameserver is invalid: {value:?} must be a literal IP:port")]
    Nameserver { value: String },
    #[error("domain {value:?} is not a valid domain name")]
    Domain { value: String },
    #[error("{what} {value:?} is not a valid domain name")]
    Name { what: &'static str, value: String },
    #[error("path prefix: {0}")]
    Prefix(#[from] common::KeyError),
    #[error("etcd: {0}")]
    Etcd(#[from] common::etcd::EtcdError),
    #[error("forward-allow: {value:?} is not a network (CIDR) or address")]
    ForwardAllow { value: String },
    #[error("failed to unmarshal config: {0}")]
    Json(String),
    #[error("rtimeout {value:?} is not a Go duration such as 2s or 500ms")]
    Duration { value: String },
    #[error("{flag} {value:?} must be a whole number from 1 to {max}")]
    Limit {
        flag: &'static str,
        value: String,
        max: usize,
    },
    #[error("tcp-idle-timeout {value:?} must be a Go duration from 1ms to 1h, such as 10s")]
    IdleTimeout { value: String },
    #[error("PROMETHEUS_PORT (-metrics-port) {value:?} is not a port number from 1 to 65535")]
    MetricsPort { value: String },
}

/// Default of `-forward-max-inflight`: client and internal forwards waiting for a forwarder at
/// once; each holds a socket and a 4 KiB buffer until it ends (at most `-rtimeout` per attempt).
pub const DEFAULT_FORWARD_MAX_INFLIGHT: usize = 256;
/// Default of `-tcp-max-connections`: open DNS-over-TCP client connections per server.
pub const DEFAULT_TCP_MAX_CONNECTIONS: usize = 512;
/// Default of `-tcp-idle-timeout`: how long a TCP client may take to send a whole query (the
/// next one, on a kept-open connection) and to read a reply before it is dropped.
pub const DEFAULT_TCP_IDLE_TIMEOUT: &str = "10s";
/// Upper bound accepted for the two count limits (a typo guard, far above any sane setting).
const MAX_LIMIT: usize = 1 << 20;

/// The resource bounds of one server, none of which the original had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Forwards in flight at once; more are answered SERVFAIL and counted.
    pub forward_max_inflight: usize,
    /// Open TCP client connections; more are closed at once and counted.
    pub tcp_max_connections: usize,
    /// Time a TCP client gets to send a whole query or read a reply.
    pub tcp_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            forward_max_inflight: DEFAULT_FORWARD_MAX_INFLIGHT,
            tcp_max_connections: DEFAULT_TCP_MAX_CONNECTIONS,
            tcp_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Command-line flags and their environment variables, as the original defines them.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "skydns",
    about = "Authoritative DNS for the service records in etcd (SkyDNS 2 compatible)",
    disable_version_flag = true
)]
pub struct Flags {
    /// Domain to anchor requests to.
    #[arg(long, env = "SKYDNS_DOMAIN", default_value = "skydns.local.")]
    pub domain: String,
    /// Address to listen on (UDP and TCP), a literal IP:port.
    #[arg(long, env = "SKYDNS_ADDR", default_value = "127.0.0.1:53")]
    pub addr: String,
    /// Comma-separated IP:port forwarders; empty means those of /etc/resolv.conf.
    #[arg(long, env = "SKYDNS_NAMESERVERS", default_value = "")]
    pub nameservers: String,
    /// Do not provide a recursive service (never forward client queries).
    #[arg(long = "no-rec", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub no_rec: bool,
    /// Comma-separated etcd endpoints.
    #[arg(long, env = "ETCD_MACHINES", default_value = "http://127.0.0.1:2379")]
    pub machines: String,
    /// DNSSEC key basename: `<base>.key` and `<base>.private` as `dnssec-keygen` writes them;
    /// answers to queries with the DO bit are signed with it.
    #[arg(long, default_value = "")]
    pub dnssec: String,
    /// Name served for `local.dns.<domain>`.
    #[arg(long, default_value = "")]
    pub local: String,
    /// etcd client key (PEM).
    #[arg(long = "tls-key", env = "ETCD_TLSKEY", default_value = "")]
    pub tls_key: String,
    /// etcd client certificate (PEM).
    #[arg(long = "tls-pem", env = "ETCD_TLSPEM", default_value = "")]
    pub tls_pem: String,
    /// CA bundle for etcd TLS (PEM).
    #[arg(long = "ca-cert", env = "ETCD_CACERT", default_value = "")]
    pub ca_cert: String,
    /// etcd username.
    #[arg(long, env = "ETCD_USERNAME", default_value = "")]
    pub username: String,
    /// etcd password.
    #[arg(
        long,
        env = "ETCD_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub password: String,
    /// Timeout of exchanges with the forwarders (Go duration).
    #[arg(long, default_value = "2s")]
    pub rtimeout: String,
    /// Shuffle A and AAAA answers.
    #[arg(long = "round-robin", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub round_robin: bool,
    /// Pick the first forwarder by query ID instead of always the first.
    #[arg(long = "ns-rotate", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ns_rotate: bool,
    /// Forward zones listed under `stub.dns.<domain>` to their own servers.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub stubzones: bool,
    /// Log every query.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub verbose: bool,
    /// Serve the UDP and TCP sockets systemd hands over (socket activation) instead of
    /// binding -addr. Takes `1`/`0`, `t`/`f` and `yes`/`no` too (see [`parse_env_bool`]).
    #[arg(long, env = "SKYDNS_SYSTEMD", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = parse_env_bool)]
    pub systemd: bool,
    /// Print the version and exit.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub version: bool,
    /// SOA responsible-person mailbox (`@` becomes `.`).
    #[arg(long, default_value = "hostmaster@skydns.local.")]
    pub hostmaster: String,
    /// DNSSEC signature cache capacity (RRsets whose signatures are kept; 0: none kept).
    #[arg(long, default_value_t = 10000)]
    pub scache: i64,
    /// Response cache size (accepted, unused: answers come from memory already).
    #[arg(long, default_value_t = 0)]
    pub rcache: i64,
    /// TTL given to records obtained from the forwarders inside authoritative answers.
    #[arg(long = "rcache-ttl", default_value_t = 60)]
    pub rcache_ttl: u32,
    /// Minimum number of labels a name needs to be forwarded.
    #[arg(long, env = "SKYDNS_NDOTS", default_value_t = 2)]
    pub ndots: i64,
    /// etcd key prefix.
    #[arg(
        long = "path-prefix",
        env = "SKYDNS_PATH_PREFIX",
        default_value = "skydns"
    )]
    pub path_prefix: String,
    /// Accepted for compatibility: only etcd's v3 API is used.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub etcd3: bool,
    /// Networks (CIDR, comma-separated) whose clients may have queries forwarded.
    #[arg(long = "forward-allow", env = "SKYDNS_FORWARD_ALLOW", default_value = DEFAULT_FORWARD_ALLOW)]
    pub forward_allow: String,
    /// Port of the HTTP server for /metrics and /health (empty: none).
    #[arg(long = "metrics-port", env = "PROMETHEUS_PORT", default_value = "")]
    pub metrics_port: String,
    /// Path of the metrics.
    #[arg(
        long = "metrics-path",
        env = "PROMETHEUS_PATH",
        default_value = "/metrics"
    )]
    pub metrics_path: String,
    /// Address the metrics HTTP server binds (with the port of -metrics-port).
    #[arg(
        long = "metrics-ip",
        env = "SKYDNS_METRICS_IP",
        default_value = "0.0.0.0"
    )]
    pub metrics_ip: IpAddr,
    /// First part of the original's metric names (`<namespace>_<subsystem>_dns_...`); empty:
    /// `skydns`.
    #[arg(
        long = "metrics-namespace",
        env = "PROMETHEUS_NAMESPACE",
        default_value = "skydns"
    )]
    pub metrics_namespace: String,
    /// Second part of the original's metric names; empty: `skydns`.
    #[arg(
        long = "metrics-subsystem",
        env = "PROMETHEUS_SUBSYSTEM",
        default_value = "skydns"
    )]
    pub metrics_subsystem: String,
    /// Forwards (client queries and lookups of external targets) in flight at once; beyond it
    /// clients get SERVFAIL at once (counted in skydns_forward_refused_total).
    #[arg(long = "forward-max-inflight", env = "SKYDNS_FORWARD_MAX_INFLIGHT",
          default_value_t = DEFAULT_FORWARD_MAX_INFLIGHT.to_string())]
    pub forward_max_inflight: String,
    /// Open DNS-over-TCP client connections at once; more are closed at once (counted in
    /// skydns_tcp_refused_total).
    #[arg(long = "tcp-max-connections", env = "SKYDNS_TCP_MAX_CONNECTIONS",
          default_value_t = DEFAULT_TCP_MAX_CONNECTIONS.to_string())]
    pub tcp_max_connections: String,
    /// Time a TCP client gets to send a whole query (or the next one) and to read a reply
    /// (Go duration).
    #[arg(long = "tcp-idle-timeout", env = "SKYDNS_TCP_IDLE_TIMEOUT",
          default_value = DEFAULT_TCP_IDLE_TIMEOUT)]
    pub tcp_idle_timeout: String,
    /// Log as JSON lines.
    #[arg(long = "log-json", default_value_t = false, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub log_json: bool,
}

/// The settings the DNS server runs with, after the etcd document has been applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub domain: String,
    pub dns_addr: String,
    pub nameservers: Vec<String>,
    pub no_rec: bool,
    pub local: String,
    pub hostmaster: String,
    pub round_robin: bool,
    pub ns_rotate: bool,
    pub read_timeout: Duration,
    pub priority: u16,
    pub ttl: u32,
    pub min_ttl: u32,
    pub rcache_ttl: u32,
    pub ndots: usize,
    /// DNSSEC key basename (empty: no signing).
    pub dnssec: String,
    /// DNSSEC signature cache capacity.
    pub scache: usize,
    /// Serve the sockets systemd handed over instead of binding `dns_addr` (`-systemd`, or
    /// `"systemd": true` in the etcd document, as in the original).
    pub systemd: bool,
}

/// Everything `run` needs: how to reach etcd, and the flag/env settings that the etcd document
/// may still override.
#[derive(Debug, Clone)]
pub struct Config {
    pub etcd: EtcdSettings,
    pub schema: KeySchema,
    pub settings: Settings,
    pub forward_allow: Vec<IpNet>,
    pub verbose: bool,
    /// Stub zones enabled (`-stubzones`).
    pub stubzones: bool,
    /// Where to serve /metrics and /health; `None` for no HTTP server.
    pub metrics_addr: Option<SocketAddr>,
    pub metrics_path: String,
    /// `PROMETHEUS_NAMESPACE` and `PROMETHEUS_SUBSYSTEM`: the original's metrics are named
    /// `<namespace>_<subsystem>_<name>`.
    pub metrics_names: (String, String),
    /// Read forwarders from this resolv.conf when none are configured.
    pub resolv_conf: Option<PathBuf>,
    /// Bounds on forwards and TCP connections.
    pub limits: Limits,
}

impl Flags {
    /// Validates the flags and turns them into a configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        parse_socket_addr(&self.addr).ok_or_else(|| ConfigError::Addr {
            value: self.addr.clone(),
        })?;
        let nameservers: Vec<String> = self
            .nameservers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_socket_addr(s)
                    .map(|_| s.to_owned())
                    .ok_or_else(|| ConfigError::Nameserver {
                        value: s.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let read_timeout =
            parse_go_duration(&self.rtimeout).ok_or_else(|| ConfigError::Duration {
                value: self.rtimeout.clone(),
            })?;
        let limits = Limits {
            forward_max_inflight: parse_limit("forward-max-inflight", &self.forward_max_inflight)?,
            tcp_max_connections: parse_limit("tcp-max-connections", &self.tcp_max_connections)?,
            tcp_idle_timeout: parse_go_duration(&self.tcp_idle_timeout)
                .filter(|d| *d >= Duration::from_millis(1) && *d <= Duration::from_secs(3600))
                .ok_or_else(|| ConfigError::IdleTimeout {
                    value: self.tcp_idle_timeout.clone(),
                })?,
        };
        let tls = EtcdTls {
            ca: non_empty_path(&self.ca_cert),
            cert: non_empty_path(&self.tls_pem),
            key: non_empty_path(&self.tls_key),
        };
        let etcd = EtcdSettings::new(&self.machines)?
            .with_tls(tls)?
            .with_auth(&self.username, &self.password);
        // The original ignores a port it cannot parse (and serves no metrics): refused here.
        let metrics_addr = match self.metrics_port.trim() {
            "" => None,
            port => Some(SocketAddr::new(
                self.metrics_ip,
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| ConfigError::MetricsPort {
                        value: self.metrics_port.clone(),
                    })?,
            )),
        };
        Ok(Config {
            etcd,
            schema: KeySchema::new(&self.path_prefix)?,
            settings: Settings {
                domain: self.domain,
                dns_addr: self.addr,
                nameservers,
                no_rec: self.no_rec,
                local: self.local,
                hostmaster: self.hostmaster,
                round_robin: self.round_robin,
                ns_rotate: self.ns_rotate,
                read_timeout,
                priority: 0,
                ttl: 0,
                min_ttl: 0,
                rcache_ttl: self.rcache_ttl,
                ndots: usize::try_from(self.ndots).unwrap_or(0),
                dnssec: self.dnssec,
                scache: usize::try_from(self.scache).unwrap_or(0),
                systemd: self.systemd,
            },
            forward_allow: parse_networks(&self.forward_allow)?,
            verbose: self.verbose,
            stubzones: self.stubzones,
            metrics_addr,
            metrics_path: self.metrics_path,
            metrics_names: (
                or_skydns(self.metrics_namespace),
                or_skydns(self.metrics_subsystem),
            ),
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
            limits,
        })
    }
}

/// A boolean as Go's `strconv.ParseBool` reads one (`1`, `t`, `true`, `0`, `f`, `false`, any
/// case), plus `yes`/`no`/`on`/`off`; empty is false, as the original takes an empty variable
/// for an unset one. So `SKYDNS_SYSTEMD=1` in a unit works as it does for the original.
pub fn parse_env_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "f" | "false" | "n" | "no" | "off" => Ok(false),
        "1" | "t" | "true" | "y" | "yes" | "on" => Ok(true),
        _ => Err("not a boolean (true or false, 1 or 0)".to_owned()),
    }
}

/// A count limit from 1 to [`MAX_LIMIT`].
fn parse_limit(flag: &'static str, text: &str) -> Result<usize, ConfigError> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| ConfigError::Limit {
            flag,
            value: text.to_owned(),
            max: MAX_LIMIT,
        })
}

/// The text, or `skydns` when it is empty (as the original reads its Prometheus names).
fn or_skydns(text: String) -> String {
    if text.is_empty() {
        "skydns".to_owned()
    } else {
        text
    }
}

fn non_empty_path(text: &str) -> Option<PathBuf> {
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// A literal `IP:port` (`[v6]:port` for IPv6) with a port from 1 to 65535.
pub fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

/// Parses a comma-separated list of networks; a bare address is a host network.
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::ForwardAllow {
                    value: s.to_owned(),
                })
        })
        .collect()
}

/// Parses a Go duration such as `2s`, `500ms` or `1m30s` (`common::duration`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    common::duration::parse_go_duration(text.trim()).ok()
}

impl Settings {
    /// Applies the `/skydns/config` JSON document on top of these settings, as Go's
    /// `json.Unmarshal` into the populated struct does: keys match case-insensitively, unknown
    /// keys are ignored, a present key overrides, a wrong type is an error.
    pub fn apply_etcd_json(&mut self, bytes: &[u8]) -> Result<(), ConfigError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ConfigError::Json(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(ConfigError::Json(
                "the document is not a JSON object".into(),
            ));
        };
        for (key, value) in map {
            let field = key.to_ascii_lowercase();
            let wrong = |want: &str| ConfigError::Json(format!("{key}: expected {want}"));
            let ttl = |value: &Value| {
                unsigned(value)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| wrong("a 32-bit unsigned number"))
            };
            match field.as_str() {
                "dns_addr" => self.dns_addr = string(&value).ok_or_else(|| wrong("a string"))?,
                "domain" => self.domain = string(&value).ok_or_else(|| wrong("a string"))?,
                "local" => self.local = string(&value).ok_or_else(|| wrong("a string"))?,
                "hostmaster" => {
                    self.hostmaster = string(&value).ok_or_else(|| wrong("a string"))?;
                }
                "round_robin" => {
                    self.round_robin = boolean(&value).ok_or_else(|| wrong("a bool"))?
                }
                "ns_rotate" => self.ns_rotate = boolean(&value).ok_or_else(|| wrong("a bool"))?,
                "no_rec" => self.no_rec = boolean(&value).ok_or_else(|| wrong("a bool"))?,
                "nameservers" => {
                    self.nameservers = match &value {
                        Value::Null => Vec::new(),
                        Value::Array(items) => items
                            .iter()
                            .map(|v| string(v).ok_or_else(|| wrong("an array of strings")))
                            .collect::<Result<_, _>>()?,
                        _ => return Err(wrong("an array of strings")),
                    };
                }
                "read_timeout" => {
                    let nanos = unsigned(&value).ok_or_else(|| wrong("nanoseconds"))?;
                    self.read_timeout = Duration::from_nanos(nanos);
                }
                "priority" => {
                    self.priority = unsigned(&value)
                        .and_then(|v| u16::try_from(v).ok())
                        .ok_or_else(|| wrong("a number from 0 to 65535"))?;
                }
                "ttl" => self.ttl = ttl(&value)?,
                "min_ttl" => self.min_ttl = ttl(&value)?,
                "rcache_ttl" => {
                    let ttl = value.as_i64().ok_or_else(|| wrong("a number"))?;
                    self.rcache_ttl = u32::try_from(ttl).unwrap_or(0);
                }
                "ndot" => {
                    let ndots = value.as_i64().ok_or_else(|| wrong("a number"))?;
                    self.ndots = usize::try_from(ndots).unwrap_or(0);
                }
                "systemd" => self.systemd = boolean(&value).ok_or_else(|| wrong("a bool"))?,
                "etcd3" | "version" => {
                    boolean(&value).ok_or_else(|| wrong("a bool"))?;
                }
                // As the original: spaces are turned back into `+` (a `+` in a key basename
                // such as `Kexample.+013+12345` often arrives as a space).
                "dnssec" => {
                    self.dnssec = string(&value)
                        .ok_or_else(|| wrong("a string"))?
                        .replace(' ', "+");
                }
                "scache" => {
                    let size = value.as_i64().ok_or_else(|| wrong("a number"))?;
                    self.scache = usize::try_from(size).unwrap_or(0);
                }
                "rcache" => {
                    value.as_i64().ok_or_else(|| wrong("a number"))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Fills defaults and validates: the zone the server answers for.
    pub fn resolve(&self, resolv_conf: Option<&std::path::Path>) -> Result<Zone, ConfigError> {
        let domain = fqdn_lower(&self.domain).ok_or_else(|| ConfigError::Domain {
            value: self.domain.clone(),
        })?;
        let hostmaster_text = if self.hostmaster.is_empty() {
            format!("hostmaster.{}", domain.to_ascii())
        } else {
            self.hostmaster.replace('@', ".")
        };
        let hostmaster = fqdn(&hostmaster_text).ok_or_else(|| ConfigError::Name {
            what: "hostmaster",
            value: self.hostmaster.clone(),
        })?;
        let local = match self.local.as_str() {
            "" => None,
            text => Some(fqdn_lower(text).ok_or_else(|| ConfigError::Name {
                what: "local",
                value: text.to_owned(),
            })?),
        };
        let listen = parse_socket_addr(&self.dns_addr).ok_or_else(|| ConfigError::Addr {
            value: self.dns_addr.clone(),
        })?;
        let mut nameservers: Vec<SocketAddr> = self
            .nameservers
            .iter()
            .map(|s| {
                parse_socket_addr(s).ok_or_else(|| ConfigError::Nameserver { value: s.clone() })
            })
            .collect::<Result<_, _>>()?;
        if nameservers.is_empty() {
            if let Some(path) = resolv_conf {
                nameservers = read_resolv_conf(path);
            }
        }
        // `ns.dns`, `stub.dns`, `local.dns` under the domain.
        let under_dns = |label: &str| {
            Name::from_ascii(label)
                .and_then(|n| n.append_domain(&domain))
                .map_err(|_| ConfigError::Domain {
                    value: self.domain.clone(),
                })
        };
        let ns_name = under_dns("ns.dns")?;
        let stub_name = under_dns("stub.dns")?;
        let local_name = under_dns("local.dns")?;
        Ok(Zone {
            domain,
            ns_name,
            stub_name,
            local_name,
            local,
            hostmaster,
            listen,
            nameservers,
            no_rec: self.no_rec,
            round_robin: self.round_robin,
            ns_rotate: self.ns_rotate,
            read_timeout: if self.read_timeout.is_zero() {
                Duration::from_secs(2)
            } else {
                self.read_timeout
            },
            priority: if self.priority == 0 {
                10
            } else {
                self.priority
            },
            ttl: if self.ttl == 0 { 3600 } else { self.ttl },
            min_ttl: if self.min_ttl == 0 { 60 } else { self.min_ttl },
            upstream_ttl: if self.rcache_ttl == 0 {
                60
            } else {
                self.rcache_ttl
            },
            ndots: if self.ndots == 0 { 2 } else { self.ndots },
        })
    }
}

/// The resolved zone settings the DNS handler uses.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The authoritative domain, lower-case, fully qualified.
    pub domain: Name,
    /// `ns.dns.<domain>`: where NS records are read and the SOA MNAME.
    pub ns_name: Name,
    /// `stub.dns.<domain>`: where stub-zone servers are read.
    pub stub_name: Name,
    /// `local.dns.<domain>`.
    pub local_name: Name,
    /// What `local.dns.<domain>` stands for.
    pub local: Option<Name>,
    pub hostmaster: Name,
    pub listen: SocketAddr,
    pub nameservers: Vec<SocketAddr>,
    pub no_rec: bool,
    pub round_robin: bool,
    pub ns_rotate: bool,
    pub read_timeout: Duration,
    pub priority: u16,
    pub ttl: u32,
    pub min_ttl: u32,
    /// TTL of records copied from forwarder lookups into authoritative answers.
    pub upstream_ttl: u32,
    pub ndots: usize,
}

fn string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Null => Some(false),
        _ => None,
    }
}

fn unsigned(value: &Value) -> Option<u64> {
    match value {
        Value::Null => Some(0),
        other => other.as_u64(),
    }
}

fn fqdn(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name)
}

fn fqdn_lower(text: &str) -> Option<Name> {
    fqdn(text).map(|n| n.to_lowercase())
}

/// The `nameserver` lines of a resolv.conf, port 53; nothing if the file cannot be read.
pub fn read_resolv_conf(path: &std::path::Path) -> Vec<SocketAddr> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut argv = vec!["skydns"];
        argv.extend_from_slice(args);
        let command = <Flags as clap::CommandFactory>::command();
        Flags::try_parse_from(common::cli::go_style_args(&command, argv)).unwrap()
    }

    #[test]
    fn defaults_are_the_originals() {
        let config = flags(&[]).into_config().unwrap();
        let zone = config.settings.resolve(None).unwrap();
        assert_eq!(zone.domain.to_ascii(), "skydns.local.");
        assert_eq!(zone.listen, "127.0.0.1:53".parse().unwrap());
        assert_eq!(zone.ttl, 3600);
        assert_eq!(zone.min_ttl, 60);
        assert_eq!(zone.priority, 10);
        assert_eq!(zone.ndots, 2);
        assert_eq!(zone.upstream_ttl, 60);
        assert_eq!(zone.read_timeout, Duration::from_secs(2));
        assert_eq!(zone.hostmaster.to_ascii(), "hostmaster.skydns.local.");
        assert!(zone.round_robin && zone.ns_rotate && !zone.no_rec);
        assert!(zone.nameservers.is_empty());
        assert_eq!(config.schema.prefix(), "/skydns");
        assert_eq!(config.etcd.endpoints(), ["http://127.0.0.1:2379"]);
        assert!(config.metrics_addr.is_none());
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.limits.forward_max_inflight, 256);
        assert_eq!(config.limits.tcp_max_connections, 512);
        assert_eq!(config.limits.tcp_idle_timeout, Duration::from_secs(10));
    }

    #[test]
    fn limit_flags_parse_and_are_validated() {
        let config = flags(&[
            "-forward-max-inflight",
            "8",
            "-tcp-max-connections=3",
            "-tcp-idle-timeout",
            "1500ms",
        ])
        .into_config()
        .unwrap();
        assert_eq!(
            config.limits,
            Limits {
                forward_max_inflight: 8,
                tcp_max_connections: 3,
                tcp_idle_timeout: Duration::from_millis(1500),
            }
        );
        for (args, message) in [
            (&["-forward-max-inflight", "0"][..], "forward-max-inflight"),
            (&["-tcp-max-connections", "many"][..], "tcp-max-connections"),
            (
                &["-tcp-max-connections", "99999999999"][..],
                "tcp-max-connections",
            ),
            (&["-tcp-idle-timeout", "0"][..], "tcp-idle-timeout"),
            (&["-tcp-idle-timeout", "10"][..], "tcp-idle-timeout"),
            (&["-tcp-idle-timeout", "2h"][..], "tcp-idle-timeout"),
        ] {
            let err = flags(args).into_config().unwrap_err().to_string();
            assert!(err.contains(message), "{args:?}: {err}");
        }
    }

    #[test]
    fn go_style_flags_parse() {
        let config = flags(&[
            "-domain",
            "Staging.Example.Local",
            "-addr=127.0.0.1:5353",
            "-nameservers",
            "127.0.0.1:5399,[::1]:53",
            "-round-robin=false",
            "-ns-rotate=false",
            "-no-rec",
            "-rtimeout",
            "1m30s",
            "-ndots",
            "3",
            "-path-prefix",
            "/custom",
            "-etcd3",
            "-hostmaster",
            "admin@example.local",
            "-metrics-port",
            "9100",
        ])
        .into_config()
        .unwrap();
        let zone = config.settings.resolve(None).unwrap();
        assert_eq!(zone.domain.to_ascii(), "staging.example.local.");
        assert_eq!(zone.listen.port(), 5353);
        assert_eq!(zone.nameservers.len(), 2);
        assert!(!zone.round_robin && !zone.ns_rotate && zone.no_rec);
        assert_eq!(zone.read_timeout, Duration::from_secs(90));
        assert_eq!(zone.ndots, 3);
        assert_eq!(zone.hostmaster.to_ascii(), "admin.example.local.");
        assert_eq!(config.schema.prefix(), "/custom");
        assert_eq!(config.metrics_addr, Some("0.0.0.0:9100".parse().unwrap()));
    }

    #[test]
    fn invalid_flags_are_errors_naming_the_value() {
        let cases: &[(&[&str], &str)] = &[
            (&["-addr", ":53"], "addr is invalid"),
            (&["-addr", "localhost:53"], "addr is invalid"),
            (&["-nameservers", "8.8.8.8"], "nameserver is invalid"),
            (&["-nameservers", "dns.example:53"], "nameserver is invalid"),
            (&["-rtimeout", "2"], "rtimeout"),
            (&["-forward-allow", "10.0.0.0/33"], "forward-allow"),
            (&["-path-prefix", "/"], "path prefix"),
        ];
        for (args, message) in cases {
            let err = flags(args).into_config().unwrap_err().to_string();
            assert!(err.contains(message), "{args:?}: {err}");
        }
    }

    #[test]
    fn systemd_comes_from_the_flag_the_environment_or_the_etcd_document() {
        let off = flags(&[]).into_config().unwrap().settings;
        assert!(!off.systemd);
        let on = flags(&["-systemd"]).into_config().unwrap().settings;
        assert!(on.systemd);
        for (value, expected) in [
            ("false", false),
            ("0", false),
            ("", false),
            ("1", true),
            ("t", true),
            ("TRUE", true),
        ] {
            let args = [format!("-systemd={value}")];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let settings = flags(&args).into_config().unwrap().settings;
            assert_eq!(settings.systemd, expected, "{value}");
        }
        // -addr is still checked (as the original checks it), though -systemd does not use it.
        let err = flags(&["-systemd", "-addr", ":53"])
            .into_config()
            .unwrap_err()
            .to_string();
        assert!(err.contains("addr is invalid"), "{err}");
        // The document turns it on or off over the flag, as Go's json.Unmarshal does.
        let mut settings = off.clone();
        settings.apply_etcd_json(br#"{"SystemD":true}"#).unwrap();
        assert!(settings.systemd);
        let mut settings = on.clone();
        settings.apply_etcd_json(br#"{"systemd":false}"#).unwrap();
        assert!(!settings.systemd);
        let mut settings = on.clone();
        settings
            .apply_etcd_json(br#"{"domain":"x.local."}"#)
            .unwrap();
        assert!(settings.systemd, "absent key keeps the flag");
        let err = off
            .clone()
            .apply_etcd_json(br#"{"systemd":"yes"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("systemd: expected a bool"), "{err}");
    }

    #[test]
    fn env_bools_read_as_go_reads_them() {
        for text in ["1", "t", "T", "true", "True", "TRUE", "yes", "on"] {
            assert_eq!(parse_env_bool(text), Ok(true), "{text}");
        }
        for text in ["0", "f", "F", "false", "False", "FALSE", "no", "off", ""] {
            assert_eq!(parse_env_bool(text), Ok(false), "{text}");
        }
        for text in ["2", "yess", "enabled"] {
            assert!(parse_env_bool(text).is_err(), "{text}");
        }
        let err = Flags::try_parse_from(["skydns", "--systemd=maybe"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a boolean"), "{err}");
    }

    #[test]
    fn systemd_reads_skydns_systemd() {
        let command = <Flags as clap::CommandFactory>::command();
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == "systemd")
            .unwrap();
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some("SKYDNS_SYSTEMD")
        );
    }

    #[test]
    fn etcd_json_overrides_flags_and_keeps_absent_fields() {
        let mut settings = flags(&["-domain", "flag.local.", "-nameservers", "127.0.0.1:1"])
            .into_config()
            .unwrap()
            .settings;
        settings
            .apply_etcd_json(
                br#"{"Domain":"json.local","ttl":60,"min_ttl":10,"ndot":1,"read_timeout":500000000,
                    "nameservers":["127.0.0.2:53"],"round_robin":false,"unknown":[1],"priority":5}"#,
            )
            .unwrap();
        let zone = settings.resolve(None).unwrap();
        assert_eq!(zone.domain.to_ascii(), "json.local.");
        assert_eq!(zone.ttl, 60);
        assert_eq!(zone.min_ttl, 10);
        assert_eq!(zone.ndots, 1);
        assert_eq!(zone.priority, 5);
        assert_eq!(zone.read_timeout, Duration::from_millis(500));
        assert_eq!(zone.nameservers, ["127.0.0.2:53".parse().unwrap()]);
        assert!(!zone.round_robin);
        assert!(zone.ns_rotate, "absent field keeps the flag value");
    }

    #[test]
    fn bad_etcd_json_is_an_error() {
        let mut settings = flags(&[]).into_config().unwrap().settings;
        for bad in [
            &b"not json"[..],
            br#"{"ttl":"30"}"#,
            br#"{"nameservers":"x"}"#,
            b"[1]",
        ] {
            let err = settings.apply_etcd_json(bad).unwrap_err().to_string();
            assert!(err.starts_with("failed to unmarshal config"), "{err}");
        }
    }

    #[test]
    fn resolv_conf_nameservers_get_port_53() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(
            &path,
            "# c\nnameserver 192.0.2.1\nsearch x\nnameserver ::1\nnameserver bogus\n",
        )
        .unwrap();
        assert_eq!(
            read_resolv_conf(&path),
            [
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert!(read_resolv_conf(&dir.path().join("missing")).is_empty());
    }
}
