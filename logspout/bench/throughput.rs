//! Throughput and footprint of the release binary against the real Docker Engine, printed as
//! figures: lines/s delivered to a TCP and a UDP receiver on loopback, compared with forwarding
//! the same kind of container's log from `docker logs --follow` into the same receiver (chunks
//! over TCP, one datagram per line over UDP); then CPU and RSS while 50 containers write about
//! 10,000 lines/s in total.
//!
//! Run with `cargo bench -p logspout` (`LOGSPOUT_BENCH_LINES` changes N, default 200,000;
//! `LOGSPOUT_BENCH_ROUNDS` the number of rounds, default 3).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark: a failure is a panic.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::process::{free_tcp_port, spawn_tied};
use harness::{ContainerSpec, TestContainer, TestDocker};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};

/// Counts newline-terminated lines (TCP) or datagrams (UDP), and when the first and last arrived.
#[derive(Debug, Default)]
struct Counter {
    lines: AtomicU64,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
}

impl Counter {
    fn add(&self, n: u64, epoch: Instant) {
        if n == 0 {
            return;
        }
        let now = epoch.elapsed().as_nanos() as u64;
        let _ = self
            .first_ns
            .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        self.last_ns.store(now, Ordering::SeqCst);
        self.lines.fetch_add(n, Ordering::SeqCst);
    }

    fn reset(&self) {
        self.lines.store(0, Ordering::SeqCst);
        self.first_ns.store(0, Ordering::SeqCst);
        self.last_ns.store(0, Ordering::SeqCst);
    }

    /// Lines per second between the first and the last arrival.
    fn rate(&self) -> f64 {
        let span = self.last_ns.load(Ordering::SeqCst) - self.first_ns.load(Ordering::SeqCst);
        self.lines.load(Ordering::SeqCst) as f64 / (span.max(1) as f64 / 1e9)
    }
}

async fn tcp_receiver(counter: Arc<Counter>, epoch: Instant) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                            counter.add(lines as u64, epoch);
                        }
                    }
                }
            });
        }
    });
    port
}

async fn udp_receiver(counter: Arc<Counter>, epoch: Instant) -> u16 {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    socket.set_recv_buffer_size(8 * 1024 * 1024).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket = UdpSocket::from_std(socket.into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while socket.recv(&mut buf).await.is_ok() {
            counter.add(1, epoch);
        }
    });
    port
}

async fn receiver(transport: &str, counter: Arc<Counter>, epoch: Instant) -> u16 {
    if transport == "tcp" {
        tcp_receiver(counter, epoch).await
    } else {
        udp_receiver(counter, epoch).await
    }
}

/// A container that writes `lines` short lines as fast as it can once `/tmp/go` exists.
async fn writer(docker: &TestDocker, name: &str, lines: u64) -> TestContainer {
    let script = format!(
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; seq 1 {lines}; trap 'exit 0' TERM; while true; do sleep 1; done"
    );
    docker.run(ContainerSpec::shell(&script).name(name)).await
}

/// Waits until `lines` arrived, or 120 s; over UDP (`lossy`), which may lose datagrams on
/// a busy machine, also until nothing arrived for 10 s. True when every line arrived.
async fn wait_for(counter: &Counter, lines: u64, lossy: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        let now = counter.lines.load(Ordering::SeqCst);
        if now >= lines {
            return true;
        }
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if lossy && seen > 0 && since.elapsed() > Duration::from_secs(10) {
            return false;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start_logspout(routes: &str) -> (Child, u16) {
    let port = free_tcp_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_logspout"));
    command
        .arg(routes)
        .env("PORT", port.to_string())
        .env("HTTP_BIND_ADDRESS", "127.0.0.1")
        .env("ROUTESPATH", "/nonexistent")
        .env("RUST_LOG", "info")
        .env("LOGSPOUT_QUEUE_SIZE", "64MiB")
        .stdout(Stdio::null())
        .stderr(log_file());
    (spawn_tied(command).unwrap(), port)
}

/// logspout's log, for a look after the run (`LOGSPOUT_BENCH_LOG`, default in the temp dir).
fn log_file() -> Stdio {
    let path = std::env::var("LOGSPOUT_BENCH_LOG").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("logspout-bench.log")
            .display()
            .to_string()
    });
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// Waits until logspout answers `GET /health` with 200.
async fn wait_healthy(port: u16) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    harness::wait_until(
        "logspout to answer /health",
        Duration::from_secs(30),
        || async {
            let (status, _) = harness::http::http_get(addr, "/health").await.ok()?;
            (status == 200).then_some(())
        },
    )
    .await;
}

/// Lets the writer's stream be attached, starts it, and waits for its lines at the receiver.
async fn measure(counter: &Counter, container: &TestContainer, lines: u64, transport: &str) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    counter.reset();
    container.touch("/tmp/go").await;
    // UDP may lose datagrams on a busy machine: what arrived is reported.
    wait_for(counter, lines, transport == "udp").await;
}

async fn logspout_run(
    docker: &TestDocker,
    transport: &str,
    lines: u64,
    epoch: Instant,
) -> (f64, u64) {
    let counter = Arc::new(Counter::default());
    let port = receiver(transport, counter.clone(), epoch).await;
    let name = format!("bench-{transport}-{}", std::process::id());
    let route = format!("raw+{transport}://127.0.0.1:{port}?filter.name={name}");
    let (mut child, http) = start_logspout(&route);
    wait_healthy(http).await;
    let container = writer(docker, &name, lines).await;
    measure(&counter, &container, lines, transport).await;
    let _ = child.kill();
    let _ = child.wait();
    (counter.rate(), counter.lines.load(Ordering::SeqCst))
}

/// The reference: `docker logs --follow` of the same kind of container, forwarded into the same
/// kind of receiver as logspout's — each chunk read written to the TCP receiver, each line sent
/// as one datagram to the UDP receiver (the least a forwarder can do for each transport) — or,
/// with `pipe`, only read and counted (how fast Docker hands out the log at all).
async fn reference_run(
    docker: &TestDocker,
    transport: &str,
    lines: u64,
    epoch: Instant,
) -> (f64, u64) {
    let counter = Arc::new(Counter::default());
    let port = match transport {
        "pipe" => 0,
        _ => receiver(transport, counter.clone(), epoch).await,
    };
    let name = format!("bench-ref-{transport}-{}", std::process::id());
    let container = writer(docker, &name, lines).await;
    let mut command = Command::new("docker");
    command
        .args(["logs", "--follow", container.id()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = spawn_tied(command).unwrap();
    let stdout = child.stdout.take().unwrap();
    let transport_owned = transport.to_owned();
    let pipe_counter = counter.clone();
    let forwarder = std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut stdout = BufReader::with_capacity(256 * 1024, stdout);
        if transport_owned == "pipe" {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let lines = buf[..n].iter().filter(|&&b| b == b'\n').count();
                pipe_counter.add(lines as u64, epoch);
            }
        } else if transport_owned == "udp" {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.connect(("127.0.0.1", port)).unwrap();
            let mut line = Vec::with_capacity(256);
            while stdout.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let _ = socket.send(&line);
                line.clear();
            }
        } else {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    measure(&counter, &container, lines, transport).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = forwarder.join();
    (counter.rate(), counter.lines.load(Ordering::SeqCst))
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; after the `)` they are at 11 and 12.
    fields
        .get(11)
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn footprint(docker: &TestDocker, epoch: Instant) {
    const CONTAINERS: usize = 50;
    let counter = Arc::new(Counter::default());
    let port = tcp_receiver(counter.clone(), epoch).await;
    let prefix = format!("bench-fp-{}", std::process::id());
    let route = format!("syslog+tcp://127.0.0.1:{port}?filter.name={prefix}-*");
    let (mut child, http) = start_logspout(&route);
    wait_healthy(http).await;
    // Each container writes 200 lines/s in bursts of 20 every 100 ms.
    let script = "while true; do i=0; while [ $i -lt 20 ]; do echo \"line $i of a container that writes a steady stream\"; i=$((i+1)); done; usleep 100000; done";
    let mut containers = Vec::new();
    for i in 0..CONTAINERS {
        containers.push(
            docker
                .run(ContainerSpec::shell(script).name(&format!("{prefix}-{i}")))
                .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let pid = child.id();
    let (t0, l0, start) = (
        cpu_ticks(pid),
        counter.lines.load(Ordering::SeqCst),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (t1, l1, elapsed) = (
        cpu_ticks(pid),
        counter.lines.load(Ordering::SeqCst),
        start.elapsed(),
    );
    let cpu = (t1 - t0) as f64 / ticks_per_sec / elapsed.as_secs_f64() * 100.0;
    let rate = (l1 - l0) as f64 / elapsed.as_secs_f64();
    println!(
        "footprint: {CONTAINERS} containers, {rate:.0} lines/s delivered (syslog+tcp): CPU {cpu:.1}% of one core, RSS {:.1} MB",
        rss_kib(pid) as f64 / 1024.0
    );
    drop(containers);
    let _ = child.kill();
    let _ = child.wait();
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let lines = env_number("LOGSPOUT_BENCH_LINES", 200_000);
    let rounds = env_number("LOGSPOUT_BENCH_ROUNDS", 3).max(1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let docker = TestDocker::connect().await;
        let epoch = Instant::now();
        // Each round measures every reference right before logspout, so that a change in the
        // machine's load between rounds affects both sides of a ratio alike; medians are printed.
        let mut ratios: [(Vec<f64>, Vec<f64>); 2] = Default::default();
        for round in 1..=rounds {
            let (read, read_lines) = reference_run(&docker, "pipe", lines, epoch).await;
            println!(
                "round {round}: docker logs --follow read alone: {read:.0} lines/s, {read_lines}/{lines} lines read"
            );
            for (transport, (to_reference, to_read)) in ["tcp", "udp"].into_iter().zip(&mut ratios)
            {
                let (reference, ref_lines) =
                    reference_run(&docker, transport, lines, epoch).await;
                println!(
                    "round {round}: reference over {transport}: docker logs --follow forwarded: {reference:.0} lines/s, {ref_lines}/{lines} delivered"
                );
                let (rate, delivered) = logspout_run(&docker, transport, lines, epoch).await;
                println!(
                    "round {round}: logspout raw+{transport}: {rate:.0} lines/s, {delivered}/{lines} delivered, {:.2}x the reference, {:.2}x the read-alone rate",
                    rate / reference,
                    rate / read
                );
                to_reference.push(rate / reference);
                to_read.push(rate / read);
            }
        }
        for (transport, (to_reference, to_read)) in ["tcp", "udp"].into_iter().zip(ratios) {
            println!(
                "median of {rounds} rounds: logspout raw+{transport}: {:.2}x the reference, {:.2}x the read-alone rate",
                median(to_reference),
                median(to_read)
            );
        }
        footprint(&docker, epoch).await;
    });
}
