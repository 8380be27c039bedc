//! The small HTTP side of every component: Prometheus metrics in the text format and a
//! `/health` route, served with axum until shutdown; and a plain `GET` for health checks and
//! tests.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus::{Encoder, IntCounter, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::net::BoundedListener;

/// Why the HTTP server could not run.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("GET {url} failed: {reason}")]
    Get { url: String, reason: String },
}

/// `GET http://<addr><path>` with a bound on the whole exchange, body read in full.
pub async fn get(
    addr: SocketAddr,
    path: &str,
    timeout: std::time::Duration,
) -> Result<axum::http::Response<bytes::Bytes>, HttpError> {
    use http_body_util::BodyExt;
    let url = format!("http://{addr}{path}");
    let error = |reason: String| HttpError::Get {
        url: url.clone(),
        reason,
    };
    let uri: axum::http::Uri = url.parse().map_err(|e| error(format!("{e}")))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let exchange = async {
        let (head, body) = client
            .get(uri)
            .await
            .map_err(|e| error(format!("{e}")))?
            .into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| error(format!("{e}")))?
            .to_bytes();
        Ok(axum::http::Response::from_parts(head, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| error(format!("no answer within {timeout:?}")))?
}

/// A router answering `GET <path>` with every metric of `registry` in the Prometheus text format.
pub fn metrics_router(registry: Registry, path: &str) -> Router {
    metrics_router_with(registry, path, || {})
}

/// As [`metrics_router`], calling `refresh` before each scrape (for gauges computed on demand,
/// such as an age that grows between events).
pub fn metrics_router_with(
    registry: Registry,
    path: &str,
    refresh: impl Fn() + Clone + Send + Sync + 'static,
) -> Router {
    Router::new().route(
        path,
        routing::get(move || {
            let registry = registry.clone();
            let refresh = refresh.clone();
            async move {
                refresh();
                render(&registry)
            }
        }),
    )
}

fn render(registry: &Registry) -> axum::response::Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Binds `addr` (port 0 picks a free port) and returns the listener and its real address.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Bounds of an HTTP server: how many connections it holds, and how long a client may take to
/// send a request head (also the longest a kept-alive connection may sit idle).
#[derive(Debug, Clone)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// How long open requests may run on after shutdown before their connections are dropped.
    pub shutdown_grace: Duration,
    /// Counts connections closed at once because `max_connections` were open.
    pub refused: Option<IntCounter>,
}

impl Default for ServeLimits {
    /// 256 connections, 10 s for a request head, 5 s of grace at shutdown.
    fn default() -> Self {
        Self {
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            refused: None,
        }
    }
}

/// Serves `router` on `listener` with the default [`ServeLimits`] until `shutdown` is
/// cancelled, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    serve_with(listener, router, shutdown, ServeLimits::default()).await
}

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled: a connection
/// beyond `max_connections` is closed at once (and counted), a client that does not send a
/// request head within `header_read_timeout` is disconnected. WebSocket upgrades work.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    limits: ServeLimits,
) -> Result<(), HttpError> {
    let listener = BoundedListener::new(
        listener,
        "HTTP",
        limits.max_connections,
        limits.refused.clone(),
    );
    let connections = TaskTracker::new();
    while let Some((stream, peer, slot)) = listener.accept(&shutdown).await {
        let service = TowerToHyperService::new(router.clone());
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let shutdown = shutdown.clone();
        let grace = limits.shutdown_grace;
        connections.spawn(async move {
            let _slot = slot;
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(grace, connection.as_mut()).await {
                        Ok(result) => result,
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::IntCounter;

    #[tokio::test]
    async fn metrics_are_served_in_the_text_format_until_shutdown() {
        let registry = Registry::new();
        let counter = IntCounter::new("demo_events_total", "events seen").unwrap();
        registry.register(Box::new(counter.clone())).unwrap();
        counter.inc_by(3);
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            metrics_router(registry, "/metrics"),
            shutdown.clone(),
        ));

        let response = get(addr, "/metrics", std::time::Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers().get(header::CONTENT_TYPE).unwrap();
        assert!(
            content_type
                .to_str()
                .unwrap()
                .contains("text/plain; version=0.0.4"),
            "{content_type:?}"
        );
        let body = String::from_utf8_lossy(response.body());
        assert!(body.contains("demo_events_total 3\n"), "{body}");
        assert!(
            get(addr, "/nowhere", std::time::Duration::from_secs(10))
                .await
                .unwrap()
                .status()
                == StatusCode::NOT_FOUND
        );

        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_taken_port_is_a_clear_error() {
        let (_held, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let err = bind(addr).await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot listen for HTTP on {addr}")),
            "{err}"
        );
    }

    /// Reads until the server closes the connection; false if it is still open after 10 s.
    async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        let read = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_client_that_sends_no_request_head_is_disconnected() {
        use tokio::io::AsyncWriteExt;
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let shutdown = CancellationToken::new();
        let limits = ServeLimits {
            header_read_timeout: Duration::from_millis(300),
            ..ServeLimits::default()
        };
        let router = metrics_router(Registry::new(), "/metrics");
        let server = tokio::spawn(serve_with(listener, router, shutdown.clone(), limits));
        // Silent, and a head that never ends (slowloris): both are cut off.
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\nX-A: 1\r\n")
            .await
            .unwrap();
        assert!(
            closed_by_server(&mut silent).await,
            "an idle connection stays open"
        );
        assert!(
            closed_by_server(&mut slow).await,
            "a never-ending head stays open"
        );
        let response = get(addr, "/metrics", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn connections_beyond_the_bound_are_closed_and_counted() {
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let shutdown = CancellationToken::new();
        let refused = IntCounter::new("refused_total", "refused").unwrap();
        let limits = ServeLimits {
            max_connections: 2,
            refused: Some(refused.clone()),
            ..ServeLimits::default()
        };
        let router = metrics_router(Registry::new(), "/metrics");
        let server = tokio::spawn(serve_with(listener, router, shutdown.clone(), limits));
        let held: Vec<_> = [
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            tokio::net::TcpStream::connect(addr).await.unwrap(),
        ]
        .into();
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_by_server(&mut third).await,
            "a third connection was kept"
        );
        assert_eq!(refused.get(), 1);
        drop(held);
        // Once the held connections are gone, requests are served again.
        let mut served = None;
        for _ in 0..100 {
            if let Ok(response) = get(addr, "/metrics", Duration::from_secs(10)).await {
                served = Some(response.status());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(served, Some(StatusCode::OK));
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
