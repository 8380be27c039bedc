//! One task per route that drains the route's queue into its destination: connects (resolving
//! the name again on every connect), checks that a stream peer is still there before writing,
//! and reconnects with backoff. A message leaves the queue only once it was written.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Backoff;
use common::backoff::sleep_unless_cancelled;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::queue::RouteQueue;
use crate::route::Transport;

/// Largest batch written to a stream in one go.
const BATCH_BYTES: usize = 64 * 1024;
/// A UDP route looks its destination up again this often (the destination may move).
const UDP_RERESOLVE: Duration = Duration::from_secs(30);
/// A stream write that makes no progress for this long counts as a dead connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how one route sends.
#[derive(Clone)]
pub struct Sender {
    pub route_id: String,
    /// `host:port`; the host may be a DNS name.
    pub address: String,
    pub transport: Transport,
    pub tls: Option<TlsConnector>,
    pub queue: Arc<RouteQueue>,
    pub metrics: Metrics,
    pub backoff: Backoff,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("route_id", &self.route_id)
            .field("address", &self.address)
            .field("transport", &self.transport)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

enum Connection {
    Udp(UdpSocket, Instant),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Sender {
    /// Sends until `cancel` (route deleted) or until the queue is closed and drained.
    pub async fn run(self, cancel: CancellationToken) {
        let mut next = 0u64;
        let mut connection: Option<Connection> = None;
        let mut delays = self.backoff.delays();
        // The last connection was lost or the last attempt failed: the next attempt is a reconnect.
        let mut lost = false;
        loop {
            let batch = tokio::select! {
                _ = cancel.cancelled() => return,
                batch = self.queue.batch(next, BATCH_BYTES) => batch,
            };
            let Some((start, batch)) = batch else {
                tracing::debug!(route = %self.route_id, "queue drained, sender done");
                return;
            };
            if let Some(conn) = connection.as_mut() {
                match conn.usable() {
                    Usable::Yes => {}
                    Usable::Refresh => connection = None,
                    Usable::PeerClosed => {
                        tracing::info!(route = %self.route_id, address = %self.address, "destination closed the connection, reconnecting");
                        connection = None;
                        lost = true;
                    }
                }
            }
            let conn = match &mut connection {
                Some(conn) => conn,
                None => {
                    let attempt = tokio::select! {
                        _ = cancel.cancelled() => return,
                        attempt = self.connect() => attempt,
                    };
                    if lost {
                        self.metrics
                            .reconnects
                            .with_label_values(&[&self.route_id])
                            .inc();
                    }
                    match attempt {
                        Ok((conn, peer)) => {
                            tracing::info!(route = %self.route_id, address = %self.address, %peer, "connected");
                            lost = false;
                            delays = self.backoff.delays();
                            connection.insert(conn)
                        }
                        Err(e) => {
                            lost = true;
                            let delay = delays.next().unwrap_or(self.backoff.max_delay);
                            tracing::warn!(route = %self.route_id, address = %self.address, error = %e, retry_in = ?delay, "cannot connect, messages stay queued");
                            if !sleep_unless_cancelled(delay, &cancel).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let count = batch.len() as u64;
            match conn.send(&batch).await {
                Ok(undeliverable) => {
                    self.queue.ack(start + count);
                    next = start + count;
                    let sent = count - undeliverable as u64;
                    self.metrics
                        .lines_sent
                        .with_label_values(&[&self.route_id])
                        .inc_by(sent);
                    if undeliverable > 0 {
                        self.metrics
                            .lines_dropped
                            .with_label_values(&[&self.route_id])
                            .inc_by(undeliverable as u64);
                    }
                }
                Err(e) => {
                    tracing::warn!(route = %self.route_id, address = %self.address, error = %e, "write failed, reconnecting");
                    connection = None;
                    lost = true;
                    next = start;
                }
            }
        }
    }

    /// Connects to the first address the name resolves to that accepts; returns that address.
    async fn connect(&self) -> io::Result<(Connection, SocketAddr)> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&self.address).await?.collect();
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", self.address),
        );
        for addr in addrs {
            let attempt = match self.transport {
                Transport::Udp => connect_udp(addr).await,
                Transport::Tcp => TcpStream::connect(addr).await.map(|s| {
                    let _ = s.set_nodelay(true);
                    Connection::Tcp(s)
                }),
                Transport::Tls => self.connect_tls(addr).await,
            };
            match attempt {
                Ok(conn) => return Ok((conn, addr)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn connect_tls(&self, addr: SocketAddr) -> io::Result<Connection> {
        let connector = self
            .tls
            .clone()
            .ok_or_else(|| io::Error::other("TLS route without TLS configuration"))?;
        let host = self
            .address
            .rsplit_once(':')
            .map_or(self.address.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let tls = connector.connect(name, tcp).await?;
        Ok(Connection::Tls(Box::new(tls)))
    }
}

async fn connect_udp(addr: SocketAddr) -> io::Result<Connection> {
    let local: SocketAddr = if addr.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    Ok(Connection::Udp(socket, Instant::now()))
}

/// True when a read without waiting shows the peer closed (or reset) the connection. Data the
/// peer sent (syslog servers send none) is discarded.
fn peer_closed<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut scratch = [0u8; 512];
    loop {
        match stream.read(&mut scratch).now_or_never() {
            None => return false,
            Some(Ok(0)) | Some(Err(_)) => return true,
            Some(Ok(_)) => continue,
        }
    }
}

/// Whether a connection can take the next batch.
enum Usable {
    Yes,
    /// Time to look the destination up again (UDP).
    Refresh,
    PeerClosed,
}

impl Connection {
    fn usable(&mut self) -> Usable {
        let closed = match self {
            Self::Udp(_, since) if since.elapsed() >= UDP_RERESOLVE => return Usable::Refresh,
            Self::Udp(..) => false,
            Self::Tcp(stream) => peer_closed(stream),
            Self::Tls(stream) => peer_closed(stream.as_mut()),
        };
        if closed {
            Usable::PeerClosed
        } else {
            Usable::Yes
        }
    }

    /// Writes the batch. Returns how many messages UDP could not deliver (dropped).
    async fn send(&mut self, batch: &[Bytes]) -> io::Result<usize> {
        match self {
            Self::Udp(socket, _) => {
                let mut undeliverable = 0;
                for datagram in batch {
                    // A refused earlier datagram surfaces as an error on the next send; retry once.
                    if socket.send(datagram).await.is_err() && socket.send(datagram).await.is_err()
                    {
                        undeliverable += 1;
                    }
                }
                Ok(undeliverable)
            }
            Self::Tcp(stream) => write_batch(stream, batch).await.map(|()| 0),
            Self::Tls(stream) => write_batch(stream.as_mut(), batch).await.map(|()| 0),
        }
    }
}

async fn write_batch<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    batch: &[Bytes],
) -> io::Result<()> {
    let write = async {
        if let [single] = batch {
            stream.write_all(single).await?;
        } else {
            let mut buf = Vec::with_capacity(batch.iter().map(Bytes::len).sum());
            for message in batch {
                buf.extend_from_slice(message);
            }
            stream.write_all(&buf).await?;
        }
        stream.flush().await
    };
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
}
