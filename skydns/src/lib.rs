//! SkyDNS: authoritative DNS for the service records that registrator keeps in etcd, answered
//! from an in-memory index that follows etcd through a watch, with forwarding of other names.
//!
//! `run` reads the `/skydns/config` document, loads the index, then serves DNS on UDP and TCP
//! (and, if configured, `/metrics` and `/health` over HTTP) until the shutdown token fires.

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

use std::sync::Arc;

use etcd_client::Client;
use hickory_server::Server;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use config::{Config, Flags};
use config::{ConfigError, Settings};
use handler::DnsHandler;
use metrics::{Metrics, MetricsError};
use state::Shared;
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
    Http(#[from] common::http::HttpError),
    #[error("DNS server failed: {0}")]
    Server(String),
}

/// Runs skydns until `shutdown` is cancelled. etcd being unreachable is retried with backoff
/// (nothing is served until the configuration and the index have been read once).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let Some(mut client) = connect(&config, &shutdown).await else {
        return Ok(());
    };
    let Some(settings) = read_settings(&config, &mut client, &shutdown).await? else {
        return Ok(());
    };
    let zone = settings.resolve(config.resolv_conf.as_deref())?;
    let (namespace, subsystem) = &config.metrics_names;
    let metrics = Metrics::with_names(namespace, subsystem)?;
    let mut shared = Shared::new(
        zone,
        config.forward_allow.clone(),
        metrics,
        config.verbose,
        config.limits,
    );
    shared.stubzones = config.stubzones;
    if !settings.dnssec.is_empty() {
        let key = dnssec::Dnssec::load(
            &settings.dnssec,
            &shared.zone.domain,
            shared.zone.ttl,
            shared.zone.min_ttl,
            settings.scache,
            shared.metrics.cache_miss_signature.clone(),
        )?;
        tracing::info!(key = %key.describe(), scache = settings.scache, "signing with {}", settings.dnssec);
        shared.dnssec = Some(key);
    }
    let shared = Arc::new(shared);

    let mut watcher = Watcher::new(client, config.schema.clone(), shared.clone());
    let retry = watcher::etcd_backoff();
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
    let handler = DnsHandler::new(shared.clone());
    let mut server = Server::new(handler.clone());
    for udp in udp_sockets {
        server.register_socket(udp);
    }
    // TCP is served by our own accept loop: hickory's bounds neither connections nor, per
    // connection, the time to send a query.
    let tcp_server = TcpServer {
        handler,
        max_connections: config.limits.tcp_max_connections,
        idle_timeout: config.limits.tcp_idle_timeout,
        refused: shared.metrics.tcp_refused.clone(),
        open: shared.metrics.tcp_connections.clone(),
    };

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(tcp_server.serve(tcp, shutdown.child_token()));
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
        addr = %listen,
        "ready for queries on {} for tcp://{listen} and udp://{listen}",
        shared.zone.domain
    );

    shutdown.cancelled().await;
    tracing::info!("stopping the DNS server");
    let stopped = server.shutdown_gracefully().await;
    while tasks.join_next().await.is_some() {}
    stopped.map_err(|e| RunError::Server(e.to_string()))
}

/// Connects to etcd, retrying until it answers; `None` if shut down first.
async fn connect(config: &Config, shutdown: &CancellationToken) -> Option<Client> {
    let retry = watcher::etcd_backoff();
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
    let retry = watcher::etcd_backoff();
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
