//! A syslog receiver on 127.0.0.1 (UDP and TCP on one port) that keeps the exact bytes of every
//! message and its fields as parsed by `syslog_loose`. TCP accepts both RFC 6587 framings:
//! octet counting (`<len> <msg>`) and newline-terminated.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syslog_loose::{Variant, parse_message};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::dns::Transport;
use crate::process::{bind_udp_tcp, bind_udp_tcp_on};
use crate::wait::wait_until;

/// Longest TCP frame the receiver accepts before dropping the connection.
const MAX_FRAME: usize = 1 << 20;

/// How a message was delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One UDP datagram.
    Datagram,
    /// RFC 6587 octet counting: `<len> <msg>`.
    OctetCounted,
    /// RFC 6587 non-transparent framing: the message ends at `\n`.
    NewlineTerminated,
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogMessage {
    pub transport: Transport,
    pub framing: Framing,
    /// The message's bytes without the framing.
    pub raw: Vec<u8>,
    /// `Some(1)` for RFC 5424, `None` for RFC 3164.
    pub version: Option<u32>,
    pub facility: Option<String>,
    pub severity: Option<String>,
    /// RFC 3339.
    pub timestamp: Option<String>,
    pub hostname: Option<String>,
    pub appname: Option<String>,
    pub procid: Option<String>,
    pub msgid: Option<String>,
    /// `(SD-ID, [(name, value)])` per element.
    pub structured_data: Vec<(String, Vec<(String, String)>)>,
    pub msg: String,
}

impl SyslogMessage {
    /// Parses one message (framing already removed) with `syslog_loose`.
    pub fn parse(raw: &[u8], transport: Transport, framing: Framing) -> Self {
        let text = String::from_utf8_lossy(raw);
        let parsed = parse_message(&text, Variant::Either);
        let own = |s: Option<&str>| s.map(str::to_owned);
        Self {
            transport,
            framing,
            raw: raw.to_vec(),
            version: match parsed.protocol {
                syslog_loose::Protocol::RFC5424(v) => Some(v),
                syslog_loose::Protocol::RFC3164 => None,
            },
            facility: parsed.facility.map(|f| f.as_str().to_owned()),
            severity: parsed.severity.map(|s| s.as_str().to_owned()),
            timestamp: parsed.timestamp.map(|t| t.to_rfc3339()),
            hostname: own(parsed.hostname),
            appname: own(parsed.appname),
            procid: parsed.procid.map(|p| p.to_string()),
            msgid: own(parsed.msgid),
            structured_data: parsed
                .structured_data
                .iter()
                .map(|e| {
                    let params = e
                        .params
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect();
                    (e.id.to_owned(), params)
                })
                .collect(),
            msg: parsed.msg.to_owned(),
        }
    }

    /// The raw bytes as text (lossy).
    pub fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

#[derive(Debug, Default)]
struct Inbox {
    messages: Mutex<Vec<SyslogMessage>>,
    arrived: Notify,
}

impl Inbox {
    fn push(&self, message: SyslogMessage) {
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
        self.arrived.notify_waiters();
    }
}

/// Listens for syslog on UDP and TCP, same port on 127.0.0.1; stops when dropped.
#[derive(Debug)]
pub struct SyslogReceiver {
    port: u16,
    inbox: Arc<Inbox>,
    tasks: JoinSet<()>,
}

impl SyslogReceiver {
    /// Starts listening on a free port.
    pub async fn start() -> Self {
        let (udp, tcp) = bind_udp_tcp().await;
        let mut receiver = Self {
            port: udp.local_addr().expect("local address").port(),
            inbox: Arc::new(Inbox::default()),
            tasks: JoinSet::new(),
        };
        receiver.serve(udp, tcp);
        receiver
    }

    fn serve(&mut self, udp: UdpSocket, tcp: TcpListener) {
        self.tasks.spawn(serve_udp(udp, self.inbox.clone()));
        self.tasks.spawn(serve_tcp(tcp, self.inbox.clone()));
    }

    /// The port, for `syslog://127.0.0.1:<port>`.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Closes both sockets and every connection (a destination going down). Messages received
    /// so far are kept.
    pub async fn stop(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Listens again on the same port (a destination coming back).
    pub async fn resume(&mut self) {
        let port = self.port;
        let (udp, tcp) = wait_until(
            &format!("port {port} to be free again"),
            Duration::from_secs(10),
            || bind_udp_tcp_on(port),
        )
        .await;
        self.serve(udp, tcp);
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<SyslogMessage> {
        self.inbox
            .messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until at least `count` messages arrived, and returns all of them.
    pub async fn wait_for_count(&self, count: usize, timeout: Duration) -> Vec<SyslogMessage> {
        self.wait_for_all(&format!("{count} syslog messages"), timeout, |all| {
            all.len() >= count
        })
        .await
    }

    /// Waits for a message whose `msg` contains `needle`, and returns it.
    pub async fn wait_for_msg(&self, needle: &str, timeout: Duration) -> SyslogMessage {
        let all = self
            .wait_for_all(
                &format!("a syslog message containing {needle:?}"),
                timeout,
                |all| all.iter().any(|m| m.msg.contains(needle)),
            )
            .await;
        all.into_iter()
            .find(|m| m.msg.contains(needle))
            .unwrap_or_else(|| unreachable!("checked by the wait condition"))
    }

    async fn wait_for_all(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[SyslogMessage]) -> bool,
    ) -> Vec<SyslogMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.inbox.arrived.notified();
            let all = self.messages();
            if done(&all) {
                return all;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let all = self.messages();
                if done(&all) {
                    return all;
                }
                panic!(
                    "timed out after {timeout:?} waiting for {what}; received {}: {:#?}",
                    all.len(),
                    all.iter().map(SyslogMessage::raw_text).collect::<Vec<_>>()
                );
            }
        }
    }
}

impl Drop for SyslogReceiver {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn serve_udp(socket: UdpSocket, inbox: Arc<Inbox>) {
    let mut buf = vec![0u8; 65535];
    loop {
        match socket.recv(&mut buf).await {
            Ok(len) => inbox.push(SyslogMessage::parse(
                &buf[..len],
                Transport::Udp,
                Framing::Datagram,
            )),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_tcp(listener: TcpListener, inbox: Arc<Inbox>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(read_frames(stream, inbox.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Reads RFC 6587 frames until the peer closes or sends a frame over [`MAX_FRAME`].
async fn read_frames(mut stream: TcpStream, inbox: Arc<Inbox>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some((frame, framing, consumed)) = next_frame(&buf) {
            inbox.push(SyslogMessage::parse(frame, Transport::Tcp, framing));
            buf.drain(..consumed);
        }
        if buf.len() > MAX_FRAME {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                // A last newline-framed message may lack its terminator.
                if !buf.is_empty() && framing_of(&buf) != Some(Framing::OctetCounted) {
                    inbox.push(SyslogMessage::parse(
                        &buf,
                        Transport::Tcp,
                        Framing::NewlineTerminated,
                    ));
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// How the frame at the start of `buf` is delimited: octet counting is `<digits> <` (a length,
/// a space, then a syslog message, which starts with `<`); anything else ends at a newline, so
/// raw lines that start with a digit are read whole. `None` while too little has arrived to say.
fn framing_of(buf: &[u8]) -> Option<Framing> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 9 {
        return Some(Framing::NewlineTerminated);
    }
    match (buf.get(digits), buf.get(digits + 1)) {
        (Some(b' '), Some(b'<')) => Some(Framing::OctetCounted),
        (None, _) | (Some(b' '), None) => None,
        _ => Some(Framing::NewlineTerminated),
    }
}

/// The next complete frame in `buf`: (message, framing, bytes consumed); `None` until one has
/// fully arrived. Also used by the `syslog-sink` binary.
pub fn next_frame(buf: &[u8]) -> Option<(&[u8], Framing, usize)> {
    match framing_of(buf)? {
        Framing::OctetCounted => {
            let space = buf.iter().position(|&b| b == b' ')?;
            let len: usize = std::str::from_utf8(&buf[..space]).ok()?.parse().ok()?;
            let end = space + 1 + len;
            (buf.len() >= end).then(|| (&buf[space + 1..end], Framing::OctetCounted, end))
        }
        _ => {
            let newline = buf.iter().position(|&b| b == b'\n')?;
            Some((&buf[..newline], Framing::NewlineTerminated, newline + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_by_either_framing() {
        let buf = b"5 <1>ab<2>cd\n7 <3>efg";
        let (frame, framing, used) = next_frame(buf).unwrap();
        assert_eq!(
            (frame, framing, used),
            (&b"<1>ab"[..], Framing::OctetCounted, 7)
        );
        let (frame, framing, used) = next_frame(&buf[7..]).unwrap();
        assert_eq!(
            (frame, framing, used),
            (&b"<2>cd"[..], Framing::NewlineTerminated, 6)
        );
        assert!(
            next_frame(&buf[13..]).is_none(),
            "incomplete octet-counted frame"
        );
        assert!(next_frame(b"12").is_none());
        assert!(next_frame(b"12 ").is_none());
        assert!(next_frame(b"").is_none());
        let raw = b"42 is the answer\n";
        let (frame, framing, used) = next_frame(raw).unwrap();
        assert_eq!(
            (frame, framing, used),
            (&raw[..16], Framing::NewlineTerminated, 17)
        );
        let (frame, framing, _) = next_frame(b"2024-01-01 starts with a date\n").unwrap();
        assert_eq!(
            (frame, framing),
            (
                &b"2024-01-01 starts with a date"[..],
                Framing::NewlineTerminated
            )
        );
    }
}
