//! The `syslog-sink` binary as a child process that a test can SIGKILL mid-stream and start
//! again on the same port: the cluster suite's syslog receiver. Its output (one line per
//! message) goes to a file that survives the kills; [`SinkProcess::messages`] parses what was
//! appended since the last call. A kill loses what a real receiver's crash loses: messages in
//! its socket buffers and those it had read but not yet written out.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::dns::Transport;
use crate::process::{free_tcp_udp_port, spawn_tied, workspace_binary};
use crate::syslog::{Framing, SyslogMessage};

/// What has been parsed of the output file so far.
#[derive(Debug, Default)]
struct Parsed {
    /// Bytes of the file consumed.
    offset: u64,
    /// The end of the file after the last newline (a line being written).
    partial: Vec<u8>,
    messages: Vec<SyslogMessage>,
}

/// `syslog-sink --ip 127.0.0.1 --port <free port>` as a child process; SIGKILLed when dropped.
#[derive(Debug)]
pub struct SinkProcess {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Option<Child>,
    parsed: Mutex<Parsed>,
}

impl SinkProcess {
    /// Starts the sink on a free loopback port and waits until it accepts connections.
    pub async fn start() -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_udp_port()));
        let mut sink = Self {
            addr,
            dir: tempfile::tempdir().expect("a directory for the sink's output"),
            child: None,
            parsed: Mutex::new(Parsed::default()),
        };
        sink.restart().await;
        sink
    }

    /// Where it listens (TCP and UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn output(&self) -> PathBuf {
        self.dir.path().join("messages")
    }

    /// SIGKILL, as a crash: its connections are reset and whatever it had not written out is
    /// gone. Messages written so far are kept.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A line cut short by the kill must not run into the next run's first line.
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        self.read_new(&mut parsed);
        if !parsed.partial.is_empty() {
            let line = std::mem::take(&mut parsed.partial);
            parsed.messages.push(parse_line(&line));
            if let Ok(mut file) = std::fs::File::options().append(true).open(self.output()) {
                let _ = file.write_all(b"\n");
                parsed.offset += 1;
            }
        }
    }

    /// Starts it (again) on the same port, retrying while the port is not free yet, and waits
    /// until it accepts connections.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the sink is running");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut child = self.spawn();
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "syslog-sink on {} keeps exiting ({status}): {}",
                        self.addr,
                        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
                    );
                    break;
                }
                if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                    self.child = Some(child);
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "syslog-sink on {} did not listen within 15 s",
                    self.addr
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn spawn(&self) -> Child {
        let open = |name: &str| {
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
                .unwrap_or_else(|e| panic!("open the sink's {name} file: {e}"))
        };
        let mut command = Command::new(workspace_binary("syslog-sink"));
        command
            .args(["--ip", &self.addr.ip().to_string()])
            .args(["--port", &self.addr.port().to_string()])
            .stdin(Stdio::null())
            .stdout(open("messages"))
            .stderr(open("log"));
        spawn_tied(command).unwrap_or_else(|e| panic!("start syslog-sink: {e}"))
    }

    /// Every message written out so far, in arrival order (framing as newline-terminated: the
    /// sink's output does not say which framing a message came in).
    pub fn messages(&self) -> Vec<SyslogMessage> {
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        self.read_new(&mut parsed);
        parsed.messages.clone()
    }

    /// How many messages were written out so far.
    pub fn count(&self) -> usize {
        let mut parsed = self.parsed.lock().unwrap_or_else(|p| p.into_inner());
        self.read_new(&mut parsed);
        parsed.messages.len()
    }

    /// Parses the lines appended since the last read.
    fn read_new(&self, parsed: &mut Parsed) {
        let Ok(mut file) = std::fs::File::open(self.output()) else {
            return;
        };
        let mut fresh = Vec::new();
        if file.seek(SeekFrom::Start(parsed.offset)).is_err()
            || file.read_to_end(&mut fresh).is_err()
        {
            return;
        }
        parsed.offset += fresh.len() as u64;
        let mut pending = std::mem::take(&mut parsed.partial);
        pending.extend_from_slice(&fresh);
        let mut lines = pending.split(|&b| b == b'\n').peekable();
        while let Some(line) = lines.next() {
            if lines.peek().is_none() {
                parsed.partial = line.to_vec();
            } else if !line.is_empty() {
                parsed.messages.push(parse_line(line));
            }
        }
    }
}

fn parse_line(line: &[u8]) -> SyslogMessage {
    SyslogMessage::parse(line, Transport::Tcp, Framing::NewlineTerminated)
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
