//! `syslog-sink`: a minimal central syslog receiver, packaged as the `syslog-sink` image for the
//! `docker-rsyslog` fleet unit and the end-to-end test, and run as a process by the cluster
//! suite (which SIGKILLs it mid-stream). It listens on UDP and TCP (port 514, or `--port N`, on
//! every address, or `--ip A`) and prints each message on stdout as one line: every UDP
//! datagram, and every TCP message in either RFC 6587 framing (newline-terminated or octet
//! counting). Newlines inside a message are printed as `\n`. SIGTERM or SIGINT stops it with exit
//! status 0. It stores nothing and forwards nothing: replace it with a real rsyslog for that.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use harness::syslog::next_frame;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

const DEFAULT_PORT: u16 = 514;
/// A TCP peer that sends this much without completing a message is disconnected.
const MAX_MESSAGE: usize = 1 << 20;
const USAGE: &str = "usage: syslog-sink [--port N] [--ip ADDRESS] [--version]";

fn main() -> ExitCode {
    let addr = match parse_args(std::env::args().skip(1)) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("syslog-sink {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("syslog-sink: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("syslog-sink: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("syslog-sink: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The address to listen on, or `None` for `--version`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<SocketAddr>, String> {
    let mut addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT));
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let name = name.trim_start_matches('-');
        if name == "version" && inline.is_none() && arg.starts_with('-') {
            return Ok(None);
        }
        if !arg.starts_with('-') || !matches!(name, "port" | "ip") {
            return Err(format!("unknown argument {arg:?}"));
        }
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or(format!("--{name} needs a value"))?,
        };
        if name == "port" {
            let port = value
                .parse()
                .map_err(|_| format!("{value:?} is not a port number"))?;
            addr.set_port(port);
        } else {
            let ip: IpAddr = value
                .parse()
                .map_err(|_| format!("{value:?} is not an IP address"))?;
            addr.set_ip(ip);
        }
    }
    Ok(Some(addr))
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let shutdown = common::shutdown::install()?;
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(addr).await?;
    eprintln!("syslog-sink: listening on udp and tcp {addr}");
    let mut tasks = JoinSet::new();
    tasks.spawn(serve_udp(udp));
    tasks.spawn(serve_tcp(tcp));
    shutdown.cancelled().await;
    tasks.abort_all();
    Ok(())
}

/// Appends one message to `out` as one line.
fn append_message(out: &mut Vec<u8>, message: &[u8]) {
    let text = String::from_utf8_lossy(message);
    let text = text.trim_end_matches(['\r', '\n']).replace('\n', "\\n");
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

/// Writes the lines gathered in `out` in one go; a closed stdout is not worth dying for.
fn write_out(out: &mut Vec<u8>) {
    if !out.is_empty() {
        let _ = std::io::stdout().lock().write_all(out);
        out.clear();
    }
}

/// Most bytes of lines gathered before they are written.
const OUT_BATCH: usize = 256 * 1024;

async fn serve_udp(socket: UdpSocket) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(OUT_BATCH);
    loop {
        match socket.recv(&mut buf).await {
            Ok(len) => {
                append_message(&mut out, &buf[..len]);
                // The datagrams that arrived meanwhile go out in the same write: one write per
                // line could not keep up with a busy sender, and the socket would drop datagrams.
                while out.len() < OUT_BATCH {
                    match socket.try_recv(&mut buf) {
                        Ok(len) => append_message(&mut out, &buf[..len]),
                        Err(_) => break,
                    }
                }
                write_out(&mut out);
            }
            // An ICMP error reported on the socket, or the like: keep receiving.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// Accepts connections; dropping this task (at shutdown) drops every connection with it.
async fn serve_tcp(listener: TcpListener) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(read_messages(stream));
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

/// Prints the peer's messages until it closes the connection; a last message without its
/// newline is printed then.
async fn read_messages(mut stream: TcpStream) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        let mut used = 0;
        while let Some((message, _, consumed)) = next_frame(&buf[used..]) {
            append_message(&mut out, message);
            used += consumed;
        }
        buf.drain(..used);
        write_out(&mut out);
        if buf.len() > MAX_MESSAGE {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                if !buf.is_empty() {
                    append_message(&mut out, &buf);
                    write_out(&mut out);
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<SocketAddr>, String> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
    }

    fn addr(text: &str) -> Result<Option<SocketAddr>, String> {
        Ok(Some(text.parse().unwrap()))
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(&[]), addr("0.0.0.0:514"));
        assert_eq!(parse(&["--port", "1514"]), addr("0.0.0.0:1514"));
        assert_eq!(parse(&["-port=5140"]), addr("0.0.0.0:5140"));
        assert_eq!(
            parse(&["--ip", "127.0.0.1", "--port=9"]),
            addr("127.0.0.1:9")
        );
        assert_eq!(parse(&["--ip=::1"]), addr("[::1]:514"));
        assert_eq!(parse(&["--version"]), Ok(None));
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--port", "70000"]).is_err());
        assert!(parse(&["--ip", "localhost"]).is_err());
        assert!(parse(&["--version=1"]).is_err());
        assert!(parse(&["514"]).is_err());
        assert!(parse(&["--bogus", "1"]).is_err());
    }
}
