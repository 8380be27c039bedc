//! DNS for tests: a client that sends real queries over UDP and TCP (hickory-proto for the wire
//! format), and a fake upstream server on loopback for forwarding tests — tests never forward to
//! the machine's own resolver.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use crate::process::bind_udp_tcp;

/// Sends queries to one server.
#[derive(Debug, Clone)]
pub struct DnsClient {
    server: SocketAddr,
    timeout: Duration,
}

impl DnsClient {
    /// A client for `server` with a 3 s timeout per exchange.
    pub fn new(server: SocketAddr) -> Self {
        Self {
            server,
            timeout: Duration::from_secs(3),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A standard query (class IN, RD=1, no EDNS) with a random ID.
    pub fn query_message(name: &str, record_type: RecordType) -> Message {
        let name =
            Name::from_ascii(name).unwrap_or_else(|e| panic!("bad query name {name:?}: {e}"));
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(name, record_type));
        message
    }

    /// Queries over UDP.
    pub async fn udp(&self, name: &str, record_type: RecordType) -> io::Result<Message> {
        self.udp_message(&Self::query_message(name, record_type))
            .await
    }

    /// Queries over TCP.
    pub async fn tcp(&self, name: &str, record_type: RecordType) -> io::Result<Message> {
        self.tcp_message(&Self::query_message(name, record_type))
            .await
    }

    /// Sends a prepared message over UDP and checks the reply's ID.
    pub async fn udp_message(&self, query: &Message) -> io::Result<Message> {
        let reply = self
            .udp_raw(&query.to_vec().map_err(io::Error::other)?)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "no UDP reply"))?;
        decode_reply(query, &reply)
    }

    /// Sends a prepared message over TCP and checks the reply's ID.
    pub async fn tcp_message(&self, query: &Message) -> io::Result<Message> {
        let reply = self
            .tcp_raw(&query.to_vec().map_err(io::Error::other)?)
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "no TCP reply"))?;
        decode_reply(query, &reply)
    }

    /// Sends any bytes as one datagram; `None` if nothing comes back within the timeout.
    pub async fn udp_raw(&self, packet: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(self.server).await?;
        socket.send(packet).await?;
        let mut buf = vec![0u8; 65535];
        match tokio::time::timeout(self.timeout, socket.recv(&mut buf)).await {
            Ok(received) => {
                buf.truncate(received?);
                Ok(Some(buf))
            }
            Err(_) => Ok(None),
        }
    }

    /// Sends any bytes as one length-prefixed TCP message; `None` if the server closes the
    /// connection or says nothing within the timeout.
    pub async fn tcp_raw(&self, packet: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let exchange = async {
            let mut stream = TcpStream::connect(self.server).await?;
            let len = u16::try_from(packet.len()).map_err(io::Error::other)?;
            stream.write_all(&len.to_be_bytes()).await?;
            stream.write_all(packet).await?;
            let mut len = [0u8; 2];
            if stream.read_exact(&mut len).await.is_err() {
                return Ok(None);
            }
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut reply).await?;
            Ok(Some(reply))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Ok(None))
    }
}

fn decode_reply(query: &Message, reply: &[u8]) -> io::Result<Message> {
    let message = Message::from_vec(reply).map_err(io::Error::other)?;
    if message.metadata.id != query.metadata.id {
        return Err(io::Error::other(format!(
            "reply ID {} does not match query ID {}",
            message.metadata.id, query.metadata.id
        )));
    }
    Ok(message)
}

/// How a query reached the fake upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug)]
struct UpstreamState {
    records: HashMap<(String, RecordType), Vec<Record>>,
    default_rcode: ResponseCode,
    truncate_udp: bool,
    seen: Vec<(String, RecordType, Transport)>,
    seen_ids: Vec<u16>,
}

/// A DNS server on 127.0.0.1 (UDP and TCP, same port) that answers from a table and with
/// REFUSED (or a chosen rcode) for everything else. It records every query it sees.
#[derive(Debug)]
pub struct FakeUpstream {
    addr: SocketAddr,
    state: Arc<Mutex<UpstreamState>>,
    tasks: JoinSet<()>,
}

impl FakeUpstream {
    /// Starts the server on a free loopback port.
    pub async fn start() -> Self {
        let (udp, tcp) = bind_udp_tcp().await;
        let addr = udp
            .local_addr()
            .expect("local address of the fake upstream");
        let state = Arc::new(Mutex::new(UpstreamState {
            records: HashMap::new(),
            default_rcode: ResponseCode::Refused,
            truncate_udp: false,
            seen: Vec::new(),
            seen_ids: Vec::new(),
        }));
        let mut tasks = JoinSet::new();
        tasks.spawn(serve_udp(udp, state.clone()));
        tasks.spawn(serve_tcp(tcp, state.clone()));
        Self { addr, state, tasks }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut UpstreamState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    /// Answers `name A` with `ip`.
    pub fn add_a(&self, name: &str, ip: Ipv4Addr, ttl: u32) {
        let owner = Name::from_ascii(name).unwrap_or_else(|e| panic!("bad name {name:?}: {e}"));
        self.add_record(Record::from_rdata(owner, ttl, RData::A(A(ip))));
    }

    /// Adds a record to the answers for its name and type.
    pub fn add_record(&self, record: Record) {
        let key = (normalise(&record.name), record.record_type());
        self.with_state(|s| s.records.entry(key).or_default().push(record));
    }

    /// The rcode for names not in the table (REFUSED unless changed).
    pub fn set_default_rcode(&self, rcode: ResponseCode) {
        self.with_state(|s| s.default_rcode = rcode);
    }

    /// Answer UDP queries with an empty, truncated (TC) reply, so clients must retry over TCP.
    pub fn set_truncate_udp(&self, truncate: bool) {
        self.with_state(|s| s.truncate_udp = truncate);
    }

    /// Every query seen so far: (lower-case name with trailing dot, type, transport).
    pub fn queries(&self) -> Vec<(String, RecordType, Transport)> {
        self.with_state(|s| s.seen.clone())
    }

    /// The message ID of every query seen so far, in the order of [`queries`](Self::queries).
    pub fn query_ids(&self) -> Vec<u16> {
        self.with_state(|s| s.seen_ids.clone())
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

fn normalise(name: &Name) -> String {
    let mut text = name.to_ascii().to_ascii_lowercase();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

fn answer(state: &Mutex<UpstreamState>, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.message_type = MessageType::Response;
    reply.add_queries(query.queries.iter().cloned());
    let question = query.queries.first()?;
    let key = (normalise(&question.name), question.query_type);
    state.seen.push((key.0.clone(), key.1, transport));
    state.seen_ids.push(query.metadata.id);
    if transport == Transport::Udp && state.truncate_udp {
        reply.metadata.truncation = true;
    } else if let Some(records) = state.records.get(&key) {
        reply.add_answers(records.iter().cloned());
    } else {
        reply.metadata.response_code = state.default_rcode;
    }
    reply.to_vec().ok()
}

async fn serve_udp(socket: UdpSocket, state: Arc<Mutex<UpstreamState>>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = answer(&state, &buf[..len], Transport::Udp) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, state: Arc<Mutex<UpstreamState>>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let state = state.clone();
        connections.spawn(async move {
            loop {
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if stream.read_exact(&mut packet).await.is_err() {
                    return;
                }
                let Some(reply) = answer(&state, &packet, Transport::Tcp) else {
                    return;
                };
                let Ok(reply_len) = u16::try_from(reply.len()) else {
                    return;
                };
                if stream.write_all(&reply_len.to_be_bytes()).await.is_err()
                    || stream.write_all(&reply).await.is_err()
                {
                    return;
                }
            }
        });
    }
}

/// The ports of the SRV records in a reply's answer section.
pub fn srv_ports(reply: &Message) -> std::collections::BTreeSet<u16> {
    srv_ports_in_order(reply).into_iter().collect()
}

/// The ports of the SRV records in a reply's answer section, in answer order.
pub fn srv_ports_in_order(reply: &Message) -> Vec<u16> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.port),
            _ => None,
        })
        .collect()
}

/// The IPv4 addresses of the A records in a reply's answer section, in answer order.
pub fn a_addrs(reply: &Message) -> Vec<std::net::Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}
