//! Registration benchmark of the real (release) binary against the host's Docker and a real
//! etcd: latency from Docker's `start` event to the key in etcd (p50/p99 over 200 containers),
//! idle RSS with 100 registered containers, and a churn of 300 containers started and stopped in
//! parallel bursts, after which etcd must hold exactly the running containers' records.
//!
//! Run with `cargo bench -p registrator --bench registration`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptions;
use etcd_client::{EventType, GetOptions, WatchOptions};
use futures_util::StreamExt;
use harness::process::spawn_tied;
use harness::{ContainerSpec, EtcdServer, TestContainer, TestDocker};

const LATENCY_CONTAINERS: usize = 200;
const RSS_AT: usize = 100;
const CHURN_CONTAINERS: usize = 300;
const CHURN_BURST: usize = 30;
const DOMAIN_KEY: &str = "/skydns/local/example/bench";
const SETTLE: Duration = Duration::from_secs(60);

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Names (the second-to-last key segment) → ids under the bench domain.
async fn bench_records(client: &mut etcd_client::Client, name: &str) -> BTreeSet<String> {
    let prefix = format!("{DOMAIN_KEY}/{name}/");
    let response = client
        .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    response
        .kvs()
        .iter()
        .filter_map(|kv| kv.key_str().ok())
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let docker_host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_registrator"));
    command
        .args(["-ip", "127.0.0.1", "-ttl-refresh", "30", "-ttl", "40"])
        .arg(format!(
            "skydns2://{}/bench.example.local",
            etcd.host_port()
        ))
        .env("DOCKER_HOST", &docker_host)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap());
    let mut registrator = spawn_tied(command).expect("start registrator");
    let pid = registrator.id();

    // Docker's start events of our containers (by index label) and etcd's puts (by service id).
    let run = format!("{}", std::process::id());
    let started: Arc<Mutex<HashMap<usize, i64>>> = Arc::default();
    let visible: Arc<Mutex<HashMap<usize, i64>>> = Arc::default();
    let filters = HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        ("event".to_owned(), vec!["start".to_owned()]),
        ("label".to_owned(), vec![format!("bench.run={run}")]),
    ]);
    let mut events = Box::pin(docker.docker().events(Some(EventsOptions {
        since: None,
        until: None,
        filters: Some(filters),
    })));
    let started_writer = started.clone();
    tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            let index = event
                .actor
                .and_then(|a| a.attributes)
                .and_then(|a| a.get("bench.index").cloned())
                .and_then(|i| i.parse().ok());
            if let (Some(index), Some(time)) = (index, event.time_nano) {
                started_writer.lock().unwrap().insert(index, time);
            }
        }
    });
    let mut watch = client
        .watch(
            format!("{DOMAIN_KEY}/bench-lat/"),
            Some(WatchOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let visible_writer = visible.clone();
    tokio::spawn(async move {
        while let Ok(Some(response)) = watch.message().await {
            let at = now_nanos();
            for event in response.events() {
                if event.event_type() != EventType::Put {
                    continue;
                }
                let index = event
                    .kv()
                    .and_then(|kv| kv.key_str().ok())
                    .and_then(|k| k.rsplit('/').next())
                    .and_then(|id| id.strip_prefix('b'))
                    .and_then(|i| i.parse().ok());
                if let Some(index) = index {
                    visible_writer.lock().unwrap().entry(index).or_insert(at);
                }
            }
        }
    });

    // Latency, one container at a time (idle RSS measured halfway, at 100 registered).
    let mut containers: Vec<TestContainer> = Vec::new();
    let mut rss_at_100 = 0;
    for index in 0..LATENCY_CONTAINERS {
        let container = docker
            .run(
                ContainerSpec::idle()
                    .publish(80)
                    .env("SERVICE_NAME", "bench-lat")
                    .env("SERVICE_ID", &format!("b{index}"))
                    .label("bench.run", &run)
                    .label("bench.index", &index.to_string()),
            )
            .await;
        containers.push(container);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !visible.lock().unwrap().contains_key(&index) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "container {index} not registered"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if index + 1 == RSS_AT {
            tokio::time::sleep(Duration::from_secs(3)).await;
            rss_at_100 = rss_kib(pid);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies: Vec<f64> = {
        let started = started.lock().unwrap();
        let visible = visible.lock().unwrap();
        (0..LATENCY_CONTAINERS)
            .filter_map(|i| Some((visible.get(&i)? - started.get(&i)?) as f64 / 1e6))
            .collect()
    };
    latencies.sort_by(f64::total_cmp);
    println!(
        "registration latency (Docker start event -> key in etcd), {} containers: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    println!(
        "idle RSS with {RSS_AT} registered containers: {:.1} MiB",
        rss_at_100 as f64 / 1024.0
    );
    drop_all(containers).await;

    // Churn: bursts started in parallel, every other container of a burst stopped in parallel.
    let mut running: Vec<TestContainer> = Vec::new();
    let mut stopped: Vec<TestContainer> = Vec::new();
    for burst in 0..CHURN_CONTAINERS / CHURN_BURST {
        let mut starts = tokio::task::JoinSet::new();
        for i in 0..CHURN_BURST {
            let docker = docker.clone();
            let id = format!("c{}", burst * CHURN_BURST + i);
            starts.spawn(async move {
                docker
                    .run(
                        ContainerSpec::idle()
                            .publish(80)
                            .env("SERVICE_NAME", "bench-churn")
                            .env("SERVICE_ID", &id),
                    )
                    .await
            });
        }
        let mut burst_containers = starts.join_all().await;
        let to_stop: Vec<TestContainer> = (0..burst_containers.len() / 2)
            .map(|i| burst_containers.swap_remove(i))
            .collect();
        let mut stops = tokio::task::JoinSet::new();
        for container in to_stop {
            stops.spawn(async move {
                container.stop(Duration::from_secs(2)).await;
                container
            });
        }
        stopped.extend(stops.join_all().await);
        running.extend(burst_containers);
    }
    let mut want = BTreeSet::new();
    for container in &running {
        let inspect = container.inspect().await;
        let id = inspect
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .find_map(|e| e.strip_prefix("SERVICE_ID=").map(str::to_owned))
            .unwrap_or_default();
        want.insert(id);
    }
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut have = bench_records(&mut client, "bench-churn").await;
    while have != want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        have = bench_records(&mut client, "bench-churn").await;
    }
    let stale = have.difference(&want).count();
    let missing = want.difference(&have).count();
    println!(
        "churn: {CHURN_CONTAINERS} containers in bursts of {CHURN_BURST}, {} running, {} stopped: etcd has {} records, {stale} stale, {missing} missing",
        running.len(),
        stopped.len(),
        have.len()
    );
    drop_all(running).await;
    drop_all(stopped).await;
    let _ = registrator.kill();
    let _ = registrator.wait();
}

/// Removes containers in parallel (each handle's drop runs `docker rm -f`).
async fn drop_all(containers: Vec<TestContainer>) {
    let mut removals = tokio::task::JoinSet::new();
    for container in containers {
        removals.spawn_blocking(move || drop(container));
    }
    removals.join_all().await;
}
