//! Logspout: ships every container's stdout/stderr to syslog and raw routes — a drop-in
//! replacement for gliderlabs/logspout v3.2.14 that neither loses nor repeats lines when Docker
//! streams or destinations come and go.
//!
//! Data flow: [`pump`] (one supervisor per container, resuming by Docker timestamp) →
//! [`routes`] (render per route, bounded [`queue`] per route) → [`sender`] (one task per
//! route, reconnecting with backoff). [`http`] serves the routes API, `/logs` taps and metrics.

pub mod config;
pub mod filter;
pub mod http;
pub mod lines;
pub mod message;
pub mod metrics;
pub mod multiline;
pub mod position;
pub mod positions_file;
pub mod pump;
pub mod queue;
pub mod relp;
pub mod render;
pub mod route;
pub mod routes;
pub mod sender;
pub mod structured;
pub mod syslog;
pub mod tap;
pub mod template;
pub mod tls;

use std::sync::{Arc, OnceLock};

use common::Backoff;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ConfigError};

use crate::http::HttpState;
use crate::metrics::Metrics;
use crate::pump::Pump;
use crate::routes::{AddRouteError, RouteContext, RouteTable};
use crate::tap::Taps;

/// The version `--version` prints (the original prints e.g. `v3.2.14`).
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// Why logspout stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("route {uri}: {source}")]
    Route {
        uri: String,
        #[source]
        source: AddRouteError,
    },
    #[error(transparent)]
    Http(#[from] common::http::HttpError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Runs logspout until `shutdown` is cancelled, then stops reading, flushes every route's
/// queue (bounded by `config.flush_timeout`) and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let metrics = Metrics::new()?;
    let ctx = RouteContext {
        adapters: config.adapters.clone(),
        tls: config.tls.clone(),
        queue_bytes: config.queue_bytes,
        backoff: config.sender_backoff,
        timeouts: config.sender_timeouts,
        retry_count: config.retry_count,
        metrics,
    };
    let routes = Arc::new(RouteTable::new(ctx, config.routes_path.clone()));
    tracing::info!(version = VERSION, "logspout starting");
    tracing::info!(
        adapters = "raw syslog json gelf logstash relp multiline tcp udp tls",
        persist = %config.routes_path.as_ref().map_or("(none)".into(), |p| p.display().to_string()),
        backlog = config.pump.backlog,
        "options"
    );
    for route in &config.routes {
        let uri = format!("{}://{}", route.adapter, route.address);
        routes
            .add(route.clone(), false)
            .map_err(|source| RunError::Route { uri, source })?;
    }
    let persisted = routes.load_persisted();
    if persisted > 0 {
        tracing::info!(count = persisted, "loaded persisted routes");
    }
    for route in routes.list() {
        tracing::info!(id = %route.id, adapter = %route.adapter, address = %route.address,
            filter_id = %route.filter_id, filter_name = %route.filter_name,
            filter_labels = %route.filter_labels.join(","), filter_sources = %route.filter_sources.join(","),
            options = ?route.options, "route");
    }
    if routes.list().is_empty() {
        tracing::info!("routes: none");
    }

    let taps = Arc::new(Taps::new(config.max_taps, routes.metrics().taps.clone()));
    let pump_cell = Arc::new(OnceLock::new());
    let (listener, addr) = common::http::bind(config.http_addr).await?;
    tracing::info!(%addr, "HTTP listening (health, logs, routes, metrics)");
    let http_shutdown = CancellationToken::new();
    let state = HttpState {
        routes: routes.clone(),
        taps: taps.clone(),
        pump: pump_cell.clone(),
        token: config.http_token.clone(),
        shutdown: shutdown.clone(),
    };
    let limits = common::http::ServeLimits {
        refused: Some(routes.metrics().http_refused.clone()),
        ..common::http::ServeLimits::default()
    };
    let http = tokio::spawn(common::http::serve_with(
        listener,
        http::router(state),
        http_shutdown.clone(),
        limits,
    ));

    let connect_policy = Backoff {
        max_delay: std::time::Duration::from_secs(10),
        ..Backoff::default()
    };
    let docker = connect_policy
        .retry("connect to Docker", &shutdown, || config.docker.connect())
        .await;
    if let Ok(docker) = docker {
        let pump = Pump::new(docker, routes.clone(), taps, config.pump.clone());
        let _ = pump_cell.set(pump.clone());
        pump.run(shutdown.clone()).await;
    }

    tracing::info!("stopped reading logs, flushing route queues");
    let left = routes.flush(config.flush_timeout).await;
    if left > 0 {
        tracing::warn!(
            undelivered = left,
            "shutdown: some queued messages could not be delivered in time"
        );
    } else {
        tracing::info!("all queued messages delivered");
    }
    http_shutdown.cancel();
    match http.await {
        Ok(result) => result?,
        Err(e) => tracing::warn!(error = %e, "HTTP task failed"),
    }
    Ok(())
}
