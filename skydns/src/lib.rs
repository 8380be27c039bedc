//! SkyDNS: authoritative DNS for the service records that registrator keeps in etcd, answered
//! from an in-memory index that follows etcd through a watch, with forwarding of other names.
//!
//! `run` reads the `/skydns/config` document, loads the index, then serves DNS on UDP and TCP
//! (and, if configured, `/metrics` and `/health` over HTTP) until the shutdown token fires.
//! The sockets are bound on `-addr`, or with `-systemd` handed over by systemd (`run_with`).

pub mod activation;
pub mod config;
pub mod dnssec;
pub mod handler;
pub mod http;
pub mod index;
pub mod metrics;
pub mod resolve;
pub mod state;
pub mod tcp;
pub mod upstream;
pub mod watcher;

use std::net::SocketAddr;
use std::sync::Arc;

use etcd_client::Client;
use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use activation::ActivationError;
pub use activation::Handover;
pub use config::{Config, Flags};
use config::{ConfigError, Settings};
use handler::DnsHandler;
use metrics::{Metrics, MetricsError};
use state::{Features, Shared};
use tcp::TcpServer;
use watcher::Watcher;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Dnssec(#[from] dnssec::DnssecError),
    #[error("cannot listen on {addr} ({transport}): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        transport: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Activation(#[from] ActivationError),
    #[error("cannot serve the {transport} socket systemd handed over: {source}")]
    HandedOver {
        transport: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] common::http::HttpError),
    #[error("DNS server failed: {0}")]
    Server(String),
}

/// Runs skydns until `shutdown` is cancelled. etcd being unreachable is retried with backoff
/// (nothing is served until the configuration and the index have been read once). No socket is
/// taken from systemd: with `systemd` set this fails; the binary uses [`run_with`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    run_with(config, Handover::none(), shutdown).await
}

/// [`run`], serving the sockets of `handover` instead of binding `dns_addr` when `systemd` is
/// set by the flags or by the etcd document. With the flag and nothing handed over it fails
/// before reaching for etcd; when the document is what sets it, once the document is read.
pub async fn run_with(
    config: Config,
    handover: Handover,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    if config.settings.systemd {
        handover.check()?;
    }
    let Some(mut client) = connect(&config, &shutdown).await else {
        return Ok(());
    };
    let Some(settings) = read_settings(&config, &mut client, &shutdown).await? else {
        return Ok(());
    };
    let zone = settings.resolve(config.resolv_conf.as_deref())?;
    let (namespace, subsystem) = &config.metrics_names;
    let metrics = Metrics::with_names(namespace, subsystem)?;
    let dnssec = if settings.dnssec.is_empty() {
        None
    } else {
        let key = dnssec::Dnssec::load(
            &settings.dnssec,
            &zone.domain,
            zone.ttl,
            zone.min_ttl,
            settings.scache,
            metrics.cache_miss_signature.clone(),
        )?;
        tracing::info!(key = %key.describe(), scache = settings.scache, "signing with {}", settings.dnssec);
        Some(key)
    };
    let shared = Arc::new(Shared::new(
        zone,
        config.forward_allow.clone(),
        metrics,
        Features {
            verbose: config.verbose,
            stubzones: config.stubzones,
            dnssec,
        },
        config.limits,
    ));

    let mut watcher = Watcher::new(client, config.schema.clone(), shared.clone());
    let retry = common::etcd::retry_policy();
    let mut delays = retry.delays();
    let revision = loop {
        match watcher.load().await {
            Ok(revision) => break revision,
            Err(error) => {
                let delay = delays.next().unwrap_or(retry.max_delay);
                tracing::warn!(%error, retry_in = ?delay, "cannot read the index from etcd");
                if !common::backoff::sleep_unless_cancelled(delay, &shutdown).await {
                    return Ok(());
                }
            }
        }
    };

    let listen = shared.zone.listen;
    let (udp_sockets, tcp_listeners, addresses) = if settings.systemd {
        activated(handover, listen)?
    } else {
        drop(handover);
        bound(listen).await?
    };
    let handler = DnsHandler::new(shared.clone());
    let mut server = Server::new(handler.clone());
    for udp in udp_sockets {
        server.register_socket(udp);
    }
    let mut tasks = tokio::task::JoinSet::new();
    // TCP is served by our own accept loop: hickory's bounds neither connections nor, per
    // connection, the time to send a query. (`-tcp-max-connections` applies to each listener.)
    for tcp in tcp_listeners {
        let tcp_server = TcpServer {
            handler: handler.clone(),
            max_connections: config.limits.tcp_max_connections,
            idle_timeout: config.limits.tcp_idle_timeout,
            refused: shared.metrics.tcp_refused.clone(),
            open: shared.metrics.tcp_connections.clone(),
        };
        tasks.spawn(tcp_server.serve(tcp, shutdown.child_token()));
    }
    tasks.spawn(watcher.run(revision, shutdown.child_token()));
    if let Some(addr) = config.metrics_addr {
        let (listener, bound) = common::http::bind(addr).await?;
        tracing::info!(addr = %bound, path = %config.metrics_path, "metrics enabled");
        let router = http::router(shared.clone(), &config.metrics_path);
        let token = shutdown.child_token();
        tasks.spawn(async move {
            if let Err(error) = common::http::serve(listener, router, token).await {
                tracing::error!(%error, "metrics server stopped");
            }
        });
    }
    tracing::info!(
        domain = %shared.zone.domain,
        "ready for queries on {} for {}",
        shared.zone.domain,
        addresses.join(" and ")
    );
    activation::notify_ready();

    shutdown.cancelled().await;
    tracing::info!("stopping the DNS server");
    activation::notify_stopping();
    let stopped = server.shutdown_gracefully().await;
    while tasks.join_next().await.is_some() {}
    stopped.map_err(|e| RunError::Server(e.to_string()))
}

/// Connects to etcd, retrying until it answers; `None` if shut down first.
async fn connect(config: &Config, shutdown: &CancellationToken) -> Option<Client> {
    let retry = common::etcd::retry_policy();
    retry
        .retry("connect to etcd", shutdown, || config.etcd.connect())
        .await
        .ok()
}

/// The flag/env settings with the `/P/config` document applied (a missing document means
/// flags and defaults; an unreadable etcd is retried). `None` if shut down first.
async fn read_settings(
    config: &Config,
    client: &mut Client,
    shutdown: &CancellationToken,
) -> Result<Option<Settings>, ConfigError> {
    let key = config.schema.config_key();
    let retry = common::etcd::retry_policy();
    let response = retry
        .retry("read the configuration from etcd", shutdown, || {
            let mut client = client.clone();
            let key = key.clone();
            async move { client.get(key, None).await }
        })
        .await;
    let Ok(response) = response else {
        return Ok(None);
    };
    let mut settings = config.settings.clone();
    match response.kvs().first() {
        Some(kv) => {
            settings.apply_etcd_json(kv.value())?;
            tracing::info!(%key, "configuration read from etcd");
        }
        None => tracing::info!(%key, "no configuration in etcd; using flags and defaults"),
    }
    Ok(Some(settings))
}

/// What DNS is served on: UDP sockets, TCP listeners, and their addresses for the log.
type Listeners = (Vec<UdpSocket>, Vec<TcpListener>, Vec<String>);

/// The UDP sockets and TCP listener on `listen`, and their addresses for the log.
async fn bound(listen: SocketAddr) -> Result<Listeners, RunError> {
    let udp_sockets = bind_udp(listen).map_err(|source| RunError::Listen {
        addr: listen,
        transport: "udp",
        source,
    })?;
    let tcp = TcpListener::bind(listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: listen,
            transport: "tcp",
            source,
        })?;
    Ok((
        udp_sockets,
        vec![tcp],
        vec![format!("tcp://{listen}"), format!("udp://{listen}")],
    ))
}

/// The sockets systemd handed over, ready for tokio, and their addresses for the log.
fn activated(handover: Handover, listen: SocketAddr) -> Result<Listeners, RunError> {
    let sockets = handover.take()?;
    tracing::info!(
        ignored = %listen,
        "-systemd: serving the sockets systemd handed over; -addr (dns_addr) is not used"
    );
    for (fd, reason) in &sockets.skipped {
        tracing::warn!(fd, %reason, "-systemd: descriptor skipped: neither a UDP nor a TCP socket");
    }
    let addresses = sockets.addresses();
    let udp = sockets
        .udp
        .into_iter()
        .map(|socket| {
            socket.set_nonblocking(true)?;
            UdpSocket::from_std(socket)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|source| RunError::HandedOver {
            transport: "udp",
            source,
        })?;
    let tcp = sockets
        .tcp
        .into_iter()
        .map(|listener| {
            listener.set_nonblocking(true)?;
            TcpListener::from_std(listener)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|source| RunError::HandedOver {
            transport: "tcp",
            source,
        })?;
    Ok((udp, tcp, addresses))
}

/// One UDP socket per core on `addr` (`SO_REUSEPORT`), so the kernel spreads queries over
/// them; a single socket if the option is unavailable.
fn bind_udp(addr: std::net::SocketAddr) -> std::io::Result<Vec<UdpSocket>> {
    let count = std::thread::available_parallelism().map_or(1, usize::from);
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if count > 1 && socket.set_reuse_port(true).is_err() {
            break;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        sockets.push(UdpSocket::from_std(socket.into())?);
        if count == 1 {
            break;
        }
    }
    if sockets.is_empty() {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        sockets.push(UdpSocket::from_std(socket)?);
    }
    Ok(sockets)
}
