//! A Docker daemon restart without restarting the daemon: a unix-socket proxy in front of the
//! Docker Engine (the one [`crate::TestDocker`] uses) that forwards every connection byte for
//! byte, and that a test can cut — every open connection closed at once, so log streams and
//! event subscriptions end abruptly, and new connections refused because the socket file is gone —
//! and then restore on the same path. Other tests keep using the real socket meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{DockerHost, DockerSettings};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop never spins.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// What the test asks of the proxy thread; each request is answered once it is done.
#[derive(Debug)]
enum Control {
    /// Stop listening, close every connection, remove the socket file.
    Cut(std::sync::mpsc::SyncSender<()>),
    /// Listen again on the same path.
    Restore(std::sync::mpsc::SyncSender<std::io::Result<()>>),
}

/// A proxy in front of the Docker socket; listening until [`cut`](Self::cut), stopped and its
/// socket removed when dropped.
#[derive(Debug)]
pub struct DockerProxy {
    path: PathBuf,
    control: Option<mpsc::UnboundedSender<Control>>,
    thread: Option<std::thread::JoinHandle<()>>,
    accepted: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
}

impl DockerProxy {
    /// Starts a proxy to the Docker Engine the tests use (`DOCKER_HOST`, else
    /// `/var/run/docker.sock`), listening at once.
    pub fn start() -> Self {
        let settings = DockerSettings::from_value(
            std::env::var("DOCKER_HOST").ok().as_deref(),
            &["unix:///var/run/docker.sock"],
        )
        .expect("DOCKER_HOST is valid");
        Self::to(settings.host)
    }

    /// Starts a proxy to `upstream`, listening at once.
    pub fn to(upstream: DockerHost) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for the proxy socket");
        let path = dir.path().join("docker.sock");
        let accepted = Arc::new(AtomicU64::new(0));
        let (control, requests) = mpsc::unbounded_channel();
        let (ready, listening) = std::sync::mpsc::channel();
        let thread = {
            let path = path.clone();
            let accepted = accepted.clone();
            std::thread::Builder::new()
                .name("docker-proxy".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime for the Docker proxy");
                    runtime.block_on(serve(path, upstream, requests, accepted, ready));
                })
                .expect("spawn the Docker proxy thread")
        };
        listening
            .recv()
            .expect("the Docker proxy thread started")
            .unwrap_or_else(|e| {
                panic!("the Docker proxy cannot listen on {}: {e}", path.display())
            });
        Self {
            path,
            control: Some(control),
            thread: Some(thread),
            accepted,
            _dir: dir,
        }
    }

    /// `unix:///…/docker.sock`, for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections accepted so far (a client that reconnected after an outage makes this grow).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The daemon goes away: stops listening, removes the socket file (connecting fails with
    /// "no such file") and closes every open connection, both towards the client and towards
    /// the daemon. Returns once all of that is done. Idempotent.
    pub fn cut(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.send(Control::Cut(done));
        wait.recv().expect("the Docker proxy answered");
    }

    /// The daemon is back: listens again on the same path. Idempotent.
    pub fn restore(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.send(Control::Restore(done));
        wait.recv()
            .expect("the Docker proxy answered")
            .unwrap_or_else(|e| {
                panic!(
                    "the Docker proxy cannot listen again on {}: {e}",
                    self.path.display()
                )
            });
    }

    /// [`cut`](Self::cut), `duration` with nothing listening, then [`restore`](Self::restore):
    /// what clients see of a daemon restart.
    pub async fn outage(&self, duration: Duration) {
        self.cut();
        tokio::time::sleep(duration).await;
        self.restore();
    }

    fn send(&self, request: Control) {
        self.control
            .as_ref()
            .expect("the Docker proxy is running")
            .send(request)
            .unwrap_or_else(|_| panic!("the Docker proxy thread stopped"));
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        // Closing the channel ends the proxy thread, which closes every connection.
        self.control.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path`, replacing a socket file left behind.
fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(path)
}

/// The proxy thread: accepts and forwards until the control channel closes, obeying cuts and
/// restores in between.
async fn serve(
    path: PathBuf,
    upstream: DockerHost,
    mut requests: mpsc::UnboundedReceiver<Control>,
    accepted: Arc<AtomicU64>,
    ready: std::sync::mpsc::Sender<std::io::Result<()>>,
) {
    let mut listener = match bind(&path) {
        Ok(listener) => Some(listener),
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let upstream = Arc::new(upstream);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                None => break,
                Some(Control::Cut(done)) => {
                    listener = None;
                    let _ = std::fs::remove_file(&path);
                    connections.abort_all();
                    while connections.join_next().await.is_some() {}
                    let _ = done.send(());
                }
                Some(Control::Restore(done)) => {
                    let result = match listener {
                        Some(_) => Ok(()),
                        None => bind(&path).map(|l| listener = Some(l)),
                    };
                    let _ = done.send(result);
                }
            },
            client = accept(listener.as_ref()) => match client {
                Ok(client) => {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(forward(client, upstream.clone()));
                }
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    drop(listener);
    let _ = std::fs::remove_file(&path);
}

/// The next client, or never while nothing listens.
async fn accept(listener: Option<&UnixListener>) -> std::io::Result<UnixStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// Connects to the daemon and copies both ways until either side closes. A client whose
/// daemon connection fails is simply closed.
async fn forward(mut client: UnixStream, upstream: Arc<DockerHost>) {
    match upstream.as_ref() {
        DockerHost::Unix(path) => {
            if let Ok(server) = UnixStream::connect(path).await {
                pipe(&mut client, server).await;
            }
        }
        DockerHost::Tcp(addr) => {
            if let Ok(server) = TcpStream::connect(addr.as_str()).await {
                pipe(&mut client, server).await;
            }
        }
    }
}

async fn pipe<S>(client: &mut UnixStream, mut server: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::io::copy_bidirectional(client, &mut server).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that echoes every byte back, on its own socket.
    async fn echo_server(dir: &Path) -> (DockerHost, tokio::task::JoinHandle<()>) {
        let path = dir.join("upstream.sock");
        let listener = UnixListener::bind(&path).expect("bind upstream");
        let task = tokio::spawn(async move {
            let mut echoes = JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                echoes.spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (DockerHost::Unix(path), task)
    }

    async fn roundtrip(stream: &mut UnixStream, bytes: &[u8]) -> Vec<u8> {
        stream.write_all(bytes).await.expect("write");
        let mut back = vec![0; bytes.len()];
        stream.read_exact(&mut back).await.expect("read back");
        back
    }

    #[tokio::test]
    async fn forwards_cuts_refuses_and_listens_again_on_the_same_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (upstream, server) = echo_server(dir.path()).await;
        let proxy = DockerProxy::to(upstream);
        assert_eq!(
            proxy.docker_host(),
            format!("unix://{}", proxy.path().display())
        );

        let mut open = UnixStream::connect(proxy.path()).await.expect("connect");
        let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        assert_eq!(roundtrip(&mut open, &payload).await, payload);
        assert_eq!(proxy.accepted(), 1);

        proxy.cut();
        // The open connection ends (EOF or reset), like a stream from a daemon that stopped.
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), open.read_to_end(&mut rest))
            .await
            .expect("the cut connection ends");
        assert!(ended.is_err() || rest.is_empty(), "{ended:?} {rest:?}");
        assert!(!proxy.path().exists(), "socket file removed while cut");
        let refused = UnixStream::connect(proxy.path()).await;
        assert!(refused.is_err(), "connections are refused while cut");
        proxy.cut();

        proxy.restore();
        proxy.restore();
        let mut again = UnixStream::connect(proxy.path()).await.expect("reconnect");
        assert_eq!(roundtrip(&mut again, b"after").await, b"after");
        assert_eq!(proxy.accepted(), 2);

        let path = proxy.path().to_owned();
        drop(proxy);
        assert!(!path.exists(), "socket file removed on drop");
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), again.read_to_end(&mut rest))
            .await
            .expect("connections end when the proxy is dropped");
        assert!(ended.is_err() || rest.is_empty());
        server.abort();
    }

    #[tokio::test]
    async fn outage_refuses_for_its_duration_then_serves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (upstream, server) = echo_server(dir.path()).await;
        let proxy = Arc::new(DockerProxy::to(upstream));
        let during = {
            let proxy = proxy.clone();
            tokio::spawn(async move { proxy.outage(Duration::from_millis(500)).await })
        };
        // Until the socket file is gone, this may still connect; once gone, it stays gone
        // until the outage ends.
        crate::wait_until("the socket file removed", Duration::from_secs(10), || {
            let gone = !proxy.path().exists();
            async move { gone.then_some(()) }
        })
        .await;
        assert!(UnixStream::connect(proxy.path()).await.is_err());
        during.await.expect("outage");
        let mut stream = UnixStream::connect(proxy.path()).await.expect("connect");
        assert_eq!(roundtrip(&mut stream, b"back").await, b"back");
        server.abort();
    }
}
