//! The forwarders (`-nameservers`): relaying client queries for names outside the domain, and
//! the internal lookups of external CNAME/SRV/MX targets. UDP first, TCP when the reply is
//! truncated; every exchange is bounded by `-rtimeout`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The forwarder list and how to use it.
#[derive(Debug, Clone)]
pub struct Upstream {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    rotate: bool,
    ndots: usize,
    ttl: u32,
}

impl Upstream {
    pub fn new(
        servers: Vec<SocketAddr>,
        timeout: Duration,
        rotate: bool,
        ndots: usize,
        ttl: u32,
    ) -> Self {
        Self {
            servers,
            timeout,
            rotate,
            ndots,
            ttl,
        }
    }

    /// True when a name has enough labels and there is somewhere to send it.
    pub fn can_resolve(&self, name: &Name) -> bool {
        !self.servers.is_empty() && usize::from(name.num_labels()) >= self.ndots
    }

    /// Relays a client query (its raw bytes) and returns the first usable reply. An upstream
    /// SERVFAIL is retried once on the same server; a network error moves to the next server.
    /// `None` when every attempt failed.
    pub async fn forward(&self, raw: &[u8], id: u16, tcp: bool) -> Option<Message> {
        let n = self.servers.len();
        if n == 0 {
            return None;
        }
        let start = if self.rotate { usize::from(id) % n } else { 0 };
        let mut retried_servfail = false;
        for attempt in 0..=n {
            let server = self.servers[(start + attempt) % n];
            match self.exchange(server, raw, id, tcp).await {
                Ok(reply)
                    if reply.metadata.response_code == ResponseCode::ServFail
                        && !retried_servfail =>
                {
                    retried_servfail = true;
                    match self.exchange(server, raw, id, tcp).await {
                        Ok(reply) => return Some(reply),
                        Err(error) => {
                            tracing::warn!(%server, %error, "forwarding failed");
                        }
                    }
                }
                Ok(reply) => return Some(reply),
                Err(error) => tracing::warn!(%server, %error, "forwarding failed"),
            }
        }
        None
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
        let mut reply = self.forward(&bytes, id, false).await?;
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
    let mut buf = vec![0u8; 65535];
    loop {
        let len = socket.recv(&mut buf).await?;
        // A reply with another ID is a stray (or spoofed) datagram: keep waiting.
        if let Ok(reply) = Message::from_vec(&buf[..len]) {
            if reply.metadata.id == id {
                return Ok(reply);
            }
        }
    }
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
