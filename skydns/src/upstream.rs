//! The forwarders (`-nameservers`): relaying client queries for names outside the domain, and
//! the internal lookups of external CNAME/SRV/MX targets. UDP first, TCP when the reply is
//! truncated (or larger than the 4 KiB we receive); every exchange is bounded by `-rtimeout`,
//! and at most `-forward-max-inflight` forwards run at once: beyond that a forward fails at
//! once (counted) instead of holding a socket and a buffer. Failures are logged rate-limited.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use prometheus::IntCounter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use common::ratelimit::{RateLimitedLog, Report};

/// The largest UDP reply taken from a forwarder: the most skydns advertises to its clients,
/// so a larger one could not be relayed whole anyway. A datagram that fills the buffer is
/// taken as truncated and asked again over TCP.
pub const MAX_UDP_REPLY: usize = 4096;

/// What every forward of one server shares: the bound on forwards in flight, the count of
/// those refused beyond it, and the rate-limited logs of failures and refusals.
#[derive(Debug)]
pub struct ForwardPool {
    slots: Semaphore,
    max_inflight: usize,
    refused: IntCounter,
    failures: RateLimitedLog,
    refusals: RateLimitedLog,
}

impl ForwardPool {
    /// A pool of `max_inflight` forwards; refusals are counted in `refused`.
    pub fn new(max_inflight: usize, refused: IntCounter) -> Arc<Self> {
        Arc::new(Self {
            slots: Semaphore::new(max_inflight),
            max_inflight,
            refused,
            failures: RateLimitedLog::default(),
            refusals: RateLimitedLog::default(),
        })
    }

    /// Forwards running now.
    pub fn in_flight(&self) -> usize {
        self.max_inflight - self.slots.available_permits()
    }

    fn report_failure(&self, server: SocketAddr, error: &io::Error) {
        match self.failures.event(Instant::now()) {
            Report::First => tracing::warn!(%server, %error, "forwarding failed"),
            Report::Summary { count, over } => tracing::warn!(
                last_server = %server,
                last_error = %error,
                "{count} forwards failed in the last {}s",
                over.as_secs()
            ),
            Report::Quiet => {}
        }
    }

    fn report_refusal(&self) {
        self.refused.inc();
        let limit = self.max_inflight;
        match self.refusals.event(Instant::now()) {
            Report::First => tracing::warn!(
                limit,
                "forwarding limit reached (-forward-max-inflight): answering SERVFAIL"
            ),
            Report::Summary { count, over } => tracing::warn!(
                limit,
                "{count} forwards refused at the limit in the last {}s",
                over.as_secs()
            ),
            Report::Quiet => {}
        }
    }
}

/// Why a forward produced no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardError {
    /// No forwarder is configured.
    NoServers,
    /// `-forward-max-inflight` forwards are already running.
    Busy,
    /// Every attempt failed (timeout, network error, unusable reply).
    Failed,
}

/// The forwarder list and how to use it.
#[derive(Debug, Clone)]
pub struct Upstream {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    rotate: bool,
    ndots: usize,
    ttl: u32,
    pool: Arc<ForwardPool>,
}

impl Upstream {
    pub fn new(
        servers: Vec<SocketAddr>,
        timeout: Duration,
        rotate: bool,
        ndots: usize,
        ttl: u32,
        pool: Arc<ForwardPool>,
    ) -> Self {
        Self {
            servers,
            timeout,
            rotate,
            ndots,
            ttl,
            pool,
        }
    }

    /// The same settings and pool (so the same bound) with other servers, rotated, for any
    /// name: a stub zone's servers.
    pub fn with_servers(&self, servers: Vec<SocketAddr>) -> Self {
        Self {
            servers,
            rotate: true,
            ndots: 0,
            ..self.clone()
        }
    }

    /// The shared bound and counters.
    pub fn pool(&self) -> &ForwardPool {
        &self.pool
    }

    /// True when a name has enough labels and there is somewhere to send it.
    pub fn can_resolve(&self, name: &Name) -> bool {
        !self.servers.is_empty() && usize::from(name.num_labels()) >= self.ndots
    }

    /// Relays a client query (its raw bytes) and returns the first usable reply. An upstream
    /// SERVFAIL is retried once on the same server; a network error moves to the next server.
    /// Fails at once when `-forward-max-inflight` forwards are running; a failure of every
    /// attempt is logged (rate-limited) with the last error.
    pub async fn forward(&self, raw: &[u8], id: u16, tcp: bool) -> Result<Message, ForwardError> {
        let n = self.servers.len();
        if n == 0 {
            return Err(ForwardError::NoServers);
        }
        let Ok(_slot) = self.pool.slots.try_acquire() else {
            self.pool.report_refusal();
            return Err(ForwardError::Busy);
        };
        let start = if self.rotate { usize::from(id) % n } else { 0 };
        let mut retried_servfail = false;
        let mut last_error = None;
        for attempt in 0..=n {
            let server = self.servers[(start + attempt) % n];
            match self.exchange(server, raw, id, tcp).await {
                Ok(reply)
                    if reply.metadata.response_code == ResponseCode::ServFail
                        && !retried_servfail =>
                {
                    retried_servfail = true;
                    match self.exchange(server, raw, id, tcp).await {
                        Ok(reply) => return Ok(reply),
                        Err(error) => last_error = Some((server, error)),
                    }
                }
                Ok(reply) => return Ok(reply),
                Err(error) => last_error = Some((server, error)),
            }
        }
        if let Some((server, error)) = last_error {
            self.pool.report_failure(server, &error);
        }
        Err(ForwardError::Failed)
    }

    /// Looks up `name`/`record_type` for an authoritative answer (an external CNAME or SRV
    /// target). Only a NOERROR reply counts; its records get the configured TTL.
    pub async fn lookup(&self, name: &Name, record_type: RecordType) -> Option<Message> {
        if !self.can_resolve(name) {
            return None;
        }
        let mut query = Message::query();
        let id: u16 = rand::random();
        query.metadata.id = id;
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name.clone(), record_type));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        query.set_edns(edns);
        let bytes = query.to_vec().ok()?;
        let mut reply = self.forward(&bytes, id, false).await.ok()?;
        if reply.metadata.response_code != ResponseCode::NoError {
            return None;
        }
        for record in reply.answers.iter_mut().chain(reply.additionals.iter_mut()) {
            record.ttl = self.ttl;
        }
        Some(reply)
    }

    async fn exchange(
        &self,
        server: SocketAddr,
        raw: &[u8],
        id: u16,
        tcp: bool,
    ) -> io::Result<Message> {
        if !tcp {
            let reply = tokio::time::timeout(self.timeout, exchange_udp(server, raw, id))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no UDP reply in time"))??;
            if !reply.metadata.truncation {
                return Ok(reply);
            }
        }
        tokio::time::timeout(self.timeout, exchange_tcp(server, raw, id))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TCP reply in time"))?
    }
}

async fn exchange_udp(server: SocketAddr, raw: &[u8], id: u16) -> io::Result<Message> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(raw).await?;
    // One byte more than the largest reply taken: a datagram that fills it was cut.
    let mut buf = vec![0u8; MAX_UDP_REPLY + 1];
    loop {
        let len = socket.recv(&mut buf).await?;
        if len > MAX_UDP_REPLY {
            return Ok(truncated(id));
        }
        // A reply with another ID is a stray (or spoofed) datagram: keep waiting.
        if let Ok(reply) = Message::from_vec(&buf[..len]) {
            if reply.metadata.id == id {
                return Ok(reply);
            }
        }
    }
}

/// Stands for a UDP reply too large to take: it makes the exchange go over TCP.
fn truncated(id: u16) -> Message {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.truncation = true;
    message
}

async fn exchange_tcp(server: SocketAddr, raw: &[u8], id: u16) -> io::Result<Message> {
    let mut stream = TcpStream::connect(server).await?;
    let len = u16::try_from(raw.len()).map_err(io::Error::other)?;
    let mut framed = Vec::with_capacity(raw.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(raw);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    let reply = Message::from_vec(&reply).map_err(io::Error::other)?;
    if reply.metadata.id != id {
        return Err(io::Error::other("TCP reply with a different ID"));
    }
    Ok(reply)
}
