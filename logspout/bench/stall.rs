//! Recovery of a stalled route, release binary, real Docker Engine, default timeouts: a
//! container writes 300 numbered lines while the route's `syslog+tls://` destination accepts
//! TCP and never answers the TLS handshake, for 15 s; then that destination goes away (its
//! connections with it) and a real TLS receiver takes the same port. Printed per round: lines
//! delivered (distinct, doubled) and the time from the receiver's start to the first line; then
//! the same with a destination that refuses connections for 15 s (`syslog+tcp://`).
//!
//! Run with `cargo bench -p logspout --bench stall` (`LOGSPOUT_BENCH_ROUNDS`, default 3;
//! `LOGSPOUT_BENCH_STALL_SECS`, default 15).

#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark: a failure is a panic.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::process::{free_tcp_port, spawn_tied};
use harness::tls::make_certificates;
use harness::{ContainerSpec, TestDocker};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::{TcpListener, TcpStream};

const LINES: usize = 300;

/// Lines received and when the first one arrived.
#[derive(Debug, Default)]
struct Received {
    lines: Vec<String>,
    first: Option<Instant>,
}

type Store = Arc<Mutex<Received>>;

async fn collect<S: AsyncRead + Unpin>(stream: S, store: Store) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut store = store.lock().unwrap();
        store.first.get_or_insert_with(Instant::now);
        store.lines.push(line);
    }
}

/// Numbers of the `line-<n>` messages received: (distinct, doubled).
fn tally(store: &Store) -> (usize, usize) {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for line in &store.lock().unwrap().lines {
        if let Some(n) = line
            .rsplit_once(" line-")
            .and_then(|(_, n)| n.parse::<usize>().ok())
            .filter(|n| (1..=LINES).contains(n))
        {
            *counts.entry(n).or_insert(0) += 1;
        }
    }
    (counts.len(), counts.values().map(|c| c - 1).sum())
}

fn start_logspout(routes: &str, ca: &Path) -> (Child, u16) {
    let port = free_tcp_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_logspout"));
    command
        .arg(routes)
        .env("PORT", port.to_string())
        .env("HTTP_BIND_ADDRESS", "127.0.0.1")
        .env("ROUTESPATH", "/nonexistent")
        .env("RUST_LOG", "info")
        .env("LOGSPOUT_TLS_CA_CERTS", ca)
        .env("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    (spawn_tied(command).unwrap(), port)
}

async fn wait_healthy(port: u16) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    harness::wait_until("logspout /health", Duration::from_secs(30), || async {
        let (status, _) = harness::http::http_get(addr, "/health").await.ok()?;
        (status == 200).then_some(())
    })
    .await;
}

/// How the destination misbehaves before it recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// TLS: accepts TCP, never answers the handshake.
    HungHandshake,
    /// TCP: nothing listens, connects are refused.
    Refused,
}

/// One round: (distinct lines delivered, doubled lines, recovery to first line).
async fn round(docker: &TestDocker, outage: Outage, stall: Duration) -> (usize, usize, Duration) {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hung.local_addr().unwrap().port();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let hung_task = if outage == Outage::HungHandshake {
        let held = held.clone();
        Some(tokio::spawn(async move {
            while let Ok((stream, _)) = hung.accept().await {
                held.lock().unwrap().push(stream);
            }
        }))
    } else {
        drop(hung);
        None
    };
    let name = format!("ls-bench-stall-{}-{port}", std::process::id());
    let scheme = match outage {
        Outage::HungHandshake => "syslog+tls",
        Outage::Refused => "syslog+tcp",
    };
    let routes = format!("{scheme}://localhost:{port}?filter.name={name}");
    let (mut logspout, http) = start_logspout(&routes, &dir.path().join("ca.pem"));
    wait_healthy(http).await;
    let script = format!(
        "i=1; while [ $i -le {LINES} ]; do echo line-$i; i=$((i+1)); done; trap 'exit 0' TERM; while true; do sleep 1; done"
    );
    let container = docker.run(ContainerSpec::shell(&script).name(&name)).await;
    tokio::time::sleep(stall).await;

    // Recovery: the misbehaving destination goes away, a working one takes the port.
    if let Some(task) = hung_task {
        task.abort();
        let _ = task.await;
    }
    held.lock().unwrap().clear();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let recovered = Instant::now();
    let store: Store = Arc::default();
    let acceptor = (outage == Outage::HungHandshake).then(|| {
        let config = harness::tls::server_config(dir.path(), false);
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let receiver = tokio::spawn({
        let store = store.clone();
        async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let store = store.clone();
                match acceptor.clone() {
                    Some(acceptor) => {
                        tokio::spawn(async move {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                collect(tls, store).await;
                            }
                        });
                    }
                    None => {
                        tokio::spawn(collect(tcp, store));
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally(&store).0 < LINES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // a late duplicate would show
    let (distinct, doubled) = tally(&store);
    let first = store
        .lock()
        .unwrap()
        .first
        .map_or(Duration::MAX, |t| t.duration_since(recovered));
    receiver.abort();
    let _ = logspout.kill();
    let _ = logspout.wait();
    drop(container);
    (distinct, doubled, first)
}

fn main() {
    let rounds = std::env::var("LOGSPOUT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let stall = Duration::from_secs(
        std::env::var("LOGSPOUT_BENCH_STALL_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(15),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let docker = TestDocker::connect().await;
        for (outage, what) in [
            (Outage::HungHandshake, "hung TLS handshake"),
            (Outage::Refused, "refused TCP connects"),
        ] {
            let mut firsts = Vec::new();
            for n in 1..=rounds {
                let (distinct, doubled, first) = round(&docker, outage, stall).await;
                println!(
                    "{what}, {}s, round {n}: {distinct}/{LINES} lines delivered, {doubled} twice; first line {:.0} ms after the destination recovered",
                    stall.as_secs(),
                    first.as_secs_f64() * 1000.0
                );
                firsts.push(first);
            }
            let min = firsts.iter().min().copied().unwrap_or_default();
            let max = firsts.iter().max().copied().unwrap_or_default();
            println!(
                "{what}: recovery to first line {:.0}-{:.0} ms over {rounds} rounds (goal < 1000 ms)",
                min.as_secs_f64() * 1000.0,
                max.as_secs_f64() * 1000.0
            );
        }
    });
}
