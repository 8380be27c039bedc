//! `logspout healthcheck`: `GET /health` on the running server's HTTP port, for Docker's
//! `HEALTHCHECK`. Healthy means the status line says 200.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the whole exchange may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(3);

/// The longest reply read: the status line is all the check looks at.
const MAX_REPLY: u64 = 4096;

/// Sends `GET /health` (HTTP/1.0, the connection closes after the reply) and checks the status.
pub(crate) async fn check(server: SocketAddr) -> anyhow::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(server)
            .await
            .with_context(|| format!("cannot connect to {server}"))?;
        let request = format!("GET /health HTTP/1.0\r\nHost: {server}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .with_context(|| format!("cannot send to {server}"))?;
        let mut reply = Vec::new();
        stream
            .take(MAX_REPLY)
            .read_to_end(&mut reply)
            .await
            .with_context(|| format!("cannot read the reply of {server}"))?;
        Ok::<_, anyhow::Error>(reply)
    };
    let reply = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no reply from {server} within {TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&reply);
    let status_line = text.lines().next().unwrap_or_default().to_owned();
    let status = status_line.split_whitespace().nth(1);
    if !status_line.starts_with("HTTP/1.") || status != Some("200") {
        bail!("http://{server}/health answers {status_line:?}");
    }
    Ok(status_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    use harness::wait_until;

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
