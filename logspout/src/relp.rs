//! `relp://` and `relp+tls://` routes: syslog lines over RELP (rsyslog's Reliable Event Logging
//! Protocol), each acknowledged by the receiver before it leaves the route's queue.
//!
//! Frames are `TXNR SP COMMAND SP DATALEN [SP DATA] LF`. A session opens with `1 open`, sends
//! each message as `N syslog`, and the server answers every command with `N rsp` (`200 OK` or
//! an error). Up to [`WINDOW`] messages are unacknowledged at a time. When the connection
//! breaks, times out, the server sends `serverclose`, a non-200 `rsp`, or a frame that is
//! malformed or larger than [`MAX_FRAME`], the connection is dropped and every message not yet
//! acknowledged is sent again on the next session (as rsyslog's `omrelp` does). So a receiver
//! restart or a cut connection loses nothing and, where the acknowledgement was read, doubles
//! nothing; a message the receiver took but whose `rsp` never arrived is sent twice.

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use common::backoff::sleep_unless_cancelled;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::sender::{Sender, Stall, Stream, timed_out};

/// Messages sent and not yet acknowledged, at most.
pub const WINDOW: usize = 128;
/// Largest frame accepted from the server (its header and data).
pub const MAX_FRAME: usize = 64 * 1024;
/// Largest transaction number; the next one is 1.
pub const MAX_TXNR: u64 = 999_999_999;
/// Bytes written to the connection in one go, at most (about).
const WRITE_BYTES: usize = 64 * 1024;

/// Why a frame from the server is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("RELP frame: {0}")]
    Malformed(&'static str),
    #[error("RELP frame: DATALEN {0} is larger than {MAX_FRAME} bytes")]
    TooLarge(u64),
}

/// One RELP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub txnr: u64,
    pub command: String,
    pub data: Vec<u8>,
}

impl Frame {
    /// For a `rsp` frame: its status code (the first three digits of its data).
    pub fn status(&self) -> Option<u16> {
        let code = self.data.get(..3)?;
        if !code.iter().all(u8::is_ascii_digit)
            || self.data.get(3).is_some_and(|b| *b != b' ' && *b != b'\n')
        {
            return None;
        }
        std::str::from_utf8(code).ok()?.parse().ok()
    }
}

/// Appends the frame `txnr command datalen [data]` and its LF to `out`.
pub fn encode(txnr: u64, command: &str, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("{txnr} {command} {}", data.len()).as_bytes());
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
}

/// The transaction number after `txnr`.
pub fn next_txnr(txnr: u64) -> u64 {
    if txnr >= MAX_TXNR { 1 } else { txnr + 1 }
}

/// Reads a decimal field of at most `max_digits` digits ended by a space or LF, from `at`.
/// `Ok(None)`: more bytes needed. Returns the value and the index of its terminator.
fn number(
    buf: &[u8],
    at: usize,
    max_digits: usize,
    what: &'static str,
) -> Result<Option<(u64, usize)>, FrameError> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().enumerate().skip(at) {
        if b == b' ' || b == b'\n' {
            if i == at {
                return Err(FrameError::Malformed(what));
            }
            return Ok(Some((value, i)));
        }
        if !b.is_ascii_digit() || i - at >= max_digits {
            return Err(FrameError::Malformed(what));
        }
        value = value * 10 + u64::from(b - b'0');
    }
    Ok(None)
}

/// Parses one frame from the start of `buf`: `Ok(None)` if it is not complete yet, else the
/// frame and the bytes it took. Hostile input is an error, never a panic or a large allocation.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some((txnr, sp)) = number(buf, 0, 9, "bad TXNR")? else {
        return Ok(None);
    };
    if buf[sp] != b' ' {
        return Err(FrameError::Malformed("no command"));
    }
    let start = sp + 1;
    let mut end = start;
    loop {
        match buf.get(end) {
            None if end - start > 32 => return Err(FrameError::Malformed("command too long")),
            None => return Ok(None),
            Some(b' ') if end > start => break,
            Some(b) if b.is_ascii_alphabetic() && end - start < 32 => end += 1,
            Some(_) => return Err(FrameError::Malformed("bad command")),
        }
    }
    let command = String::from_utf8_lossy(&buf[start..end]).into_owned();
    let Some((len, after)) = number(buf, end + 1, 9, "bad DATALEN")? else {
        return Ok(None);
    };
    if len > MAX_FRAME as u64 {
        return Err(FrameError::TooLarge(len));
    }
    let len = len as usize;
    let data_start = if len == 0 {
        after
    } else if buf[after] == b' ' {
        after + 1
    } else {
        return Err(FrameError::Malformed("no data after DATALEN"));
    };
    let trailer = data_start + len;
    match buf.get(trailer) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((
            Frame {
                txnr,
                command,
                data: buf[data_start..trailer].to_vec(),
            },
            trailer + 1,
        ))),
        Some(_) => Err(FrameError::Malformed("no LF after the data")),
    }
}

/// Why a session ended.
enum Ended {
    /// Route deleted.
    Cancelled,
    /// Queue closed and everything acknowledged: the session was closed.
    Done,
    /// The connection is unusable; unacknowledged messages go again on the next one.
    Broken(io::Error),
}

/// A message sent and not yet acknowledged.
struct Pending {
    txnr: u64,
    /// Its sequence number in the route's queue.
    seq: u64,
    acked: bool,
}

struct Session<'a> {
    sender: &'a Sender,
    stream: Box<dyn Stream>,
    buf: BytesMut,
    txnr: u64,
}

fn protocol(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Session<'_> {
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let limit = self.sender.timeouts.write;
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(limit, write)
            .await
            .map_err(|_| timed_out(format!("RELP write timed out after {limit:?}")))?
    }

    /// The next frame already buffered, if complete.
    fn buffered(&mut self) -> io::Result<Option<Frame>> {
        match parse(&self.buf) {
            Ok(Some((frame, used))) => {
                self.buf.advance(used);
                Ok(Some(frame))
            }
            Ok(None) if self.buf.len() > MAX_FRAME + 64 => Err(protocol(format!(
                "RELP frame larger than {MAX_FRAME} bytes"
            ))),
            Ok(None) => Ok(None),
            Err(e) => Err(protocol(e.to_string())),
        }
    }

    /// Reads more bytes (cancel-safe: nothing read is lost if this is dropped).
    async fn fill(&mut self) -> io::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "RELP server closed the connection",
            ));
        }
        Ok(())
    }

    /// The next frame, within the write timeout.
    async fn frame(&mut self) -> io::Result<Frame> {
        let limit = self.sender.timeouts.write;
        let read = async {
            loop {
                if let Some(frame) = self.buffered()? {
                    return Ok(frame);
                }
                self.fill().await?;
            }
        };
        tokio::time::timeout(limit, read)
            .await
            .map_err(|_| timed_out(format!("no RELP response within {limit:?}")))?
    }

    /// `open`, and the server's `200` answer.
    async fn open(&mut self) -> io::Result<()> {
        let offers = format!(
            "relp_version=0\nrelp_software=logspout-rs,{},https://github.com/gliderlabs/logspout\ncommands=syslog",
            env!("CARGO_PKG_VERSION")
        );
        let mut out = Vec::new();
        encode(1, "open", offers.as_bytes(), &mut out);
        self.write(&out).await?;
        let rsp = self.frame().await?;
        if rsp.txnr != 1 || rsp.command != "rsp" || rsp.status() != Some(200) {
            return Err(protocol(format!(
                "RELP open refused: {} {} {:?}",
                rsp.txnr,
                rsp.command,
                String::from_utf8_lossy(&rsp.data)
            )));
        }
        self.txnr = 2;
        Ok(())
    }

    /// `close` and its `rsp` (a server that just goes away is fine too).
    async fn close(&mut self) {
        let mut out = Vec::new();
        encode(self.txnr, "close", b"", &mut out);
        if self.write(&out).await.is_ok() {
            let _ = self.frame().await;
        }
    }
}

/// Sends the route's queue over RELP until `cancel` (route deleted) or until the queue is
/// closed and everything in it acknowledged.
pub async fn run(sender: Sender, cancel: CancellationToken) {
    let mut stall = Stall::new(&sender);
    let mut delays = sender.backoff.delays();
    let mut lost = false;
    // Sequence number in the queue of the first message not acknowledged.
    let mut acked = 0u64;
    loop {
        let attempt = tokio::select! {
            _ = cancel.cancelled() => return,
            attempt = async {
                let (stream, peer) = sender.connect_stream().await?;
                let mut session = Session { sender: &sender, stream, buf: BytesMut::new(), txnr: 1 };
                session.open().await?;
                Ok::<_, io::Error>((session, peer))
            } => attempt,
        };
        if lost {
            sender
                .metrics
                .reconnects
                .with_label_values(&[&sender.route_id])
                .inc();
        }
        let (mut session, peer) = match attempt {
            Ok(ok) => ok,
            Err(e) => {
                lost = true;
                let delay = delays.next().unwrap_or(sender.backoff.max_delay);
                stall.failed(
                    &sender,
                    "cannot open a RELP session, messages stay queued",
                    &e,
                    delay,
                );
                if !sleep_unless_cancelled(delay, &cancel).await {
                    return;
                }
                continue;
            }
        };
        if stall.is_stalled() {
            tracing::debug!(route = %sender.route_id, address = %sender.address, %peer, "RELP session open");
        } else {
            tracing::info!(route = %sender.route_id, address = %sender.address, %peer, "RELP session open");
        }
        let connected_at = Instant::now();
        let mut recovered = false;
        let ended = session_loop(
            &mut session,
            &mut acked,
            &mut stall,
            &mut recovered,
            connected_at,
            &cancel,
        )
        .await;
        if recovered {
            delays = sender.backoff.delays();
        }
        match ended {
            Ended::Cancelled => return,
            Ended::Done => {
                session.close().await;
                tracing::debug!(route = %sender.route_id, "queue drained, RELP session closed, sender done");
                return;
            }
            Ended::Broken(e) => {
                lost = true;
                let delay = if stall.is_stalled() {
                    delays.next().unwrap_or(sender.backoff.max_delay)
                } else {
                    std::time::Duration::ZERO
                };
                stall.failed(
                    &sender,
                    "RELP session broken, resending what was not acknowledged",
                    &e,
                    delay,
                );
                if !delay.is_zero() && !sleep_unless_cancelled(delay, &cancel).await {
                    return;
                }
            }
        }
    }
}

fn serverclose() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "RELP server sent serverclose",
    )
}

/// Marks the message `frame` (a `rsp`) answers as acknowledged; anything else is an error.
fn acknowledge(window: &mut VecDeque<Pending>, frame: &Frame) -> io::Result<()> {
    if frame.command != "rsp" {
        return Err(protocol(format!(
            "unexpected RELP command {:?} from the server",
            frame.command
        )));
    }
    let Some(pending) = window.iter_mut().find(|p| p.txnr == frame.txnr && !p.acked) else {
        return Err(protocol(format!(
            "RELP rsp for transaction {} that is not outstanding",
            frame.txnr
        )));
    };
    if frame.status() != Some(200) {
        return Err(protocol(format!(
            "RELP server refused message {}: {:?}",
            frame.txnr,
            String::from_utf8_lossy(&frame.data)
        )));
    }
    pending.acked = true;
    Ok(())
}

/// Sends messages from `*acked` on and reads their acknowledgements, removing acknowledged
/// messages from the queue in order.
async fn session_loop(
    session: &mut Session<'_>,
    acked: &mut u64,
    stall: &mut Stall,
    recovered: &mut bool,
    connected_at: Instant,
    cancel: &CancellationToken,
) -> Ended {
    let sender = session.sender;
    let queue = sender.queue.clone();
    let mut window: VecDeque<Pending> = VecDeque::new();
    let mut next = *acked;
    // When the oldest unacknowledged message was sent (or last acknowledgement read).
    let mut waiting_since = Instant::now();
    // The server sent `serverclose`: nothing more is sent, its last answers are read.
    let mut closing = false;
    loop {
        let limit = sender.timeouts.write;
        let ack_deadline = tokio::time::Instant::from_std(waiting_since + limit);
        tokio::select! {
            _ = cancel.cancelled() => return Ended::Cancelled,
            batch = queue.batch(next, WRITE_BYTES), if window.len() < WINDOW && !closing => {
                let Some((start, batch)) = batch else {
                    if window.is_empty() {
                        return Ended::Done;
                    }
                    continue;
                };
                if window.is_empty() {
                    waiting_since = Instant::now();
                }
                let mut out = Vec::with_capacity(batch.iter().map(|m| m.len() + 24).sum());
                let mut count = 0u64;
                for message in batch.iter().take(WINDOW - window.len()) {
                    let line: &Bytes = message;
                    let line = line.strip_suffix(b"\n").unwrap_or(line);
                    encode(session.txnr, "syslog", line, &mut out);
                    window.push_back(Pending { txnr: session.txnr, seq: start + count, acked: false });
                    session.txnr = next_txnr(session.txnr);
                    count += 1;
                }
                next = start + count;
                if let Err(e) = session.write(&out).await {
                    return Ended::Broken(e);
                }
            }
            read = session.fill() => {
                // What ends this session, if anything; acknowledgements read before it count.
                let mut ended = match read {
                    Err(_) if closing => Some(Ended::Broken(serverclose())),
                    Err(e) => Some(Ended::Broken(e)),
                    Ok(()) => None,
                };
                while ended.is_none() {
                    let frame = match session.buffered() {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(e) => {
                            ended = Some(Ended::Broken(e));
                            break;
                        }
                    };
                    if frame.command == "serverclose" {
                        // rsyslog may still answer what it took before: read on until it closes.
                        closing = true;
                        continue;
                    }
                    if closing {
                        tracing::debug!(route = %sender.route_id, txnr = frame.txnr, "RELP answer read after serverclose");
                    }
                    ended = acknowledge(&mut window, &frame).err().map(Ended::Broken);
                    waiting_since = Instant::now();
                }
                let mut delivered = 0u64;
                while window.front().is_some_and(|p| p.acked) {
                    if let Some(p) = window.pop_front() {
                        *acked = p.seq + 1;
                        delivered += 1;
                    }
                }
                if delivered > 0 {
                    queue.ack(*acked);
                    sender.metrics.lines_sent.with_label_values(&[&sender.route_id]).inc_by(delivered);
                    if stall.delivered(sender, connected_at, queue.is_empty()) {
                        *recovered = true;
                    }
                }
                if let Some(ended) = ended {
                    return ended;
                }
                if closing && window.is_empty() {
                    return Ended::Broken(serverclose());
                }
            }
            _ = tokio::time::sleep_until(ack_deadline), if !window.is_empty() => {
                if closing {
                    return Ended::Broken(serverclose());
                }
                return Ended::Broken(timed_out(format!("no RELP acknowledgement within {limit:?}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::net::TcpListener;

    use crate::metrics::Metrics;
    use crate::queue::RouteQueue;
    use crate::route::Transport;
    use crate::sender::Timeouts;

    type Received = Arc<Mutex<Vec<Vec<String>>>>;

    /// A RELP server on loopback. On the first connection it acknowledges the first message
    /// and answers the second with `hostile` (then just reads on); later connections
    /// acknowledge everything. Records the messages of each connection.
    async fn fake_server(hostile: &'static [u8]) -> (std::net::SocketAddr, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Received = Arc::default();
        let log = received.clone();
        tokio::spawn(async move {
            for conn in 0.. {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                log.lock().unwrap().push(Vec::new());
                let mut buf = BytesMut::new();
                let mut syslogs = 0;
                loop {
                    let frame = match parse(&buf) {
                        Ok(Some((frame, used))) => {
                            buf.advance(used);
                            frame
                        }
                        Ok(None) => match stream.read_buf(&mut buf).await {
                            Ok(1..) => continue,
                            _ => break,
                        },
                        Err(e) => panic!("client sent a bad frame: {e}"),
                    };
                    let mut answer = Vec::new();
                    match frame.command.as_str() {
                        "open" => encode(frame.txnr, "rsp", b"200 OK", &mut answer),
                        "syslog" => {
                            syslogs += 1;
                            log.lock().unwrap()[conn]
                                .push(String::from_utf8_lossy(&frame.data).into_owned());
                            if conn == 0 && syslogs == 2 {
                                answer.extend_from_slice(hostile);
                            } else if conn > 0 || syslogs == 1 {
                                encode(frame.txnr, "rsp", b"200 OK", &mut answer);
                            }
                        }
                        "close" => encode(frame.txnr, "rsp", b"", &mut answer),
                        other => panic!("unexpected command {other}"),
                    }
                    if stream.write_all(&answer).await.is_err() {
                        break;
                    }
                }
            }
        });
        (addr, received)
    }

    fn sender(addr: std::net::SocketAddr, queue: Arc<RouteQueue>, metrics: Metrics) -> Sender {
        Sender {
            route_id: "relp-test".into(),
            address: addr.to_string(),
            transport: Transport::Relp,
            tls: None,
            queue,
            metrics,
            backoff: common::Backoff {
                min_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
                factor: 2.0,
                jitter: false,
                max_retries: None,
            },
            timeouts: Timeouts {
                write: Duration::from_millis(500),
                keepalive: None,
                ..Timeouts::DEFAULT
            },
            retry_count: 3,
            datagram_chunks: None,
        }
    }

    #[tokio::test]
    async fn hostile_answers_drop_the_session_and_only_unacknowledged_messages_go_again() {
        let huge = b"3 rsp 999999 200 OK\n";
        let flood: &'static [u8] = Box::leak(
            [&b"3 rsp 65536 200 OK "[..], &[b'x'; 70_000]]
                .concat()
                .into_boxed_slice(),
        );
        let cases: [(&str, &'static [u8]); 9] = [
            ("truncated", b"3 rsp 6 200"),
            ("huge DATALEN", huge),
            ("oversized frame", flood),
            ("non-digit TXNR", b"x rsp 6 200 OK\n"),
            ("non-digit DATALEN", b"3 rsp six 200 OK\n"),
            ("wrong TXNR", b"77 rsp 6 200 OK\n"),
            ("TXNR answered twice", b"2 rsp 6 200 OK\n"),
            ("refused", b"3 rsp 9 500 Nope\n"),
            ("serverclose", b"0 serverclose 0\n"),
        ];
        for (name, hostile) in cases {
            let (addr, received) = fake_server(hostile).await;
            let queue = Arc::new(RouteQueue::new(1 << 20));
            for m in ["m1\n", "m2\n", "m3\n"] {
                queue.push(Bytes::from(m));
            }
            let metrics = Metrics::new().unwrap();
            let cancel = CancellationToken::new();
            let task = tokio::spawn(run(
                sender(addr, queue.clone(), metrics.clone()),
                cancel.clone(),
            ));
            let drained = tokio::time::timeout(Duration::from_secs(10), async {
                while !queue.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await;
            assert!(drained.is_ok(), "{name}: queue not drained");
            assert!(!task.is_finished(), "{name}: sender ended");
            cancel.cancel();
            assert!(task.await.is_ok(), "{name}: sender panicked");
            let received = received.lock().unwrap().clone();
            assert_eq!(received[0], ["m1", "m2", "m3"], "{name}");
            // m1 was acknowledged: only m2 and m3 go again, once.
            assert_eq!(received[1], ["m2", "m3"], "{name}");
            assert_eq!(received.len(), 2, "{name}");
            let sent = metrics.lines_sent.with_label_values(&["relp-test"]).get();
            assert_eq!(sent, 3, "{name}");
            let reconnects = metrics.reconnects.with_label_values(&["relp-test"]).get();
            assert_eq!(reconnects, 1, "{name}");
        }
    }

    #[tokio::test]
    async fn a_closed_queue_is_sent_then_the_session_closed() {
        let (addr, received) = fake_server(b"").await;
        let queue = Arc::new(RouteQueue::new(1 << 20));
        queue.push(Bytes::from("only\n"));
        queue.close();
        let metrics = Metrics::new().unwrap();
        let done = tokio::time::timeout(
            Duration::from_secs(10),
            run(
                sender(addr, queue.clone(), metrics),
                CancellationToken::new(),
            ),
        )
        .await;
        assert!(done.is_ok(), "sender did not finish");
        assert!(queue.is_empty());
        assert_eq!(received.lock().unwrap()[0], ["only"]);
    }

    #[test]
    fn frames_encode_as_the_spec_says() {
        let mut out = Vec::new();
        encode(7, "syslog", b"<14>1 hi", &mut out);
        encode(8, "close", b"", &mut out);
        assert_eq!(out, b"7 syslog 8 <14>1 hi\n8 close 0\n");
        assert_eq!(next_txnr(1), 2);
        assert_eq!(next_txnr(MAX_TXNR), 1);
    }

    #[test]
    fn frames_parse_and_wait_for_the_rest() {
        let whole = b"1 rsp 6 200 OK\n0 serverclose 0\n";
        let (frame, used) = parse(whole).unwrap().unwrap();
        assert_eq!(
            (
                frame.txnr,
                frame.command.as_str(),
                frame.data.as_slice(),
                used
            ),
            (1, "rsp", &b"200 OK"[..], 15)
        );
        assert_eq!(frame.status(), Some(200));
        let (close, used2) = parse(&whole[used..]).unwrap().unwrap();
        assert_eq!(
            (close.txnr, close.command.as_str(), close.data.len(), used2),
            (0, "serverclose", 0, 16)
        );
        // Every truncation of a frame is "not yet", never an error.
        for cut in 0..whole[..used].len() {
            assert_eq!(parse(&whole[..cut]), Ok(None), "{cut}");
        }
        let offers = b"1 rsp 22 200 OK\ncommands=syslog\n";
        assert_eq!(parse(offers).unwrap().unwrap().0.status(), Some(200));
        let refused = parse(b"3 rsp 11 500 refused\n").unwrap().unwrap().0;
        assert_eq!(refused.status(), Some(500));
    }

    #[test]
    fn hostile_frames_are_errors() {
        for bad in [
            &b"x rsp 6 200 OK\n"[..],
            b"1234567890 rsp 0\n",
            b" rsp 0\n",
            b"1  rsp 0\n",
            b"1 r$p 0\n",
            b"1 rsp x\n",
            b"1 rsp -1\n",
            b"1 rsp 2 200\n",
            b"1 rsp 0 \n",
            b"1\n",
        ] {
            assert!(
                matches!(parse(bad), Err(FrameError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(b"1 rsp 999999999 "),
            Err(FrameError::TooLarge(999_999_999))
        );
        assert!(matches!(
            parse(b"1 rsp 99999999999"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(parse(&[b'a'; 40]), Err(FrameError::Malformed(_))));
        let long_command = [&b"1 "[..], &[b'a'; 40]].concat();
        assert!(parse(&long_command).is_err());
        assert_eq!(
            Frame {
                txnr: 1,
                command: "rsp".into(),
                data: b"20x".to_vec()
            }
            .status(),
            None
        );
        assert_eq!(
            Frame {
                txnr: 1,
                command: "rsp".into(),
                data: b"2000".to_vec()
            }
            .status(),
            None
        );
    }
}
