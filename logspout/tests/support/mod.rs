//! Running the real `logspout` binary in tests: environment, HTTP requests, SIGTERM.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use harness::process::{free_tcp_port, spawn_tied, terminate};
use harness::wait_until;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const WAIT: Duration = Duration::from_secs(30);

/// A running logspout, killed when dropped.
#[derive(Debug)]
pub struct Logspout {
    child: Child,
    pub http: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The environment every test logspout gets: loopback HTTP on a free port, no persisted routes
/// unless asked, UTC timestamps.
pub fn command(
    routes: Option<&str>,
    env: &[(&str, &str)],
) -> (Command, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_logspout"));
    if let Some(routes) = routes {
        command.arg(routes);
    }
    command
        .env_remove("ROUTE_URIS")
        .env("PORT", port.to_string())
        .env("HTTP_BIND_ADDRESS", "127.0.0.1")
        .env("ROUTESPATH", dir.path().join("absent"))
        .env("TZ", "UTC")
        .env("RUST_LOG", "info,logspout=debug")
        .env("LOGSPOUT_FLUSH_TIMEOUT", "20s");
    for (k, v) in env {
        command.env(k, v);
    }
    (command, SocketAddr::from(([127, 0, 0, 1], port)), dir)
}

impl Logspout {
    /// Starts logspout and waits until it answers `/health`.
    pub async fn start(routes: Option<&str>, env: &[(&str, &str)]) -> Self {
        let (mut command, http, dir) = command(routes, env);
        command.stdout(Stdio::null()).stderr(log_file(&dir));
        let child = spawn_tied(command).expect("spawn logspout");
        let logspout = Self {
            child,
            http,
            _dir: dir,
        };
        logspout.wait_healthy().await;
        logspout
    }

    /// Starts logspout with a routes directory that exists (persistence on).
    pub async fn start_persisting(routes_dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let (mut command, http, dir) = command(None, env);
        command
            .env("ROUTESPATH", routes_dir)
            .stdout(Stdio::null())
            .stderr(log_file(&dir));
        let child = spawn_tied(command).expect("spawn logspout");
        let logspout = Self {
            child,
            http,
            _dir: dir,
        };
        logspout.wait_healthy().await;
        logspout
    }

    pub async fn wait_healthy(&self) {
        let addr = self.http;
        wait_until("logspout /health", WAIT, || async move {
            let (status, _, body) = request(addr, "GET", "/health", &[], "").await.ok()?;
            (status == 200 && body == "Healthy!\n").then_some(())
        })
        .await;
    }

    pub async fn get(&self, path: &str) -> (u16, String, String) {
        request(self.http, "GET", path, &[], "")
            .await
            .expect("HTTP request")
    }

    /// The value of a metric line starting with `prefix` (summed over matching series).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let (_, _, body) = self.get("/metrics").await;
        harness::http::metric_sum(&body, prefix)
    }

    /// Waits until logspout logged that it attached the container named `name`.
    pub async fn wait_attached(&self, name: &str) {
        let needle = format!("/{name} ");
        wait_until(&format!("logspout attached to {name}"), WAIT, || async {
            self.log()
                .lines()
                .any(|l| l.contains(" attached ") && l.contains(&needle))
                .then_some(())
        })
        .await;
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait for logspout").is_none()
    }

    pub fn terminate(&self) {
        terminate(&self.child).expect("SIGTERM logspout");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait for logspout") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "logspout did not exit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn log_file(dir: &tempfile::TempDir) -> Stdio {
    std::fs::File::create(dir.path().join("logspout.log"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::inherit())
}

impl Logspout {
    /// What logspout logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("logspout.log")).unwrap_or_default()
    }
}

impl Drop for Logspout {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- logspout log ---\n{}", self.log());
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`: (status, headers, body).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: logspout\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("HTTP response timed out"))??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {text:?}")))?;
    Ok((status, head.to_owned(), body.to_owned()))
}

/// Runs logspout expecting it to exit at once: (exit code, stderr).
pub fn run_to_exit(routes: Option<&str>, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let (mut command, _, _dir) = command(routes, env);
    command.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = spawn_tied(command).expect("spawn logspout");
    let output = child.wait_with_output().expect("logspout output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A name no other test (or engineer) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
