//! A network partition between a component and one etcd member: a TCP proxy on a free loopback
//! port in front of the member's client port that forwards byte for byte, and that a test can
//! cut — every open connection closed at once and new ones refused, as a host whose link to the
//! member went down and whose kernel answers with resets — and restore on the same port. One
//! proxy per member and per host lets a test cut one host from one member, or from all of them,
//! while the others keep their connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Pause after a failed `accept`, so the loop never spins.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug)]
enum Control {
    Cut(std::sync::mpsc::SyncSender<()>),
    Restore(std::sync::mpsc::SyncSender<std::io::Result<()>>),
}

/// A TCP proxy `127.0.0.1:<port>` → `upstream`; listening until [`cut`](Self::cut), stopped
/// when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    control: Option<mpsc::UnboundedSender<Control>>,
    thread: Option<std::thread::JoinHandle<()>>,
    accepted: Arc<AtomicU64>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream` on a free port of 127.0.0.1, listening at once.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind a free loopback port for the TCP proxy");
        let addr = listener.local_addr().expect("the proxy's local address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking proxy listener");
        let accepted = Arc::new(AtomicU64::new(0));
        let (control, requests) = mpsc::unbounded_channel();
        let thread = {
            let accepted = accepted.clone();
            std::thread::Builder::new()
                .name(format!("tcp-proxy-{}", addr.port()))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime for the TCP proxy");
                    runtime.block_on(async move {
                        let listener =
                            TcpListener::from_std(listener).expect("a tokio proxy listener");
                        serve(addr, Some(listener), upstream, requests, accepted).await;
                    });
                })
                .expect("spawn the TCP proxy thread")
        };
        Self {
            addr,
            control: Some(control),
            thread: Some(thread),
            accepted,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The link goes down: stops listening (connecting is refused) and closes every open
    /// connection. Returns once done. Idempotent.
    pub fn cut(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.send(Control::Cut(done));
        wait.recv().expect("the TCP proxy answered");
    }

    /// The link is back: listens again on the same port. Idempotent.
    pub fn restore(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.send(Control::Restore(done));
        wait.recv()
            .expect("the TCP proxy answered")
            .unwrap_or_else(|e| panic!("the TCP proxy cannot listen again on {}: {e}", self.addr));
    }

    fn send(&self, request: Control) {
        self.control
            .as_ref()
            .expect("the TCP proxy is running")
            .send(request)
            .unwrap_or_else(|_| panic!("the TCP proxy thread stopped"));
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.control.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    addr: SocketAddr,
    mut listener: Option<TcpListener>,
    upstream: SocketAddr,
    mut requests: mpsc::UnboundedReceiver<Control>,
    accepted: Arc<AtomicU64>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                None => break,
                Some(Control::Cut(done)) => {
                    listener = None;
                    connections.abort_all();
                    while connections.join_next().await.is_some() {}
                    let _ = done.send(());
                }
                Some(Control::Restore(done)) => {
                    let result = match listener {
                        Some(_) => Ok(()),
                        None => rebind(addr).await.map(|l| listener = Some(l)),
                    };
                    let _ = done.send(result);
                }
            },
            client = accept(listener.as_ref()) => match client {
                Ok(client) => {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(forward(client, upstream));
                }
                Err(_) => tokio::time::sleep(ACCEPT_ERROR_PAUSE).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// Binds the same port again; a port in TIME_WAIT can take a moment, so this retries for 5 s.
async fn rebind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("rebind failed")))
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(upstream).await {
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn forwards_cuts_refuses_and_listens_again_on_the_same_port() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let upstream_addr = upstream.local_addr().expect("echo address");
        let echo = tokio::spawn(async move {
            let mut echoes = JoinSet::new();
            while let Ok((mut stream, _)) = upstream.accept().await {
                echoes.spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let proxy = TcpProxy::start(upstream_addr);
        let mut open = TcpStream::connect(proxy.addr()).await.expect("connect");
        open.write_all(b"ping").await.expect("write");
        let mut back = [0; 4];
        open.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"ping");

        proxy.cut();
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(Duration::from_secs(10), open.read_to_end(&mut rest))
            .await
            .expect("the cut connection ends");
        assert!(ended.is_err() || rest.is_empty());
        assert!(TcpStream::connect(proxy.addr()).await.is_err(), "refused");

        proxy.restore();
        let mut again = TcpStream::connect(proxy.addr()).await.expect("reconnect");
        again.write_all(b"back").await.expect("write");
        again.read_exact(&mut back).await.expect("read");
        assert_eq!(&back, b"back");
        assert_eq!(proxy.accepted(), 2);
        echo.abort();
    }
}
