//! The small HTTP side of every component: Prometheus metrics in the text format and a
//! `/health` route, served with axum until shutdown; and a plain `GET` for health checks and
//! tests.

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why the HTTP server could not run.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server on {addr} failed: {source}")]
    Serve {
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
    Router::new().route(
        path,
        routing::get(move || {
            let registry = registry.clone();
            async move { render(&registry) }
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

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets open requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|source| HttpError::Serve { addr, source })
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
}
