//! Several Docker hosts sharing one 3-member etcd, for the cluster and fault suite
//! (`tests/tests/cluster.rs`).
//!
//! Each host is an extra `dockerd` ([`crate::hosts::DockerDaemon`]) with, in front of every etcd
//! member, a TCP proxy of its own ([`crate::etcd_proxy::TcpProxy`]) so that a test can cut that
//! host from one member or from all of them. On each host run our `registrator` (pointed at the
//! host's daemon with `DOCKER_HOST=unix://…`, registering the host's own loopback address
//! `127.0.<10+i>.1` with `-ttl`) and our `skydns`, both given all three etcd endpoints through
//! the host's proxies. They run as processes from the workspace's binaries, not as containers
//! from our images: that starts in milliseconds instead of loading three images into every
//! daemon, a test can SIGKILL and restart one directly by PID, and their logs are plain files.
//!
//! [`Workload`] starts and stops busybox containers with random sets of ports published on the
//! host's loopback address and `SERVICE_<port>_NAME` metadata. The checks compare whole sets:
//! the records that should exist (derived from the containers Docker says are running on every
//! host), the records under the domain's etcd prefix, and what each host's skydns answers for
//! every name the workload ever used. [`Probe`] queries names continuously and records the
//! longest time one went unanswered. [`Row`] and [`print_table`] make the suite's table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use etcd_client::GetOptions;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::docker::TEST_IMAGE;
use crate::etcd_proxy::TcpProxy;
use crate::hosts::DockerDaemon;
use crate::process::{free_tcp_udp_port, spawn_tied, workspace_binary};
use crate::{DnsClient, EtcdCluster, TestDocker};

/// The zone every host registers in and every skydns serves.
pub const DOMAIN: &str = "cluster.local";
/// etcd prefix of [`DOMAIN`]'s records.
pub const PREFIX: &str = "/skydns/local/cluster/";
/// registrator's `-ttl` (s).
pub const TTL: u64 = 8;
/// registrator's `-ttl-refresh` (s).
pub const TTL_REFRESH: u64 = 2;
/// Container ports the workload picks from; each is registered as `svc<port>`.
pub const PORTS: [u16; 5] = [80, 443, 5000, 8080, 9000];
/// Label on every workload container.
pub const WORKLOAD_LABEL: &str = "io.harness.cluster";
/// Label prefix holding a container port's service name: `io.harness.svc.<port>=<name>`.
const SVC_LABEL: &str = "io.harness.svc.";

/// One registered service as the checks compare them: name, address and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Record {
    pub name: String,
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// A workspace binary run as a child process that a test can SIGKILL and restart; SIGTERMed
/// and reaped when dropped, its log printed if the test panics.
#[derive(Debug)]
pub struct Component {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Component {
    /// Starts `binary` with `args` and `env`, logging to `log`.
    pub fn start(
        binary: &str,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
    ) -> Self {
        let mut component = Self {
            name: binary.to_owned(),
            args,
            env,
            log,
            child: None,
        };
        component.spawn();
        component
    }

    fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open a component log");
        let log_err = log.try_clone().expect("clone a component log handle");
        let mut command = Command::new(workspace_binary(&self.name));
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = spawn_tied(command).unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(child);
    }

    /// SIGKILL, as a crash: nothing is cleaned up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again with the same arguments.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        self.spawn();
    }

    /// Panics, showing the log, if the process exited.
    pub fn assert_running(&mut self) {
        let exited = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            panic!("{} exited with {status}:\n{}", self.name, self.log());
        }
        assert!(self.child.is_some(), "{} is not running", self.name);
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = crate::process::terminate(&child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- {} log {} (tail) ----\n{}",
                self.name,
                self.log.display(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

/// One Docker host: its daemon, its proxies to the etcd members, its registrator and skydns.
#[derive(Debug)]
pub struct Host {
    pub index: usize,
    /// The loopback address this host publishes ports on and registers.
    pub ip: Ipv4Addr,
    pub registrator: Component,
    pub skydns: Component,
    /// Ships every container's output to the cluster's syslog receiver, if started.
    pub logspout: Option<Component>,
    /// logspout's HTTP address (`/metrics`), if started.
    pub logspout_http: Option<SocketAddr>,
    /// This host's skydns.
    pub dns: DnsClient,
    /// skydns's HTTP address (`/health`, `/metrics`).
    pub skydns_http: SocketAddr,
    /// One per etcd member, in member order.
    pub proxies: Vec<TcpProxy>,
    pub daemon: DockerDaemon,
}

impl Host {
    /// Cuts this host from every etcd member.
    pub fn partition(&self) {
        for proxy in &self.proxies {
            proxy.cut();
        }
    }

    /// Restores every link to etcd.
    pub fn heal(&self) {
        for proxy in &self.proxies {
            proxy.restore();
        }
    }

    /// The sum of logspout's metric lines starting with `prefix`; `None` without logspout or
    /// while `/metrics` does not answer 200.
    pub async fn logspout_metric(&self, prefix: &str) -> Option<f64> {
        let (status, body) = crate::http::http_get(self.logspout_http?, "/metrics")
            .await
            .ok()?;
        (status == 200).then(|| crate::http::metric_sum(&body, prefix))
    }

    /// skydns's `/health` (status and body) and its `skydns_index_age_seconds`; `None` while
    /// either does not answer.
    pub async fn skydns_health(&self) -> Option<(u16, String, f64)> {
        let (status, body) = crate::http::http_get(self.skydns_http, "/health")
            .await
            .ok()?;
        let (_, metrics) = crate::http::http_get(self.skydns_http, "/metrics")
            .await
            .ok()?;
        let age = crate::http::metric_sum(&metrics, "skydns_index_age_seconds");
        Some((status, body, age))
    }
}

/// The whole cluster; dropped → components stopped, daemons and etcd removed (component logs
/// too, unless `HARNESS_KEEP_LOGS` is set).
#[derive(Debug)]
pub struct Cluster {
    pub hosts: Vec<Host>,
    pub etcd: EtcdCluster,
    /// Where every host's logspout ships (syslog over TCP), if started: the `syslog-sink`
    /// binary as a process, so that a test can SIGKILL it mid-stream.
    pub syslog: Option<crate::sink::SinkProcess>,
    logs: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::env::var_os("HARNESS_KEEP_LOGS").is_some() {
            self.logs.disable_cleanup(true);
        }
    }
}

impl Cluster {
    /// A 3-member etcd and `hosts` Docker hosts, each with registrator and skydns running and
    /// answering.
    pub async fn start(hosts: usize) -> Self {
        Self::start_with(hosts, false).await
    }

    /// As [`start`](Self::start), with `logspout` on every host too (`BACKLOG=true`, one
    /// `syslog+tcp://` route to [`Cluster::syslog`]).
    pub async fn start_with(hosts: usize, logspout: bool) -> Self {
        Self::start_with_env(hosts, logspout, |_| Vec::new()).await
    }

    /// As [`start_with`](Self::start_with), host `i`'s logspout also given `logspout_env(i)`
    /// (e.g. a small `LOGSPOUT_QUEUE_SIZE`).
    pub async fn start_with_env(
        hosts: usize,
        logspout: bool,
        logspout_env: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Self {
        let syslog = if logspout {
            Some(crate::sink::SinkProcess::start().await)
        } else {
            None
        };
        let etcd = EtcdCluster::start(3).await;
        let mut client = etcd.client().await;
        client
            .put(
                "/skydns/config",
                format!(r#"{{"domain":"{DOMAIN}."}}"#),
                None,
            )
            .await
            .expect("write /skydns/config");
        // Builds the busybox image in the main daemon if missing, to be loaded into each host.
        TestDocker::connect().await;
        let logs = tempfile::Builder::new()
            .prefix("harness-cluster-")
            .tempdir()
            .expect("a directory for component logs");
        if std::env::var_os("HARNESS_KEEP_LOGS").is_some() {
            eprintln!("component logs kept in {}", logs.path().display());
        }
        let daemons =
            futures_util::future::join_all((0..hosts).map(|_| DockerDaemon::start(&[TEST_IMAGE])))
                .await;
        let mut list = Vec::new();
        // Every host's proxies first: they bind ephemeral ports, which must not take a port
        // picked below for a component that has not bound it yet (seen once: a skydns HTTP
        // port taken by the next host's proxy).
        let all_proxies: Vec<Vec<TcpProxy>> = (0..hosts)
            .map(|_| {
                (0..etcd.size())
                    .map(|m| TcpProxy::start(etcd.member_addr(m)))
                    .collect()
            })
            .collect();
        for ((index, daemon), proxies) in daemons.into_iter().enumerate().zip(all_proxies) {
            let host_octet = u8::try_from(10 + index).expect("fewer than 240 hosts");
            let ip = Ipv4Addr::new(127, 0, host_octet, 1);
            let hostports: Vec<String> = proxies.iter().map(|p| p.addr().to_string()).collect();
            let machines: Vec<String> = hostports.iter().map(|a| format!("http://{a}")).collect();
            let registrator = Component::start(
                "registrator",
                vec![
                    "-ip".into(),
                    ip.to_string(),
                    "-ttl".into(),
                    TTL.to_string(),
                    "-ttl-refresh".into(),
                    TTL_REFRESH.to_string(),
                    format!("skydns2://{}/{DOMAIN}", hostports.join(",")),
                ],
                vec![("DOCKER_HOST".into(), daemon.docker_host())],
                logs.path().join(format!("registrator-{index}.log")),
            );
            let dns_addr = SocketAddr::from(([127, 0, 0, 1], free_tcp_udp_port()));
            let skydns_http = SocketAddr::from(([127, 0, 0, 1], free_tcp_udp_port()));
            let skydns = Component::start(
                "skydns",
                vec!["-no-rec".into()],
                vec![
                    ("ETCD_MACHINES".into(), machines.join(",")),
                    ("SKYDNS_ADDR".into(), dns_addr.to_string()),
                    ("SKYDNS_NAMESERVERS".into(), "127.0.0.1:9".into()),
                    ("PROMETHEUS_PORT".into(), skydns_http.port().to_string()),
                    ("SKYDNS_METRICS_IP".into(), "127.0.0.1".into()),
                ],
                logs.path().join(format!("skydns-{index}.log")),
            );
            let logspout_http = syslog
                .as_ref()
                .map(|_| SocketAddr::from(([127, 0, 0, 1], free_tcp_udp_port())));
            let logspout = syslog.as_ref().zip(logspout_http).map(|(receiver, http)| {
                let mut env = vec![
                    ("DOCKER_HOST".into(), daemon.docker_host()),
                    ("PORT".into(), http.port().to_string()),
                    ("HTTP_BIND_ADDRESS".into(), "127.0.0.1".into()),
                    ("BACKLOG".into(), "true".into()),
                ];
                env.extend(logspout_env(index));
                Component::start(
                    "logspout",
                    vec![format!("syslog+tcp://{}", receiver.addr())],
                    env,
                    logs.path().join(format!("logspout-{index}.log")),
                )
            });
            list.push(Host {
                index,
                ip,
                registrator,
                skydns,
                logspout,
                logspout_http,
                dns: DnsClient::new(dns_addr).with_timeout(Duration::from_millis(500)),
                skydns_http,
                proxies,
                daemon,
            });
        }
        let cluster = Self {
            hosts: list,
            etcd,
            syslog,
            logs,
        };
        for host in &cluster.hosts {
            crate::wait_until(
                "skydns to answer its SOA",
                Duration::from_secs(30),
                || async {
                    let reply = host
                        .dns
                        .udp(&format!("{DOMAIN}."), RecordType::SOA)
                        .await
                        .ok()?;
                    (reply.metadata.response_code == ResponseCode::NoError).then_some(())
                },
            )
            .await;
        }
        cluster
    }

    /// Panics if any registrator or skydns exited.
    pub fn assert_running(&mut self) {
        for host in &mut self.hosts {
            host.registrator.assert_running();
            host.skydns.assert_running();
            if let Some(logspout) = &mut host.logspout {
                logspout.assert_running();
            }
        }
    }

    /// The records that should exist: every published port of every running workload
    /// container, as Docker reports them on each host.
    pub async fn expected(&self) -> BTreeMap<Record, usize> {
        let mut expected = BTreeMap::new();
        for host in &self.hosts {
            for record in running_records(host).await {
                *expected.entry(record).or_insert(0) += 1;
            }
        }
        expected
    }

    /// The records under [`PREFIX`] in etcd (`None` while etcd cannot answer).
    pub async fn in_etcd(&self) -> Option<BTreeMap<Record, usize>> {
        let mut settings = self.etcd.settings();
        settings.connect_timeout = Duration::from_secs(1);
        settings.request_timeout = Duration::from_secs(2);
        let mut client = settings.connect().await.ok()?;
        let response = client
            .get(PREFIX, Some(GetOptions::new().with_prefix()))
            .await
            .ok()?;
        let mut records = BTreeMap::new();
        for kv in response.kvs() {
            let key = kv.key_str().unwrap_or_default();
            let name = key
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_default()
                .to_owned();
            let value: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
            let ip = value["host"].as_str().and_then(|h| h.parse().ok());
            let port = value["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            let record = match (ip, port) {
                (Some(ip), Some(port)) => Record { name, ip, port },
                // An unreadable value counts as stale: it matches nothing expected.
                _ => Record {
                    name: format!("unreadable:{key}"),
                    ip: Ipv4Addr::UNSPECIFIED,
                    port: 0,
                },
            };
            *records.entry(record).or_insert(0) += 1;
        }
        Some(records)
    }

    /// Every name the workload may have registered: the `svc<port>` names and one stable name
    /// per host.
    pub fn all_names(&self) -> Vec<String> {
        let mut names: Vec<String> = PORTS.iter().map(|p| format!("svc{p}")).collect();
        names.extend((0..self.hosts.len()).map(stable_name));
        names
    }

    /// Compares the whole picture once: (missing, stale) between what should exist and etcd,
    /// plus, for every host's skydns and every name, SRV answers (address, port) missing or extra.
    pub async fn compare(&self) -> Comparison {
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        self.compare_via(&all).await
    }

    /// As [`compare`](Self::compare), asking only the skydns of `dns_hosts`.
    pub async fn compare_via(&self, dns_hosts: &[usize]) -> Comparison {
        let expected = self.expected().await;
        let Some(actual) = self.in_etcd().await else {
            return Comparison {
                etcd_missing: expected.values().sum(),
                etcd_stale: 0,
                dns_missing: 0,
                dns_stale: 0,
                etcd_answered: false,
                dns_by_host: Vec::new(),
            };
        };
        let (etcd_missing, etcd_stale) = diff(&expected, &actual);
        let mut wanted_ports: HashMap<String, BTreeMap<(Ipv4Addr, u16), usize>> = HashMap::new();
        for (record, count) in &expected {
            *wanted_ports
                .entry(record.name.clone())
                .or_default()
                .entry((record.ip, record.port))
                .or_insert(0) += count;
        }
        let (mut dns_missing, mut dns_stale) = (0, 0);
        let mut dns_by_host = Vec::new();
        for host in self.hosts.iter().filter(|h| dns_hosts.contains(&h.index)) {
            let before = (dns_missing, dns_stale);
            for name in self.all_names() {
                let wanted = wanted_ports.get(&name).cloned().unwrap_or_default();
                let got = srv_targets(&host.dns, &name).await;
                match got {
                    Some(got) => {
                        let (missing, stale) = diff(&wanted, &got);
                        dns_missing += missing;
                        dns_stale += stale;
                    }
                    None => dns_missing += wanted.values().sum::<usize>(),
                }
            }
            dns_by_host.push((dns_missing - before.0, dns_stale - before.1));
        }
        Comparison {
            etcd_missing,
            etcd_stale,
            dns_missing,
            dns_stale,
            etcd_answered: true,
            dns_by_host,
        }
    }

    /// Waits until etcd and every skydns equal what should exist; returns when the last
    /// comparison started and what it found (not converged if `deadline` passed first).
    pub async fn converge(&self, deadline: Duration) -> (Instant, Comparison) {
        let all: Vec<usize> = (0..self.hosts.len()).collect();
        self.converge_via(deadline, &all).await
    }

    /// As [`converge`](Self::converge), asking only the skydns of `dns_hosts`.
    pub async fn converge_via(
        &self,
        deadline: Duration,
        dns_hosts: &[usize],
    ) -> (Instant, Comparison) {
        let start = Instant::now();
        let mut last = None;
        loop {
            // A comparison takes a while (Docker, etcd and every DNS answer): the time it
            // started is when what it saw was true.
            let taken = Instant::now();
            let comparison = self.compare_via(dns_hosts).await;
            if last.as_ref() != Some(&comparison) {
                eprintln!("  after {:?}: {comparison:?}", taken - start);
                last = Some(comparison.clone());
            }
            if comparison.converged() || start.elapsed() > deadline {
                return (taken, comparison);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Cluster {
    /// Log lines (lost, duplicated) at the syslog receiver. Every workload container prints
    /// `seq 0`, `seq 1`, …: a line is lost if a later one of its container arrived but it did
    /// not, or if a still-running container printed it (its Docker log has it) and it has not
    /// arrived within `deadline`; duplicated if it arrived more than once.
    pub async fn log_figures(&self, deadline: Duration) -> (usize, usize) {
        let Some(receiver) = &self.syslog else {
            return (0, 0);
        };
        let mut printed: HashMap<String, u64> = HashMap::new();
        for host in &self.hosts {
            for (name, last) in last_seq_printed(host).await {
                printed.insert(name, last);
            }
        }
        let start = Instant::now();
        loop {
            let mut received: HashMap<String, BTreeMap<u64, usize>> = HashMap::new();
            for message in receiver.messages() {
                let (Some(name), Some(seq)) = (
                    message.appname.clone(),
                    message
                        .msg
                        .trim()
                        .strip_prefix("seq ")
                        .and_then(|n| n.parse::<u64>().ok()),
                ) else {
                    continue;
                };
                *received.entry(name).or_default().entry(seq).or_insert(0) += 1;
            }
            let mut lost = 0;
            let mut duplicated = 0;
            let names: BTreeSet<&String> = received.keys().chain(printed.keys()).collect();
            for name in names {
                let got = received.get(name).cloned().unwrap_or_default();
                let seen_last = got.keys().next_back().copied();
                let last = match (seen_last, printed.get(name).copied()) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                if let Some(last) = last {
                    lost += (0..=last).filter(|n| !got.contains_key(n)).count();
                }
                duplicated += got.values().map(|n| n - 1).sum::<usize>();
            }
            if lost == 0 || start.elapsed() > deadline {
                let lines: usize = received.values().flat_map(|c| c.values()).sum();
                eprintln!(
                    "  log lines: {lines} received from {} containers, {lost} lost, \
                     {duplicated} duplicated",
                    received.len()
                );
                return (lost, duplicated);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One running workload container's log lines at the syslog receiver, from `seq 0` to the last
/// line its Docker log held when [`Cluster::log_tally`] was called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTally {
    pub container: String,
    pub host: usize,
    /// Lines printed (`seq 0` … `seq <printed - 1>`).
    pub printed: u64,
    /// Of those, lines that never arrived.
    pub lost: usize,
    /// Of those, arrivals beyond the first.
    pub duplicated: usize,
}

impl Cluster {
    /// Every `seq` line received so far, per container (the syslog app name): how many times
    /// each arrived.
    pub fn received_seqs(&self) -> HashMap<String, BTreeMap<u64, usize>> {
        let mut received: HashMap<String, BTreeMap<u64, usize>> = HashMap::new();
        let Some(receiver) = &self.syslog else {
            return received;
        };
        for message in receiver.messages() {
            let (Some(name), Some(seq)) = (message.appname.clone(), parse_seq(&message.msg)) else {
                continue;
            };
            *received.entry(name).or_default().entry(seq).or_insert(0) += 1;
        }
        received
    }

    /// The shortest `seq` message received (bytes without framing): a batch of
    /// `BATCH_BYTES` holds at most `BATCH_BYTES / shortest` of them.
    pub fn shortest_seq_message(&self) -> Option<usize> {
        self.syslog
            .as_ref()?
            .messages()
            .iter()
            .filter(|m| parse_seq(&m.msg).is_some())
            .map(|m| m.raw.len())
            .min()
    }

    /// Tallies every running workload container's lines up to the last one its Docker log
    /// holds now: waits (up to `deadline`) until that line or a later one of every container
    /// arrived — a route ships a container's lines in order, so what is missing then stays
    /// missing — and counts the lines missing and the arrivals beyond the first.
    pub async fn log_tally(&self, deadline: Duration) -> Vec<LogTally> {
        let mut printed = Vec::new();
        for host in &self.hosts {
            for (name, last) in last_seq_printed(host).await {
                printed.push((name, host.index, last));
            }
        }
        let start = Instant::now();
        loop {
            let received = self.received_seqs();
            let caught_up = printed.iter().all(|(name, _, last)| {
                received
                    .get(name)
                    .and_then(|seqs| seqs.keys().next_back())
                    .is_some_and(|seen| seen >= last)
            });
            if caught_up || start.elapsed() > deadline {
                if !caught_up {
                    eprintln!("  log tally: not caught up after {deadline:?}");
                }
                return printed
                    .iter()
                    .map(|(name, host, last)| {
                        let got = received.get(name).cloned().unwrap_or_default();
                        LogTally {
                            container: name.clone(),
                            host: *host,
                            printed: last + 1,
                            lost: (0..=*last).filter(|n| !got.contains_key(n)).count(),
                            duplicated: got.range(..=*last).map(|(_, n)| n - 1).sum(),
                        }
                    })
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `n` of a `seq <n>` line.
fn parse_seq(msg: &str) -> Option<u64> {
    msg.trim().strip_prefix("seq ")?.parse().ok()
}

/// For each running workload container of `host`: its name and the last `seq` its Docker log
/// holds.
async fn last_seq_printed(host: &Host) -> Vec<(String, u64)> {
    use futures_util::StreamExt;
    let filters = HashMap::from([
        ("label".to_owned(), vec![WORKLOAD_LABEL.to_owned()]),
        ("status".to_owned(), vec!["running".to_owned()]),
    ]);
    let options = ListContainersOptionsBuilder::new()
        .filters(&filters)
        .build();
    let Ok(containers) = host.daemon.docker().list_containers(Some(options)).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for container in containers {
        let (Some(id), Some(name)) = (
            container.id,
            container
                .names
                .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_owned())),
        ) else {
            continue;
        };
        let options = bollard::query_parameters::LogsOptionsBuilder::new()
            .stdout(true)
            .build();
        let mut stream = host.daemon.docker().logs(&id, Some(options));
        let mut last = None;
        while let Some(Ok(chunk)) = stream.next().await {
            for line in String::from_utf8_lossy(&chunk.into_bytes()).lines() {
                if let Some(n) = line
                    .trim()
                    .strip_prefix("seq ")
                    .and_then(|n| n.parse().ok())
                {
                    last = Some(n);
                }
            }
        }
        if let Some(last) = last {
            out.push((name, last));
        }
    }
    out
}

/// The result of [`Cluster::compare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub etcd_missing: usize,
    pub etcd_stale: usize,
    pub dns_missing: usize,
    pub dns_stale: usize,
    pub etcd_answered: bool,
    /// (missing, stale) in each host's skydns answers.
    pub dns_by_host: Vec<(usize, usize)>,
}

impl Comparison {
    pub fn converged(&self) -> bool {
        self.etcd_answered
            && self.etcd_missing == 0
            && self.etcd_stale == 0
            && self.dns_missing == 0
            && self.dns_stale == 0
    }

    /// Records missing from etcd or from some skydns answer.
    pub fn missing(&self) -> usize {
        self.etcd_missing + self.dns_missing
    }

    /// Records in etcd or in some answer that should not be.
    pub fn stale(&self) -> usize {
        self.etcd_stale + self.dns_stale
    }
}

/// (in `wanted` but not `got`, in `got` but not `wanted`), counting multiplicities.
fn diff<K: Ord>(wanted: &BTreeMap<K, usize>, got: &BTreeMap<K, usize>) -> (usize, usize) {
    let missing = wanted
        .iter()
        .map(|(k, n)| n.saturating_sub(got.get(k).copied().unwrap_or(0)))
        .sum();
    let stale = got
        .iter()
        .map(|(k, n)| n.saturating_sub(wanted.get(k).copied().unwrap_or(0)))
        .sum();
    (missing, stale)
}

/// The stable (never stopped) service name of host `index`.
pub fn stable_name(index: usize) -> String {
    format!("stable-h{index}")
}

/// The (address, port) pairs, with multiplicity, skydns answers for `name` over TCP: the port of
/// each SRV record and the address of its target from the additional section (0.0.0.0 if
/// missing). NXDOMAIN is an empty answer; `None` if it does not answer at all.
pub async fn srv_targets(dns: &DnsClient, name: &str) -> Option<BTreeMap<(Ipv4Addr, u16), usize>> {
    let reply = dns
        .tcp(&format!("{name}.{DOMAIN}."), RecordType::SRV)
        .await
        .ok()?;
    let code = reply.metadata.response_code;
    if code != ResponseCode::NoError && code != ResponseCode::NXDomain {
        return None;
    }
    let addresses: HashMap<String, Ipv4Addr> = reply
        .additionals
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some((r.name.to_ascii().to_lowercase(), a.0)),
            _ => None,
        })
        .collect();
    let mut pairs = BTreeMap::new();
    for answer in &reply.answers {
        if let RData::SRV(srv) = &answer.data {
            let target = srv.target.to_ascii().to_lowercase();
            let ip = addresses
                .get(&target)
                .copied()
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            *pairs.entry((ip, srv.port)).or_insert(0) += 1;
        }
    }
    Some(pairs)
}

async fn running_records(host: &Host) -> Vec<Record> {
    let filters = HashMap::from([
        ("label".to_owned(), vec![WORKLOAD_LABEL.to_owned()]),
        ("status".to_owned(), vec!["running".to_owned()]),
    ]);
    let options = ListContainersOptionsBuilder::new()
        .filters(&filters)
        .build();
    let containers = host
        .daemon
        .docker()
        .list_containers(Some(options))
        .await
        .unwrap_or_else(|e| panic!("list containers of host {}: {e}", host.index));
    let mut records = Vec::new();
    for container in containers {
        let labels = container.labels.unwrap_or_default();
        for port in container.ports.unwrap_or_default() {
            let (Some(public), Some(ip)) = (port.public_port, port.ip.as_deref()) else {
                continue;
            };
            let Some(name) = labels.get(&format!("{SVC_LABEL}{}", port.private_port)) else {
                continue;
            };
            let Ok(ip) = ip.parse() else { continue };
            records.push(Record {
                name: name.clone(),
                ip,
                port: public,
            });
        }
    }
    records
}

/// A small deterministic PRNG (xorshift64*), seeded and printed by the test.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n.max(1)).unwrap_or(1)).unwrap_or(0)
    }
}

/// A workload container the generator started.
#[derive(Debug, Clone)]
pub struct Started {
    pub host: usize,
    pub id: String,
    pub name: String,
    /// (service name, container port)
    pub ports: Vec<(String, u16)>,
}

/// Starts and stops workload containers on the hosts.
#[derive(Debug)]
pub struct Workload {
    pub rng: Rng,
    seq: usize,
    /// Containers started and not stopped by the generator (stable ones included).
    pub running: Vec<Started>,
    /// Operations made (starts and stops).
    pub operations: usize,
}

impl Workload {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            seq: 0,
            running: Vec::new(),
            operations: 0,
        }
    }

    /// Starts one container on `host` publishing `ports` (service name, container port) on the
    /// host's loopback address. Docker picks the host ports.
    pub async fn start_with(
        &mut self,
        cluster: &Cluster,
        host: usize,
        ports: Vec<(String, u16)>,
    ) -> Started {
        let script =
            "trap 'exit 0' TERM; i=0; while true; do echo \"seq $i\"; i=$((i+1)); sleep 1; done";
        self.start_script(cluster, host, ports, script).await
    }

    /// Starts one container on `host` without ports that prints `seq 0`, `seq 1`, … in bursts
    /// of `burst` lines every `pause_ms` ms: a steady stream of log lines.
    pub async fn start_writer(
        &mut self,
        cluster: &Cluster,
        host: usize,
        burst: usize,
        pause_ms: u64,
    ) -> Started {
        let script = format!(
            "trap 'exit 0' TERM; i=0; while true; do j=0; while [ $j -lt {burst} ]; do \
             echo \"seq $i\"; i=$((i+1)); j=$((j+1)); done; usleep {}; done",
            pause_ms * 1000
        );
        self.start_script(cluster, host, Vec::new(), &script).await
    }

    async fn start_script(
        &mut self,
        cluster: &Cluster,
        host: usize,
        ports: Vec<(String, u16)>,
        script: &str,
    ) -> Started {
        let h = &cluster.hosts[host];
        self.seq += 1;
        let name = format!("h{host}-c{}", self.seq);
        let mut labels = HashMap::from([
            (WORKLOAD_LABEL.to_owned(), "1".to_owned()),
            (crate::docker::HARNESS_LABEL.to_owned(), "1".to_owned()),
        ]);
        let mut env = Vec::new();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for (service, port) in &ports {
            labels.insert(format!("{SVC_LABEL}{port}"), service.clone());
            env.push(format!("SERVICE_{port}_NAME={service}"));
            bindings.insert(
                format!("{port}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some(h.ip.to_string()),
                    host_port: Some(String::new()),
                }]),
            );
        }
        let body = ContainerCreateBody {
            image: Some(TEST_IMAGE.to_owned()),
            cmd: Some(vec!["sh".into(), "-c".into(), script.to_owned()]),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: Some(bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                network_mode: Some(h.daemon.network().to_owned()),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let docker = h.daemon.docker();
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = docker
            .create_container(Some(options), body)
            .await
            .unwrap_or_else(|e| panic!("create {name} on host {host}: {e}"));
        docker
            .start_container(&created.id, None)
            .await
            .unwrap_or_else(|e| panic!("start {name} on host {host}: {e}"));
        self.operations += 1;
        let started = Started {
            host,
            id: created.id,
            name,
            ports,
        };
        self.running.push(started.clone());
        started
    }

    /// Starts a container with 1–3 random ports on `host`.
    pub async fn start_random(&mut self, cluster: &Cluster, host: usize) -> Started {
        let count = 1 + self.rng.below(3);
        let mut chosen = BTreeSet::new();
        while chosen.len() < count {
            chosen.insert(PORTS[self.rng.below(PORTS.len())]);
        }
        let ports = chosen.into_iter().map(|p| (format!("svc{p}"), p)).collect();
        self.start_with(cluster, host, ports).await
    }

    /// The stable container of every host (port 7000, named [`stable_name`]).
    pub async fn start_stable(&mut self, cluster: &Cluster) {
        for host in 0..cluster.hosts.len() {
            self.start_with(cluster, host, vec![(stable_name(host), 7000)])
                .await;
        }
    }

    /// Stops (SIGKILL and removes) one random non-stable container of `hosts`, returning it
    /// with the records it had; `None` if there is none.
    pub async fn stop_random(
        &mut self,
        cluster: &Cluster,
        hosts: &[usize],
    ) -> Option<(Started, Vec<Record>)> {
        let candidates: Vec<usize> = (0..self.running.len())
            .filter(|&i| hosts.contains(&self.running[i].host))
            .filter(|&i| {
                !self.running[i]
                    .ports
                    .iter()
                    .any(|(n, _)| n.starts_with("stable-"))
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let index = candidates[self.rng.below(candidates.len())];
        let records = records_of(cluster, &self.running[index]).await;
        let stopped = self.running.remove(index);
        let force = RemoveContainerOptionsBuilder::new().force(true).build();
        cluster.hosts[stopped.host]
            .daemon
            .docker()
            .remove_container(&stopped.id, Some(force))
            .await
            .unwrap_or_else(|e| panic!("remove {}: {e}", stopped.name));
        self.operations += 1;
        Some((stopped, records))
    }

    /// One random operation on a random host: a start while fewer than `per_host` containers
    /// run per host on average, else a start or a stop with equal chance.
    pub async fn step(&mut self, cluster: &Cluster, per_host: usize) -> Op {
        let hosts: Vec<usize> = (0..cluster.hosts.len()).collect();
        self.step_on(cluster, &hosts, per_host).await
    }

    /// As [`step`](Self::step), starting only on and stopping only from `hosts`.
    pub async fn step_on(&mut self, cluster: &Cluster, hosts: &[usize], per_host: usize) -> Op {
        let few = self.running.len() < per_host * cluster.hosts.len();
        if !few && self.rng.below(2) == 0 {
            if let Some((container, records)) = self.stop_random(cluster, hosts).await {
                return Op {
                    started: false,
                    container,
                    records,
                };
            }
        }
        let host = hosts[self.rng.below(hosts.len())];
        let container = self.start_random(cluster, host).await;
        let records = records_of(cluster, &container).await;
        Op {
            started: true,
            container,
            records,
        }
    }
}

/// One operation of the workload.
#[derive(Debug, Clone)]
pub struct Op {
    pub started: bool,
    pub container: Started,
    pub records: Vec<Record>,
}

/// Queries names continuously on several servers and records, per (server, name), the longest
/// time between two answers that held at least one SRV record.
#[derive(Debug)]
pub struct Probe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Duration>,
}

impl Probe {
    /// Starts probing `names` (without the domain) on `servers` every 100 ms.
    pub fn start(servers: Vec<DnsClient>, names: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut last_ok: HashMap<(usize, String), Instant> = HashMap::new();
                let mut longest = Duration::ZERO;
                while !stop.load(Ordering::SeqCst) {
                    for (s, server) in servers.iter().enumerate() {
                        for name in &names {
                            let ok = match server
                                .udp(&format!("{name}.{DOMAIN}."), RecordType::SRV)
                                .await
                            {
                                Ok(reply) => {
                                    reply.metadata.response_code == ResponseCode::NoError
                                        && reply
                                            .answers
                                            .iter()
                                            .any(|a| matches!(a.data, RData::SRV(_)))
                                }
                                Err(_) => false,
                            };
                            let now = Instant::now();
                            let last = last_ok.entry((s, name.clone())).or_insert(start);
                            longest = longest.max(now - *last);
                            if ok {
                                *last = now;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                longest
            })
        };
        Self { stop, task }
    }

    /// Stops probing; the longest gap seen (0-ish if every answer came back).
    pub async fn stop(self) -> Duration {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the DNS probe task")
    }
}

/// Waits until skydns on `dns` answers every one of `expected` (`present`) or none of them;
/// the time that took, or `None` after `deadline`.
pub async fn visible(
    dns: &DnsClient,
    expected: &[Record],
    present: bool,
    deadline: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        let mut all = true;
        for record in expected {
            let shown = srv_targets(dns, &record.name)
                .await
                .is_some_and(|pairs| pairs.contains_key(&(record.ip, record.port)));
            if shown != present {
                all = false;
                break;
            }
        }
        if all {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The records a started container should have (its host ports asked of Docker).
pub async fn records_of(cluster: &Cluster, started: &Started) -> Vec<Record> {
    let host = &cluster.hosts[started.host];
    let inspect = host
        .daemon
        .docker()
        .inspect_container(&started.id, None)
        .await
        .unwrap_or_else(|e| panic!("inspect {}: {e}", started.name));
    let ports = inspect
        .network_settings
        .and_then(|n| n.ports)
        .unwrap_or_default();
    started
        .ports
        .iter()
        .filter_map(|(name, port)| {
            let binding = ports
                .get(&format!("{port}/tcp"))?
                .as_ref()?
                .first()?
                .clone();
            Some(Record {
                name: name.clone(),
                ip: host.ip,
                port: binding.host_port?.parse().ok()?,
            })
        })
        .collect()
}

/// One line of the suite's table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub fault: String,
    pub operations: usize,
    pub faults: usize,
    pub missing: usize,
    pub stale: usize,
    /// `None`: logspout is not part of this fault.
    pub lines_lost: Option<usize>,
    pub lines_duplicated: Option<usize>,
    pub longest_gap_ms: u128,
    pub converge_ms: u128,
    /// Slowest start or stop made during the fault to show in DNS, from the operation.
    pub slowest_op_ms: u128,
}

fn rows() -> &'static Mutex<Vec<Row>> {
    static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());
    &ROWS
}

/// Adds a row and prints every row so far (the last test to finish prints the whole table).
pub fn record_row(row: Row) {
    let mut rows = rows().lock().unwrap_or_else(|e| e.into_inner());
    rows.push(row);
    print_table(&rows);
}

/// Prints the table.
pub fn print_table(rows: &[Row]) {
    let dash = |v: Option<usize>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let mut out = String::from(
        "\n| fault | operations | faults injected | records missing | records stale | log lines \
         lost | log lines duplicated | longest unanswered (ms) | converged after fault (ms) | \
         slowest op in DNS (ms) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.fault,
            row.operations,
            row.faults,
            row.missing,
            row.stale,
            dash(row.lines_lost),
            dash(row.lines_duplicated),
            row.longest_gap_ms,
            row.converge_ms,
            row.slowest_op_ms
        ));
    }
    println!("{out}");
}
