//! Registrator: turns the published ports of running Docker containers into etcd service records
//! (`skydns2://` or `etcd://`), a drop-in for gliderlabs/registrator.
//!
//! [`run`] connects to etcd (retrying per `-retry-attempts`), then runs two tasks: the
//! [`watcher::ContainerWatcher`] follows Docker and derives services ([`derive`], pure), and the
//! [`writer::RegistryWriter`] is the only writer to etcd.

pub mod derive;
pub mod metadata;
pub mod metrics;
pub mod options;
pub mod registry_uri;
pub mod watcher;
pub mod writer;

use std::net::IpAddr;

use common::backoff::RetryError;
use common::etcd::EtcdError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use options::{Config, ConfigError, Options};

use crate::metrics::Metrics;
use crate::watcher::{ContainerWatcher, WatcherSettings};
use crate::writer::RegistryWriter;

/// Commands queued between the watcher and the writer.
const COMMAND_QUEUE: usize = 1024;

/// Why registrator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot reach the registry")]
    Registry(#[source] EtcdError),
    #[error(transparent)]
    Http(#[from] common::http::HttpError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The first 12 characters of a container ID, as Docker prints it (the whole text if shorter).
pub(crate) fn short(id: &str) -> &str {
    id.char_indices().nth(12).map_or(id, |(end, _)| &id[..end])
}

/// This host's name, as the original's `os.Hostname()`: the first part of default service IDs.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The address a binding on `0.0.0.0` is registered as: the host name's first non-loopback
/// address (the original took whatever came first, often 127.0.1.1 from `/etc/hosts`).
async fn host_address(hostname: &str) -> Option<String> {
    let addresses: Vec<IpAddr> = tokio::net::lookup_host((hostname, 0))
        .await
        .ok()?
        .map(|a| a.ip())
        .collect();
    let preferred = addresses
        .iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .or_else(|| addresses.iter().find(|ip| !ip.is_loopback()));
    match preferred {
        Some(ip) => Some(ip.to_string()),
        None => {
            let first = addresses.first()?;
            tracing::warn!(%hostname, address = %first, "the host name resolves only to a loopback address; set -ip");
            Some(first.to_string())
        }
    }
}

/// Runs registrator until `shutdown` is cancelled, then removes this instance's records (unless
/// `-keep-on-exit`). Fails only at start-up: when the registry cannot be reached within
/// `-retry-attempts`, or the metrics address cannot be bound.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let metrics = Metrics::new()?;
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = config.metrics {
        let (listener, local) = common::http::bind(addr).await?;
        tracing::info!(addr = %local, "serving metrics on /metrics");
        let router = common::http::metrics_router(metrics.registry.clone(), "/metrics");
        let http_shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(err) = common::http::serve(listener, router, http_shutdown).await {
                tracing::error!(error = %err, "metrics server stopped");
            }
        });
    }

    if config.derive.hostname.is_empty() {
        config.derive.hostname = hostname();
    }
    if config.derive.host_ip.is_none() {
        config.derive.unspecified_ip = host_address(&config.derive.hostname).await;
    }
    config.derive.ttl = config.ttl.map_or(0, |t| t.ttl.as_secs() as u32);

    let etcd = config.registry.etcd.clone();
    let client = match config
        .startup_retry
        .retry("connect to the registry", &shutdown, || etcd.connect())
        .await
    {
        Ok(client) => client,
        Err(RetryError::Cancelled) => return Ok(()),
        Err(RetryError::Exhausted { last, .. }) => return Err(RunError::Registry(last)),
    };
    tracing::info!(endpoints = %etcd.endpoints().join(","), prefix = %config.registry.backend.prefix(), "connected to the registry");

    let (commands, queue) = mpsc::channel(COMMAND_QUEUE);
    let writer = RegistryWriter::new(client, config.ttl, config.keep_on_exit, metrics.clone());
    let watcher = ContainerWatcher::new(
        WatcherSettings {
            docker: config.docker.clone(),
            derive: config.derive.clone(),
            backend: config.registry.backend.clone(),
            deregister: config.deregister,
            resync: config.resync,
            require_healthy: config.require_healthy,
            cleanup: config.cleanup,
        },
        commands,
        metrics,
    );
    let writer_task = tokio::spawn(writer.run(queue, shutdown.clone()));
    watcher.run(shutdown.clone()).await;
    // The watcher dropped its sender: the writer finishes (and removes our records).
    if let Err(err) = writer_task.await {
        tracing::error!(error = %err, "the registry writer failed");
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
