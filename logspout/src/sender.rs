//! One task per route that drains the route's queue into its destination: connects (resolving
//! the name again on every connect), checks that a stream peer is still there before writing,
//! and reconnects with backoff. A message leaves the queue only once it was written.
//!
//! No outbound step waits forever: the name lookup and the TCP connect are bounded by
//! [`Timeouts::connect`], the TLS handshake by [`Timeouts::handshake`] and every batch write by
//! [`Timeouts::write`]; TCP connections use keepalive. A route whose attempts fail or time out is
//! *stalled*: one warning, a gauge (`logspout_route_stalled`) and a counter of stalls, debug
//! lines while it stays stalled, one info line once a batch is written again. A batch whose
//! write failed or timed out stays queued and is written again on the next connection (at
//! least once: at most that one batch twice per lost connection).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Backoff;
use common::backoff::sleep_unless_cancelled;
use futures_util::FutureExt;
use prometheus::{IntCounter, IntGauge};
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
/// Unanswered TCP keepalive probes after which the kernel drops the connection.
const KEEPALIVE_PROBES: u32 = 3;

/// How long each outbound step may take (`LOGSPOUT_CONNECT_TIMEOUT`,
/// `LOGSPOUT_TLS_HANDSHAKE_TIMEOUT`, `LOGSPOUT_WRITE_TIMEOUT`, `LOGSPOUT_TCP_KEEPALIVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Name lookup, and each TCP connect (per resolved address).
    pub connect: Duration,
    /// The TLS handshake after the TCP connect.
    pub handshake: Duration,
    /// Writing one batch (at most 64 KiB) to a TCP or TLS connection.
    pub write: Duration,
    /// Idle time before TCP keepalive probes start (then every third of it, at least 1 s, three
    /// probes); `None`: no keepalive.
    pub keepalive: Option<Duration>,
}

impl Timeouts {
    /// 10 s for connect, handshake and write; keepalive after 30 s idle.
    pub const DEFAULT: Self = Self {
        connect: Duration::from_secs(10),
        handshake: Duration::from_secs(10),
        write: Duration::from_secs(10),
        keepalive: Some(Duration::from_secs(30)),
    };
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::DEFAULT
    }
}

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
    /// Pause between failed attempts. Its cap bounds how long a recovered destination waits
    /// for the next attempt (see `Config::sender_backoff`).
    pub backoff: Backoff,
    pub timeouts: Timeouts,
    /// `RETRY_COUNT`: after the first failure and this many failed retries in a row, the
    /// route is reported at error level once (the original gave up and crashed there); it
    /// keeps retrying.
    pub retry_count: u32,
    /// UDP only: a queued message longer than this is several datagrams of this size (the
    /// last shorter), written in order: GELF chunks, queued as one message.
    pub datagram_chunks: Option<usize>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("route_id", &self.route_id)
            .field("address", &self.address)
            .field("transport", &self.transport)
            .field("tls", &self.tls.is_some())
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// A byte stream to a destination: TCP or TLS.
pub(crate) trait Stream: AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for S {}

enum Connection {
    Udp(UdpSocket, Instant),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Whether the route is stalled, and its reporting: one warning when it stalls, debug lines
/// while it stays stalled, one info line when a batch is written again.
pub(crate) struct Stall {
    since: Option<Instant>,
    failures: u64,
    gauge: IntGauge,
    count: IntCounter,
}

impl Stall {
    pub(crate) fn new(sender: &Sender) -> Self {
        let gauge = sender
            .metrics
            .route_stalled
            .with_label_values(&[&sender.route_id]);
        gauge.set(0);
        let count = sender
            .metrics
            .route_stalls
            .with_label_values(&[&sender.route_id]);
        Self {
            since: None,
            failures: 0,
            gauge,
            count,
        }
    }

    pub(crate) fn is_stalled(&self) -> bool {
        self.since.is_some()
    }

    /// An attempt failed (`what` says which); the next one comes in `retry_in`.
    pub(crate) fn failed(
        &mut self,
        sender: &Sender,
        what: &str,
        error: &io::Error,
        retry_in: Duration,
    ) {
        self.failures += 1;
        let retries_spent = self.failures == u64::from(sender.retry_count) + 1;
        if self.since.is_none() {
            self.since = Some(Instant::now());
            self.gauge.set(1);
            self.count.inc();
            tracing::warn!(route = %sender.route_id, address = %sender.address, error = %error, retry_in = ?retry_in,
                "{what}; route stalled, retrying (further failures at debug level until it recovers)");
        } else if !retries_spent {
            tracing::debug!(route = %sender.route_id, address = %sender.address, error = %error, retry_in = ?retry_in,
                failures = self.failures, "{what}; route still stalled");
        }
        if retries_spent {
            tracing::error!(route = %sender.route_id, address = %sender.address, error = %error, retry_in = ?retry_in,
                failures = self.failures, "{what}; route still failing after RETRY_COUNT={} retries, retrying (messages stay queued)", sender.retry_count);
        }
    }

    /// A batch was written on a connection made at `connected_at`; `caught_up`: nothing else
    /// is queued. True if that ended a stall: a peer that stopped reading takes writes until
    /// its buffers are full, so a stall ends only once the queue is drained or the connection
    /// has taken writes for longer than the write timeout.
    pub(crate) fn delivered(
        &mut self,
        sender: &Sender,
        connected_at: Instant,
        caught_up: bool,
    ) -> bool {
        if self.since.is_none() || !(caught_up || connected_at.elapsed() >= sender.timeouts.write) {
            return false;
        }
        let Some(since) = self.since.take() else {
            return false;
        };
        self.gauge.set(0);
        let after = since.elapsed();
        tracing::info!(route = %sender.route_id, address = %sender.address, failures = self.failures,
            "route recovered after {after:.1?}, shipping again");
        self.failures = 0;
        true
    }
}

impl Sender {
    /// Sends until `cancel` (route deleted) or until the queue is closed and drained.
    pub async fn run(self, cancel: CancellationToken) {
        let mut next = 0u64;
        let mut connection: Option<Connection> = None;
        let mut delays = self.backoff.delays();
        let mut stall = Stall::new(&self);
        let mut connected_at = Instant::now();
        // The last connection was lost or the last attempt failed: the next attempt is a reconnect.
        let mut lost = false;
        loop {
            let batch = tokio::select! {
                _ = cancel.cancelled() => return,
                batch = self.queue.batch(next, BATCH_BYTES) => batch,
            };
            // Messages the queue dropped while their write was under way, which then failed.
            let dropped_in_flight = self.queue.take_lost();
            if dropped_in_flight > 0 {
                self.metrics
                    .lines_dropped
                    .with_label_values(&[&self.route_id])
                    .inc_by(dropped_in_flight as u64);
            }
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
                            if stall.is_stalled() {
                                tracing::debug!(route = %self.route_id, address = %self.address, %peer, "connected");
                            } else {
                                tracing::info!(route = %self.route_id, address = %self.address, %peer, "connected");
                            }
                            lost = false;
                            connected_at = Instant::now();
                            connection = Some(conn);
                            // The batch may have lost messages to the queue bound while this
                            // connect took its time: take it afresh.
                            continue;
                        }
                        Err(e) => {
                            lost = true;
                            let delay = delays.next().unwrap_or(self.backoff.max_delay);
                            stall.failed(&self, "cannot connect, messages stay queued", &e, delay);
                            if !sleep_unless_cancelled(delay, &cancel).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let count = batch.len() as u64;
            if !self.queue.writing(start, batch.len()) {
                // Part of the batch was just dropped to make room (and counted): take it afresh.
                continue;
            }
            let sent = tokio::select! {
                _ = cancel.cancelled() => return,
                sent = conn.send(&batch, self.timeouts.write, self.datagram_chunks) => sent,
            };
            match sent {
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
                    if stall.delivered(&self, connected_at, self.queue.is_empty()) {
                        delays = self.backoff.delays();
                    }
                }
                Err(e) => {
                    connection = None;
                    lost = true;
                    // The batch stays queued and goes out again on the next connection.
                    next = start;
                    // A connection that broke is replaced at once; a route that keeps failing
                    // backs off.
                    let delay = if stall.is_stalled() {
                        delays.next().unwrap_or(self.backoff.max_delay)
                    } else {
                        Duration::ZERO
                    };
                    stall.failed(&self, "write failed, reconnecting", &e, delay);
                    if !delay.is_zero() && !sleep_unless_cancelled(delay, &cancel).await {
                        return;
                    }
                }
            }
        }
    }

    /// A TCP or TLS stream to the destination (for the RELP sender), as [`Self::connect`].
    pub(crate) async fn connect_stream(&self) -> io::Result<(Box<dyn Stream>, SocketAddr)> {
        match self.connect().await? {
            (Connection::Tcp(stream), peer) => Ok((Box::new(stream), peer)),
            (Connection::Tls(stream), peer) => Ok((stream, peer)),
            (Connection::Udp(..), _) => Err(io::Error::other("a UDP route has no stream")),
        }
    }

    /// Connects to the first address the name resolves to that accepts; returns that address.
    async fn connect(&self) -> io::Result<(Connection, SocketAddr)> {
        let limit = self.timeouts.connect;
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(limit, tokio::net::lookup_host(&self.address))
                .await
                .map_err(|_| {
                    timed_out(format!(
                        "looking up {} timed out after {limit:?}",
                        self.address
                    ))
                })??
                .collect();
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} resolves to no address", self.address),
        );
        for addr in addrs {
            let attempt = match self.transport {
                Transport::Udp => connect_udp(addr).await,
                Transport::Tcp => self.connect_tcp(addr).await.map(Connection::Tcp),
                Transport::Tls | Transport::RelpTls => self.connect_tls(addr).await,
                Transport::Relp => self.connect_tcp(addr).await.map(Connection::Tcp),
            };
            match attempt {
                Ok(conn) => return Ok((conn, addr)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A TCP connection to `addr` within the connect timeout, with `TCP_NODELAY` and keepalive.
    async fn connect_tcp(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let limit = self.timeouts.connect;
        let stream = tokio::time::timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out(format!("TCP connect to {addr} timed out after {limit:?}")))??;
        let _ = stream.set_nodelay(true);
        if let Some(idle) = self.timeouts.keepalive {
            let idle = idle.max(Duration::from_secs(1));
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval((idle / 3).max(Duration::from_secs(1)))
                .with_retries(KEEPALIVE_PROBES);
            if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
                tracing::debug!(route = %self.route_id, %addr, error = %e, "cannot enable TCP keepalive");
            }
        }
        Ok(stream)
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
        let started = Instant::now();
        let tcp = self.connect_tcp(addr).await?;
        let limit = self.timeouts.handshake;
        let mut tls = tokio::time::timeout(limit, connector.connect(name, tcp))
            .await
            .map_err(|_| {
                timed_out(format!(
                    "TLS handshake with {addr} timed out after {limit:?}"
                ))
            })??;
        if tls.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
            // In TLS 1.3 the server checks the client's certificate (or its lack) after the
            // client considers the handshake done: a refusal is an alert one round trip
            // later, and a batch written meanwhile would be lost. Wait for it about two more
            // connect-and-handshake times (at least 20 ms, at most the handshake timeout).
            let wait = (started.elapsed() * 2).clamp(Duration::from_millis(20), limit);
            let mut byte = [0u8; 1];
            match tokio::time::timeout(wait, tls.read(&mut byte)).await {
                Err(_) | Ok(Ok(1..)) => {}
                Ok(Ok(0)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "TLS destination closed the connection right after the handshake",
                    ));
                }
                Ok(Err(e)) => return Err(e),
            }
        }
        Ok(Connection::Tls(Box::new(tls)))
    }
}

pub(crate) fn timed_out(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, message)
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

    /// Writes the batch, a stream within `limit`. Returns how many messages UDP could not
    /// deliver (dropped). With `chunks`, a UDP message is written as datagrams of that size.
    async fn send(
        &mut self,
        batch: &[Bytes],
        limit: Duration,
        chunks: Option<usize>,
    ) -> io::Result<usize> {
        match self {
            Self::Udp(socket, _) => {
                let mut undeliverable = 0;
                for message in batch {
                    let size = chunks.unwrap_or(message.len()).max(1);
                    let mut failed = false;
                    for datagram in message.chunks(size) {
                        // A refused earlier datagram surfaces as an error on the next send;
                        // retry once.
                        if socket.send(datagram).await.is_err()
                            && socket.send(datagram).await.is_err()
                        {
                            failed = true;
                        }
                    }
                    undeliverable += usize::from(failed);
                }
                Ok(undeliverable)
            }
            Self::Tcp(stream) => write_batch(stream, batch, limit).await.map(|()| 0),
            Self::Tls(stream) => write_batch(stream.as_mut(), batch, limit).await.map(|()| 0),
        }
    }
}

async fn write_batch<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    batch: &[Bytes],
    limit: Duration,
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
    tokio::time::timeout(limit, write).await.map_err(|_| {
        timed_out(format!(
            "write timed out after {limit:?} (the destination stopped reading)"
        ))
    })?
}
