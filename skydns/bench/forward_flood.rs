//! Benchmark (release build): `cargo bench -p skydns --bench forward_flood`.
//!
//! skydns with `-nameservers` pointing at a dead upstream on loopback (a UDP socket and a TCP
//! listener that never answer) under a 15 s dnsperf flood of names outside the domain, while
//! a probe asks for an authoritative name 20 times a second. Prints the peak RSS of skydns
//! (VmHWM), the number of log lines it wrote, dnsperf's summary and the share of probes
//! answered. Goals: RSS under 100 MB, under 200 log lines, every probe answered.
//!
//! Needs Debian's `dnsperf`. `SKYDNS_BENCH_BIN` runs another skydns binary (e.g. one built
//! from an older commit) instead of this build's; `SKYDNS_FLOOD_QPS` caps dnsperf's rate
//! (default 10000 queries per second). Everything runs on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use harness::process::{bind_udp_tcp, free_tcp_udp_port, spawn_tied, terminate};
use harness::{DnsClient, EtcdServer, wait_until};
use hickory_proto::rr::RecordType;

const DOMAIN: &str = "staging.example.local.";
const PROBE: &str = "es.staging.example.local.";
const SECONDS: u64 = 15;
const PROBES_PER_SECOND: u64 = 20;

/// A field of /proc/PID/status in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binary =
        std::env::var("SKYDNS_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_skydns").into());
    let qps = std::env::var("SKYDNS_FLOOD_QPS").unwrap_or_else(|_| "10000".into());
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put(
            "/skydns/local/example/staging/es",
            r#"{"host":"10.0.0.1"}"#,
            None,
        )
        .await
        .unwrap();
    // The dead upstream: bound, never read, never accepted.
    let (dead_udp, dead_tcp) = bind_udp_tcp().await;
    let dead = dead_udp.local_addr().unwrap().to_string();

    let port = free_tcp_udp_port();
    let log_path = dir.path().join("skydns.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = Command::new(&binary);
    command
        .args(["-machines", &etcd.endpoint()])
        .args(["-addr", &format!("127.0.0.1:{port}")])
        .args(["-domain", DOMAIN, "-nameservers", &dead])
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut skydns = spawn_tied(command).unwrap();
    let pid = skydns.id();
    let probe_client = DnsClient::new(format!("127.0.0.1:{port}").parse().unwrap())
        .with_timeout(Duration::from_secs(1));
    {
        let probe_client = probe_client.clone();
        wait_until("skydns to answer", Duration::from_secs(60), || {
            let client = probe_client.clone();
            async move { client.udp(PROBE, RecordType::A).await.ok() }
        })
        .await;
    }
    let log_lines_at_start = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .lines()
        .count();

    let queries = dir.path().join("queries");
    let names: Vec<String> = (0..10_000)
        .map(|i| format!("n{i}.flood.example.org A"))
        .collect();
    std::fs::write(&queries, names.join("\n") + "\n").unwrap();

    // The probe: 20 authoritative queries a second, each given 1 s.
    let sent = Arc::new(AtomicU32::new(0));
    let answered = Arc::new(AtomicU32::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let probe = {
        let (sent, answered, stop) = (sent.clone(), answered.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / PROBES_PER_SECOND));
            let mut probes = tokio::task::JoinSet::new();
            while !stop.is_cancelled() {
                tick.tick().await;
                sent.fetch_add(1, Ordering::Relaxed);
                let (client, answered) = (probe_client.clone(), answered.clone());
                probes.spawn(async move {
                    if let Ok(reply) = client.udp(PROBE, RecordType::A).await {
                        if !reply.answers.is_empty() {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            while probes.join_next().await.is_some() {}
        })
    };

    let rate = qps.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("dnsperf")
            .args(["-s", "127.0.0.1", "-p", &port.to_string()])
            .arg("-d")
            .arg(&queries)
            .args([
                "-l",
                &SECONDS.to_string(),
                "-c",
                "10",
                "-q",
                "2000",
                "-t",
                "1",
            ])
            .args(["-Q", &rate])
            .output()
            .expect("run dnsperf (apt-get install dnsperf)")
    })
    .await
    .unwrap();
    stop.cancel();
    probe.await.unwrap();
    // The forwards still running end within their timeouts; then the log is complete.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let peak_rss = status_kib(pid, "VmHWM:");
    let text = String::from_utf8_lossy(&output.stdout);
    let log_lines = std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .lines()
        .count()
        - log_lines_at_start;
    let _ = terminate(&skydns);
    let _ = skydns.wait();
    drop((dead_udp, dead_tcp));

    println!("== forward flood: dead upstream, dnsperf -l {SECONDS} -c 10 -q 2000 -t 1 -Q {qps}");
    println!("binary: {binary}");
    for line in text.lines().filter(|l| {
        let l = l.trim();
        l.starts_with("Queries sent")
            || l.starts_with("Queries completed")
            || l.starts_with("Queries lost")
            || l.starts_with("Response codes")
            || l.starts_with("Queries per second")
    }) {
        println!("dnsperf: {}", line.trim());
    }
    let (sent, answered) = (
        sent.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed),
    );
    println!(
        "peak RSS {:.1} MB   log lines during the flood {log_lines}   authoritative probes answered {answered}/{sent} ({:.1} %)",
        peak_rss as f64 / 1024.0,
        f64::from(answered) * 100.0 / f64::from(sent.max(1)),
    );
}
