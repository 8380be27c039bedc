//! `logspout healthcheck`: `GET /health` on the running server's HTTP port, for Docker's
//! `HEALTHCHECK`. Healthy means status 200.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;

/// How long the whole exchange may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(3);

/// Requests `GET /health` and checks that the status is 200.
pub(crate) async fn check(server: SocketAddr) -> anyhow::Result<String> {
    let response = common::http::get(server, "/health", TIMEOUT).await?;
    let status = response.status();
    if status != axum::http::StatusCode::OK {
        bail!("http://{server}/health answers {status}");
    }
    Ok(format!("http://{server}/health answers {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use harness::wait_until;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn healthy_while_the_server_runs_unhealthy_without_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let env = move |name: &str| match name {
            "PORT" => Some(port.to_string()),
            "HTTP_BIND_ADDRESS" => Some("127.0.0.1".to_owned()),
            "ROUTESPATH" => Some("/nonexistent-logspout-routes".to_owned()),
            _ => None,
        };
        let config = logspout::Config::from_lookup(None, env, None).unwrap();
        let server_addr = common::healthcheck::local_target(config.http_addr);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(logspout::run(config, shutdown.clone()));

        let status = wait_until(
            "logspout to answer /health",
            Duration::from_secs(30),
            || async { check(server_addr).await.ok() },
        )
        .await;
        assert!(status.contains("200"), "{status}");

        shutdown.cancel();
        server.await.unwrap().unwrap();
        let error = check(server_addr).await.unwrap_err();
        assert!(
            error.to_string().contains(&server_addr.to_string()),
            "{error:#}"
        );
    }

    #[tokio::test]
    async fn another_status_is_unhealthy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await.unwrap();
            stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        let error = check(addr).await.unwrap_err();
        assert!(error.to_string().contains("503"), "{error:#}");
        server.await.unwrap();
    }
}
