//! Benchmark (release build): `cargo bench -p skydns --bench dnsperf`.
//!
//! Prints, for the same names served by skydns (from etcd) and by NSD (from a static zone),
//! the QPS dnsperf measures and their ratio, for three cases: one name with two records,
//! 10,000 names, and 1,000 SRV records under one name (EDNS, truncated). Then the propagation
//! latency (etcd put → first successful answer, p50/p99 over 500 puts), and the RSS and load
//! time with 100,000 records. With `SKYDNS_BENCH_DNSSEC=1` it first compares, over alternating
//! rounds of the first case, skydns without `-dnssec`, with it for queries without DO (signing
//! must not slow them), and with DO (signed on the fly) against NSD serving the same zone
//! signed beforehand by `dnssec-signzone`. Needs Debian's `dnsperf`, `nsd` and, for DNSSEC,
//! `bind9-utils`; everything runs on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, Txn, TxnOp};
use harness::process::{free_tcp_udp_port, spawn_tied, terminate};
use harness::{DnsClient, EtcdServer, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const BIN: &str = env!("CARGO_BIN_EXE_skydns");
const DOMAIN: &str = "staging.example.local.";
const SECONDS: &str = "10";

struct Case {
    title: &'static str,
    /// (relative name, record type, rdata) for the zone file; etcd keys are derived.
    records: Vec<(String, &'static str, String)>,
    /// etcd (key, value) pairs.
    keys: Vec<(String, String)>,
    queries: Vec<String>,
    /// Large answers: queried with EDNS (4096 bytes) and truncated by both servers. (dnsperf
    /// loses TCP replies of this size, so TCP is not used.)
    edns: bool,
}

fn case_two_records() -> Case {
    Case {
        title: "one name, 2 A records",
        records: vec![
            ("elasticsearch-9200".into(), "A", "10.0.0.1".into()),
            ("elasticsearch-9200".into(), "A", "10.0.0.2".into()),
        ],
        keys: vec![
            (
                "/skydns/local/example/staging/elasticsearch-9200/es1".into(),
                r#"{"host":"10.0.0.1","port":9200}"#.into(),
            ),
            (
                "/skydns/local/example/staging/elasticsearch-9200/es2".into(),
                r#"{"host":"10.0.0.2","port":9200}"#.into(),
            ),
        ],
        queries: vec![format!("elasticsearch-9200.{DOMAIN} A")],
        edns: false,
    }
}

fn case_many_names() -> Case {
    let n = 10_000;
    let ip = |i: usize| format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
    Case {
        title: "10,000 names",
        records: (0..n).map(|i| (format!("svc{i}"), "A", ip(i))).collect(),
        keys: (0..n)
            .map(|i| {
                (
                    format!("/skydns/local/example/staging/svc{i}"),
                    format!(r#"{{"host":"{}"}}"#, ip(i)),
                )
            })
            .collect(),
        queries: (0..n).map(|i| format!("svc{i}.{DOMAIN} A")).collect(),
        edns: false,
    }
}

fn case_big_srv() -> Case {
    let n = 1_000;
    let ip = |i: usize| format!("10.9.{}.{}", i / 256, i % 256);
    let mut records: Vec<(String, &'static str, String)> = Vec::new();
    for i in 0..n {
        records.push(("big".into(), "SRV", format!("10 0 80 n{i}.big.{DOMAIN}")));
        records.push((format!("n{i}.big"), "A", ip(i)));
    }
    Case {
        title: "1,000 SRV under one name (EDNS 4096, TC)",
        records,
        keys: (0..n)
            .map(|i| {
                (
                    format!("/skydns/local/example/staging/big/n{i}"),
                    format!(r#"{{"host":"{}","port":80}}"#, ip(i)),
                )
            })
            .collect(),
        queries: vec![format!("big.{DOMAIN} SRV")],
        edns: true,
    }
}

async fn load_keys(client: &mut Client, keys: &[(String, String)]) {
    for chunk in keys.chunks(128) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
            .collect();
        client.txn(Txn::new().and_then(ops)).await.unwrap();
    }
}

async fn clear(client: &mut Client) {
    client
        .delete(
            "/skydns/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
}

fn start_skydns(etcd: &EtcdServer, port: u16) -> Child {
    start_skydns_with(etcd, port, &[])
}

fn start_skydns_with(etcd: &EtcdServer, port: u16, extra: &[&str]) -> Child {
    let mut command = Command::new(BIN);
    command
        .args(extra)
        .args(["-machines", &etcd.endpoint()])
        .args(["-addr", &format!("127.0.0.1:{port}")])
        .args(["-domain", DOMAIN, "-no-rec", "-nameservers", "127.0.0.1:9"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    spawn_tied(command).unwrap()
}

async fn wait_answer(port: u16, name: &str, qtype: RecordType) -> Duration {
    let started = Instant::now();
    let client = DnsClient::new(format!("127.0.0.1:{port}").parse().unwrap())
        .with_timeout(Duration::from_millis(500));
    wait_until("the server to answer", Duration::from_secs(120), || {
        let client = client.clone();
        let name = name.to_owned();
        async move {
            let reply = client.tcp(&name, qtype).await.ok()?;
            (!reply.answers.is_empty()).then_some(())
        }
    })
    .await;
    started.elapsed()
}

fn stop(mut child: Child) {
    let _ = terminate(&child);
    let _ = child.wait();
}

fn start_nsd(dir: &Path, case: &Case, port: u16) -> Child {
    start_nsd_signed(dir, case, port, None)
}

/// NSD serving the case's zone; with `keys`, the zone signed by `dnssec-signzone` with the
/// keys in that directory first.
fn start_nsd_signed(dir: &Path, case: &Case, port: u16, keys: Option<&Path>) -> Child {
    let mut zone = format!(
        "$ORIGIN {DOMAIN}\n$TTL 3600\n@ IN SOA ns.dns hostmaster.skydns.local. 1 28800 7200 604800 60\n@ IN NS ns.dns\nns.dns IN A 127.0.0.1\n"
    );
    for (name, rtype, rdata) in &case.records {
        writeln!(zone, "{name} IN {rtype} {rdata}").unwrap();
    }
    std::fs::write(dir.join("zone"), zone).unwrap();
    let zonefile = match keys {
        None => "zone",
        Some(keys) => {
            let status = Command::new("dnssec-signzone")
                .arg("-K")
                .arg(keys)
                // -d: the dsset file goes beside the zone, not into the working directory.
                .arg("-d")
                .arg(dir)
                .args(["-S", "-P", "-3", "-", "-o", DOMAIN, "-f"])
                .arg(dir.join("zone.signed"))
                .arg(dir.join("zone"))
                .stdout(Stdio::null())
                .status()
                .expect("run dnssec-signzone (apt-get install bind9-utils)");
            assert!(status.success(), "dnssec-signzone failed");
            "zone.signed"
        }
    };
    let d = dir.display();
    let conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  chroot: \"\"\n  \
         zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  xfrdfile: \"{d}/xfrd.state\"\n  \
         zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  server-count: 2\n  reuseport: yes\n  \
         rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n  verbosity: 0\n\
         remote-control:\n  control-enable: no\n\
         zone:\n  name: \"{DOMAIN}\"\n  zonefile: \"{d}/{zonefile}\"\n"
    );
    std::fs::write(dir.join("nsd.conf"), conf).unwrap();
    let mut command = Command::new("nsd");
    command
        .args(["-d", "-c"])
        .arg(dir.join("nsd.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    spawn_tied(command).expect("start nsd (apt-get install nsd)")
}

fn dnsperf(port: u16, queries: &Path, edns: bool) -> f64 {
    dnsperf_with(port, queries, if edns { &["-e"] } else { &[] })
}

fn dnsperf_with(port: u16, queries: &Path, flags: &[&str]) -> f64 {
    let output = Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", &port.to_string()])
        .arg("-d")
        .arg(queries)
        .args(["-l", SECONDS, "-c", "10", "-q", "200"])
        .args(flags)
        .output()
        .expect("run dnsperf (apt-get install dnsperf)");
    let text = String::from_utf8_lossy(&output.stdout);
    let qps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no QPS in dnsperf output:\n{text}"));
    if qps == 0.0 {
        eprintln!(
            "dnsperf completed no query:\n{text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    qps
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;

    if std::env::var_os("SKYDNS_BENCH_DNSSEC").is_some() {
        dnssec(&etcd, &mut client, dir.path()).await;
    }

    println!("== throughput: dnsperf -c 10 -l {SECONDS}, same query file for both servers");
    // SKYDNS_BENCH_CASES=13 runs cases 1 and 3 only; SKYDNS_BENCH_ONLY_THROUGHPUT skips the rest.
    let selected = std::env::var("SKYDNS_BENCH_CASES").unwrap_or_else(|_| "123".into());
    let cases = [case_two_records(), case_many_names(), case_big_srv()];
    for (number, case) in ('1'..='3').zip(cases) {
        if !selected.contains(number) {
            continue;
        }
        clear(&mut client).await;
        load_keys(&mut client, &case.keys).await;
        let queries = dir.path().join("queries");
        std::fs::write(&queries, case.queries.join("\n") + "\n").unwrap();
        let first = case.queries[0]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        let qtype = if case.edns {
            RecordType::SRV
        } else {
            RecordType::A
        };

        let port = free_tcp_udp_port();
        let skydns = start_skydns(&etcd, port);
        wait_answer(port, &first, qtype).await;
        let skydns_qps = dnsperf(port, &queries, case.edns);
        stop(skydns);

        let nsd_dir = dir.path().join(format!("nsd-{port}"));
        std::fs::create_dir_all(&nsd_dir).unwrap();
        let nsd_port = free_tcp_udp_port();
        let nsd = start_nsd(&nsd_dir, &case, nsd_port);
        wait_answer(nsd_port, &first, qtype).await;
        let nsd_qps = dnsperf(nsd_port, &queries, case.edns);
        stop(nsd);

        println!(
            "{:<42} skydns {:>9.0} QPS   nsd {:>9.0} QPS   ratio {:.2}",
            case.title,
            skydns_qps,
            nsd_qps,
            skydns_qps / nsd_qps
        );
    }

    if std::env::var_os("SKYDNS_BENCH_ONLY_THROUGHPUT").is_some() {
        return;
    }
    println!("== propagation: etcd put -> first successful answer, 500 puts");
    clear(&mut client).await;
    let port = free_tcp_udp_port();
    let skydns = start_skydns(&etcd, port);
    load_keys(
        &mut client,
        &[(
            "/skydns/local/example/staging/ready".into(),
            r#"{"host":"10.0.0.1"}"#.into(),
        )],
    )
    .await;
    wait_answer(port, &format!("ready.{DOMAIN}"), RecordType::A).await;
    let dns = DnsClient::new(format!("127.0.0.1:{port}").parse().unwrap())
        .with_timeout(Duration::from_secs(2));
    let mut latencies = Vec::with_capacity(500);
    for i in 0..500 {
        let name = format!("p{i}.{DOMAIN}");
        let started = Instant::now();
        client
            .put(
                format!("/skydns/local/example/staging/p{i}"),
                r#"{"host":"10.1.0.1"}"#,
                None,
            )
            .await
            .unwrap();
        loop {
            let reply = dns.udp(&name, RecordType::A).await.unwrap();
            if reply.metadata.response_code == ResponseCode::NoError && !reply.answers.is_empty() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "put {i} never visible"
            );
        }
        latencies.push(started.elapsed());
    }
    stop(skydns);
    latencies.sort();
    println!(
        "p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );

    println!("== scale: 100,000 records");
    clear(&mut client).await;
    let keys: Vec<(String, String)> = (0..100_000)
        .map(|i: usize| {
            (
                format!("/skydns/local/example/staging/s{}/i{i}", i % 1000),
                format!(
                    r#"{{"host":"10.{}.{}.{}","port":80}}"#,
                    i / 65536,
                    (i / 256) % 256,
                    i % 256
                ),
            )
        })
        .collect();
    load_keys(&mut client, &keys).await;
    let port = free_tcp_udp_port();
    let started = Instant::now();
    let skydns = start_skydns(&etcd, port);
    wait_answer(port, &format!("i99999.s999.{DOMAIN}"), RecordType::A).await;
    let load = started.elapsed();
    let rss = rss_kib(skydns.id());
    stop(skydns);
    println!(
        "start to first answer {:.2} s   RSS {:.1} MB",
        load.as_secs_f64(),
        rss as f64 / 1024.0
    );
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

/// Case 1 in alternating rounds: skydns plain, with `-dnssec` (no DO, then DO), and NSD with
/// the zone signed beforehand (DO).
async fn dnssec(etcd: &EtcdServer, client: &mut Client, dir: &Path) {
    const ROUNDS: usize = 3;
    println!(
        "== DNSSEC, one name with 2 A records: {ROUNDS} alternating rounds of dnsperf -l {SECONDS}"
    );
    let case = case_two_records();
    clear(client).await;
    load_keys(client, &case.keys).await;
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let output = Command::new("dnssec-keygen")
        .arg("-K")
        .arg(&keys)
        .args(["-a", "ECDSAP256SHA256", "-n", "ZONE", DOMAIN])
        .output()
        .expect("run dnssec-keygen (apt-get install bind9-utils)");
    let base = keys.join(String::from_utf8_lossy(&output.stdout).trim());
    let base = base.to_string_lossy().into_owned();
    let queries = dir.join("dnssec-queries");
    std::fs::write(&queries, case.queries.join("\n") + "\n").unwrap();
    let name = format!("elasticsearch-9200.{DOMAIN}");
    let mut figures: [Vec<f64>; 4] = Default::default();
    for round in 0..ROUNDS {
        for (i, (args, flags)) in [
            (&[][..], &[][..]),
            (&["-dnssec", base.as_str()][..], &[][..]),
            (&["-dnssec", base.as_str()][..], &["-D"][..]),
        ]
        .into_iter()
        .enumerate()
        {
            let port = free_tcp_udp_port();
            let skydns = start_skydns_with(etcd, port, args);
            wait_answer(port, &name, RecordType::A).await;
            figures[i].push(dnsperf_with(port, &queries, flags));
            stop(skydns);
        }
        let nsd_dir = dir.join(format!("nsd-signed-{round}"));
        std::fs::create_dir_all(&nsd_dir).unwrap();
        let port = free_tcp_udp_port();
        let nsd = start_nsd_signed(&nsd_dir, &case, port, Some(&keys));
        wait_answer(port, &name, RecordType::A).await;
        figures[3].push(dnsperf_with(port, &queries, &["-D"]));
        stop(nsd);
    }
    let labels = [
        "skydns, no -dnssec",
        "skydns -dnssec, queries without DO",
        "skydns -dnssec, DO (signed on the fly)",
        "nsd, pre-signed zone, DO",
    ];
    for (label, values) in labels.iter().zip(&figures) {
        let (lo, hi) = min_max(values);
        println!("{label:<42} {lo:>9.0}–{hi:.0} QPS");
    }
    let ratio = |a: usize, b: usize| {
        let pairs: Vec<f64> = figures[a]
            .iter()
            .zip(&figures[b])
            .map(|(x, y)| x / y)
            .collect();
        min_max(&pairs)
    };
    let (lo, hi) = ratio(1, 0);
    println!("unsigned queries with -dnssec / without: {lo:.2}–{hi:.2} (per round)");
    let (lo, hi) = ratio(2, 3);
    println!("signed on the fly / nsd pre-signed:      {lo:.2}–{hi:.2} (per round)");
}
