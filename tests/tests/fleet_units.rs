//! The fleet units in `fleet-units/`: read as INI, checked for the seed's shape (`Global=true`
//! for the per-host components, `EnvironmentFile=/etc/environment`, `docker kill`/`rm` as
//! `ExecStartPre=-`, `docker stop` as `ExecStop`), verified with `systemd-analyze verify`, and
//! then executed as systemd would — specifiers and `EnvironmentFile` variables substituted — on the
//! real images: the seed's story from start to end, with image sizes and the container start →
//! DNS answer latency printed (`-- --nocapture`).
//!
//! The private address `COREOS_PRIVATE_IPV4` is the gateway of a bridge network the test creates:
//! an address of this host that is not loopback, so containers on Docker's default bridge
//! (logspout, elasticsearch) reach skydns and the syslog receiver through it, as they reach the
//! host's private address on a CoreOS machine. Nothing runs on that network; it only lends the
//! address, and it is removed when the test ends.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is a failed assertion

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use harness::dns::Transport;
use harness::images::{build_images, docker_cli_ok as docker};
use harness::process::{free_tcp_port, spawn_tied};
use harness::syslog::Framing;
use harness::{DnsClient, FakeUpstream, SyslogMessage, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fleet-units");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const WAIT: Duration = Duration::from_secs(60);
const NAME: &str = "elasticsearch-9200.staging.example.local.";

/// One unit file: sections in order, each with its `key=value` lines in order (keys repeat).
#[derive(Debug)]
struct Unit {
    name: String,
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Unit {
    fn read(file: &str) -> Self {
        let path = Path::new(UNITS).join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                sections.push((section.to_owned(), Vec::new()));
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{file}:{}: not key=value: {line}", number + 1));
            let (_, entries) = sections
                .last_mut()
                .unwrap_or_else(|| panic!("{file}:{}: outside a section", number + 1));
            entries.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        Self {
            name: file.to_owned(),
            sections,
        }
    }

    fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.sections
            .iter()
            .filter(|(name, _)| name == section)
            .flat_map(|(_, entries)| entries)
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn value(&self, section: &str, key: &str) -> &str {
        match self.values(section, key).as_slice() {
            [value] => value,
            other => panic!("{}: [{section}] {key} = {other:?}, expected one", self.name),
        }
    }
}

/// Substitutes systemd's specifiers (`%p` prefix, `%i` instance, `%n` full name, `%H` host
/// name, `%%`) and `${VAR}`/`$VAR` from the environment file, then splits into words (the units
/// use no quoting; that is asserted).
fn expand(command: &str, unit_name: &str, env: &BTreeMap<&str, &str>) -> Vec<String> {
    assert!(!command.contains(['"', '\'', '\\']), "quoting in {command}");
    let stem = unit_name.trim_end_matches(".service");
    let (prefix, instance) = stem.split_once('@').unwrap_or((stem, ""));
    let host = host_name();
    let mut out = String::new();
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('p') => out.push_str(prefix),
                Some('i') => out.push_str(instance),
                Some('n') => out.push_str(unit_name),
                Some('H') => out.push_str(&host),
                Some('%') => out.push('%'),
                other => panic!("unknown specifier %{other:?} in {command}"),
            },
            '$' => {
                let braced = chars.peek() == Some(&'{');
                if braced {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if braced {
                    assert_eq!(chars.next(), Some('}'), "unclosed ${{ in {command}");
                }
                let value = env
                    .get(name.as_str())
                    .unwrap_or_else(|| panic!("${name} is not in the environment file"));
                out.push_str(value);
            }
            c => out.push(c),
        }
    }
    out.split_whitespace().map(str::to_owned).collect()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

fn command(words: &[String]) -> Command {
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]);
    command
}

fn stop(unit: &Unit, env: &BTreeMap<&str, &str>) {
    let line = unit.value("Service", "ExecStop");
    let output = command(&expand(line, &unit.name, env)).output().unwrap();
    assert!(output.status.success(), "{}: {line}: {output:?}", unit.name);
}

/// The units' containers, removed when the test ends whatever happened, and the output of their
/// `docker run` (the containers' own output included), shown when the test fails.
struct Units {
    containers: Vec<String>,
    output: tempfile::TempDir,
}

impl Units {
    fn new(containers: Vec<String>) -> Self {
        Self {
            containers,
            output: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `ExecStartPre` lines (a leading `-` means failure is ignored), then spawns
    /// `ExecStart` after `edit` had its say.
    fn start(
        &self,
        unit: &Unit,
        env: &BTreeMap<&str, &str>,
        edit: impl Fn(Vec<String>) -> Vec<String>,
    ) -> Child {
        for line in unit.values("Service", "ExecStartPre") {
            let (may_fail, line) = match line.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let output = command(&expand(line, &unit.name, env)).output().unwrap();
            assert!(
                may_fail || output.status.success(),
                "{}: {line}: {output:?}",
                unit.name
            );
        }
        let words = edit(expand(unit.value("Service", "ExecStart"), &unit.name, env));
        let log = std::fs::File::create(self.output.path().join(&unit.name)).unwrap();
        let mut start = command(&words);
        start
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        spawn_tied(start).unwrap()
    }
}

impl Drop for Units {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut files: Vec<_> = std::fs::read_dir(self.output.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path())
                .collect();
            files.sort();
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!(
                    "--- {}: the last lines of its docker run ---\n{}",
                    file.file_name().unwrap_or_default().to_string_lossy(),
                    lines[lines.len().saturating_sub(20)..].join("\n")
                );
            }
            if let Ok(ps) = Command::new("docker").args(["ps", "-a"]).output() {
                eprintln!(
                    "--- docker ps -a ---\n{}",
                    String::from_utf8_lossy(&ps.stdout)
                );
            }
        }
        for name in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", name]).output();
        }
    }
}

/// A bridge network of the test's own, removed on drop. Its gateway is this host's address on it.
struct PrivateNetwork {
    name: String,
    gateway: Ipv4Addr,
}

impl PrivateNetwork {
    fn create() -> Self {
        let name = format!("harness-fleet-{}", std::process::id());
        let _ = Command::new("docker")
            .args(["network", "rm", &name])
            .output();
        let output = Command::new("docker")
            .args(["network", "create", &name])
            .output()
            .unwrap();
        assert!(output.status.success(), "docker network create: {output:?}");
        let mut network = Self {
            name,
            gateway: Ipv4Addr::UNSPECIFIED,
        };
        let output = Command::new("docker")
            .args([
                "network",
                "inspect",
                "--format",
                "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
                &network.name,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "docker network inspect: {output:?}"
        );
        network.gateway = String::from_utf8(output.stdout)
            .unwrap()
            .split_whitespace()
            .find_map(|word| word.parse().ok())
            .expect("an IPv4 gateway");
        network
    }
}

impl Drop for PrivateNetwork {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.name])
            .output();
    }
}

/// `words` with `extra` inserted just before the image (as more `docker run` options).
fn with_options(mut words: Vec<String>, image: &str, extra: &[&str]) -> Vec<String> {
    let at = words.iter().position(|w| w == image).unwrap();
    words.splice(at..at, extra.iter().map(|w| (*w).to_owned()));
    words
}

/// `words` up to the image, then `command` instead of the image's arguments.
fn with_command(words: Vec<String>, image: &str, command: &[&str]) -> Vec<String> {
    let at = words.iter().position(|w| w == image).unwrap();
    let mut words = words[..=at].to_vec();
    words.extend(command.iter().map(|w| (*w).to_owned()));
    words
}

/// A shell loop for the elasticsearch stand-ins: prints `line` every second and exits 0 on
/// SIGTERM (`docker stop`), as a well-behaved service does.
fn talking_loop(line: &str) -> [String; 3] {
    [
        "sh".to_owned(),
        "-c".to_owned(),
        format!("trap 'exit 0' TERM; while true; do echo '{line}'; sleep 1; done"),
    ]
}

/// The SRV answers for `name` as (port, target); empty for NXDOMAIN; `None` if the server did
/// not answer (yet).
async fn srv(dns: &DnsClient, name: &str, transport: Transport) -> Option<BTreeSet<(u16, String)>> {
    let reply = match transport {
        Transport::Udp => dns.udp(name, RecordType::SRV).await,
        Transport::Tcp => dns.tcp(name, RecordType::SRV).await,
    }
    .ok()?;
    match reply.metadata.response_code {
        ResponseCode::NoError => Some(
            reply
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(srv) => Some((srv.port, srv.target.to_string())),
                    _ => None,
                })
                .collect(),
        ),
        ResponseCode::NXDomain => Some(BTreeSet::new()),
        _ => None,
    }
}

/// The A answers for `name`.
async fn a(dns: &DnsClient, name: &str, transport: Transport) -> Vec<Ipv4Addr> {
    let reply = match transport {
        Transport::Udp => dns.udp(name, RecordType::A).await,
        Transport::Tcp => dns.tcp(name, RecordType::A).await,
    }
    .unwrap();
    harness::dns::a_addrs(&reply)
}

async fn records(client: &mut Client) -> Vec<String> {
    client
        .get(
            "/skydns/local/example/staging/",
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .unwrap()
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_owned())
        .collect()
}

/// Like `harness::wait_until`, but polls every 5 ms: for measuring, not for waiting.
async fn poll_fast<T, Fut: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let percentile = |p: usize| times[(times.len() * p).div_ceil(100) - 1];
    (percentile(50), percentile(99))
}

#[test]
fn units_have_the_seeds_shape() {
    for name in ["registrator", "skydns", "logspout"] {
        let unit = Unit::read(&format!("{name}.service"));
        assert_eq!(unit.value("X-Fleet", "Global"), "true", "{name}");
        assert_eq!(unit.value("Service", "EnvironmentFile"), "/etc/environment");
        assert_eq!(
            unit.values("Service", "ExecStartPre"),
            ["-/usr/bin/docker kill %p", "-/usr/bin/docker rm %p"],
            "{name}"
        );
        assert_eq!(unit.value("Service", "ExecStop"), "/usr/bin/docker stop %p");
        let start = unit.value("Service", "ExecStart");
        assert!(
            start.starts_with("/usr/bin/docker run --pull never --name %p "),
            "{start}"
        );
        assert!(start.contains(&format!(" {name}:{VERSION}")), "{start}");
        assert!(start.contains("${COREOS_PRIVATE_IPV4}"), "{start}");
    }

    // The central receiver: one copy in the cluster, registered under the name logspout's route
    // uses, with one published port (a second would make registrator name it
    // docker-rsyslog-514), UDP as `syslog://` sends, and its own output not shipped back.
    let rsyslog = Unit::read("docker-rsyslog.service");
    assert_eq!(rsyslog.value("X-Fleet", "Global"), "false");
    assert_eq!(
        rsyslog.value("Service", "EnvironmentFile"),
        "/etc/environment"
    );
    assert_eq!(
        rsyslog.values("Service", "ExecStartPre"),
        ["-/usr/bin/docker kill %p", "-/usr/bin/docker rm %p"]
    );
    assert_eq!(
        rsyslog.value("Service", "ExecStop"),
        "/usr/bin/docker stop %p"
    );
    let env = BTreeMap::from([("COREOS_PRIVATE_IPV4", "10.0.0.5")]);
    let words = expand(
        rsyslog.value("Service", "ExecStart"),
        "docker-rsyslog.service",
        &env,
    );
    assert_eq!(
        words[..6],
        [
            "/usr/bin/docker",
            "run",
            "--pull",
            "never",
            "--name",
            "docker-rsyslog"
        ]
    );
    for expected in [
        "SERVICE_NAME=docker-rsyslog",
        "LOGSPOUT=ignore",
        "10.0.0.5:514:514/udp",
        &format!("syslog-sink:{VERSION}"),
    ] {
        assert!(
            words.iter().any(|w| w == expected),
            "{expected} not in {words:?}"
        );
    }
    assert_eq!(words.iter().filter(|w| *w == "-p").count(), 1, "{words:?}");
    let logspout = Unit::read("logspout.service");
    assert!(
        logspout
            .value("Service", "ExecStart")
            .ends_with(" syslog://docker-rsyslog.staging.example.local:514")
    );

    let es = Unit::read("elasticsearch@.service");
    assert_eq!(es.value("X-Fleet", "Conflicts"), "%p@*.service");
    assert!(
        es.value("Service", "ExecStart")
            .contains("-e SERVICE_ID=%p%i")
    );
    let words = expand(
        es.value("Service", "ExecStart"),
        "elasticsearch@1.service",
        &env,
    );
    for expected in [
        "elasticsearch-1",
        "SERVICE_ID=elasticsearch1",
        "10.0.0.5:9200:9200",
        "10.0.0.5",
    ] {
        assert!(
            words.iter().any(|w| w == expected),
            "{expected} not in {words:?}"
        );
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for (source, target) in [
        ("registrator.service", "registrator.service"),
        ("skydns.service", "skydns.service"),
        ("logspout.service", "logspout.service"),
        ("docker-rsyslog.service", "docker-rsyslog.service"),
        ("elasticsearch@.service", "elasticsearch@1.service"),
    ] {
        let path = dir.path().join(target);
        std::fs::copy(Path::new(UNITS).join(source), &path).unwrap();
        files.push(path);
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&files)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // And verify does catch a broken unit here.
    let broken = dir.path().join("broken.service");
    std::fs::write(&broken, "[Service]\nExecStart=\n").unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{output:?}");
}

/// The seed's story, from the units, on the images `docker/build-images.sh` builds: etcd up; the
/// three components and the central syslog receiver started by their units; two
/// elasticsearch-like instances; DNS answers both (UDP and TCP); one stopped → only the other is
/// answered; an instance's stdout line reaches the receiver found through skydns; the start → DNS
/// answer latency over 50 starts and the image sizes are printed; the components stop on SIGTERM
/// with exit status 0 and leave no record in etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_story_runs_from_the_units_on_the_real_images() {
    build_images();
    let network = PrivateNetwork::create();
    let private_ip = network.gateway.to_string();
    let env = BTreeMap::from([("COREOS_PRIVATE_IPV4", private_ip.as_str())]);
    let pid = std::process::id();
    let probes: Vec<String> = (0..50)
        .map(|i| format!("harness-fleet-{pid}-probe{i}"))
        .collect();
    let mut guarded: Vec<String> = [
        "registrator",
        "skydns",
        "logspout",
        "docker-rsyslog",
        "elasticsearch-1",
        "elasticsearch-2",
    ]
    .map(str::to_owned)
    .to_vec();
    guarded.extend(probes.iter().cloned());
    let units = Units::new(guarded);

    // etcd where the units expect it: the private address, port 2379.
    let data = tempfile::tempdir().unwrap();
    let etcd_url = format!("http://{private_ip}:2379");
    let mut etcd = Command::new(harness::etcd::etcd_binary());
    etcd.args([
        "--data-dir",
        data.path().to_str().unwrap(),
        "--listen-client-urls",
        &etcd_url,
        "--advertise-client-urls",
        &etcd_url,
        "--listen-peer-urls",
        &format!("http://127.0.0.1:{}", free_tcp_port()),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut etcd = spawn_tied(etcd).unwrap();
    let mut client = wait_until(&format!("etcd on {etcd_url}"), WAIT, || async {
        let mut client = Client::connect([etcd_url.as_str()], None).await.ok()?;
        client.status().await.ok()?;
        Some(client)
    })
    .await;

    // skydns's unit sets no forwarders, so skydns would forward names outside its zone to the
    // resolver in /etc/resolv.conf. A test must never do that: point it at a fake upstream on
    // loopback instead (skydns runs with --net=host, so 127.0.0.1 is this host's loopback).
    let upstream = FakeUpstream::start().await;
    upstream.add_a("forwarded.test.", Ipv4Addr::new(192, 0, 2, 53), 60);
    let nameservers = format!("SKYDNS_NAMESERVERS={}", upstream.addr());
    let skydns_image = format!("skydns:{VERSION}");

    let unit = |name: &str| Unit::read(&format!("{name}.service"));
    let (skydns, registrator, logspout, rsyslog) = (
        unit("skydns"),
        unit("registrator"),
        unit("logspout"),
        unit("docker-rsyslog"),
    );
    let mut skydns_run = units.start(&skydns, &env, |words| {
        with_options(words, &skydns_image, &["-e", &nameservers])
    });
    let mut registrator_run = units.start(&registrator, &env, |w| w);

    // The central receiver first, and logspout once skydns answers for it (logspout would retry
    // the lookup on its own; this keeps the test's waits short).
    let mut rsyslog_run = units.start(&rsyslog, &env, |w| w);
    let dns = DnsClient::new(SocketAddr::from((network.gateway, 53)));
    wait_until("skydns to answer docker-rsyslog", WAIT, || async {
        srv(
            &dns,
            "docker-rsyslog.staging.example.local.",
            Transport::Udp,
        )
        .await
        .filter(|answers| !answers.is_empty())
    })
    .await;
    assert_eq!(
        a(
            &dns,
            "docker-rsyslog.staging.example.local.",
            Transport::Udp
        )
        .await,
        [network.gateway]
    );
    let mut logspout_run = units.start(&logspout, &env, |w| w);

    // Names outside the zone go to the fake upstream, not to the machine's resolver.
    assert_eq!(
        a(&dns, "forwarded.test.", Transport::Udp).await,
        [Ipv4Addr::new(192, 0, 2, 53)]
    );
    assert!(
        upstream
            .queries()
            .iter()
            .any(|(name, _, _)| name == "forwarded.test.")
    );

    // Two elasticsearch instances: the busybox test image tagged elasticsearch:1.5.2 stands in
    // for elasticsearch, its arguments replaced by a loop that prints a line every second.
    // Instance 2 publishes other host ports, as a second instance on one host must.
    let tagged = Command::new("docker")
        .args(["tag", harness::docker::TEST_IMAGE, "elasticsearch:1.5.2"])
        .status()
        .unwrap();
    assert!(tagged.success());
    let es_unit = |instance: u16| Unit {
        name: format!("elasticsearch@{instance}.service"),
        ..Unit::read("elasticsearch@.service")
    };
    let (es1, es2) = (es_unit(1), es_unit(2));
    let lines = [
        format!("elasticsearch-1 of test {pid} is up"),
        format!("elasticsearch-2 of test {pid} is up"),
    ];
    let mut es1_run = units.start(&es1, &env, |words| {
        with_command(
            words,
            "elasticsearch:1.5.2",
            &talking_loop(&lines[0]).each_ref().map(String::as_str),
        )
    });
    let http2 = free_tcp_port();
    let transport2 = loop {
        let port = free_tcp_port();
        if port != http2 {
            break port;
        }
    };
    let mut es2_run = units.start(&es2, &env, |words| {
        let words = words
            .into_iter()
            .map(|w| {
                w.replace(
                    &format!("{private_ip}:9200:"),
                    &format!("{private_ip}:{http2}:"),
                )
                .replace(
                    &format!("{private_ip}:9300:"),
                    &format!("{private_ip}:{transport2}:"),
                )
            })
            .collect();
        with_command(
            words,
            "elasticsearch:1.5.2",
            &talking_loop(&lines[1]).each_ref().map(String::as_str),
        )
    });

    // DNS answers both, over UDP and TCP.
    let target = |instance: u16, port: u16| {
        format!("elasticsearch{instance}.elasticsearch-{port}.staging.example.local.")
    };
    let both_9200 = BTreeSet::from([(9200, target(1, 9200)), (http2, target(2, 9200))]);
    let both_9300 = BTreeSet::from([(9300, target(1, 9300)), (transport2, target(2, 9300))]);
    wait_until(
        "skydns to answer both elasticsearch instances",
        WAIT,
        || async {
            srv(&dns, NAME, Transport::Udp)
                .await
                .filter(|answers| *answers == both_9200)
        },
    )
    .await;
    for transport in [Transport::Udp, Transport::Tcp] {
        assert_eq!(
            srv(&dns, NAME, transport).await,
            Some(both_9200.clone()),
            "{transport:?}"
        );
        assert_eq!(
            srv(&dns, "elasticsearch-9300.staging.example.local.", transport).await,
            Some(both_9300.clone()),
            "{transport:?}"
        );
        let ips = a(&dns, NAME, transport).await;
        assert!(
            !ips.is_empty() && ips.iter().all(|ip| *ip == network.gateway),
            "{ips:?}"
        );
        for instance in [1, 2] {
            assert_eq!(
                a(&dns, &target(instance, 9200), transport).await,
                [network.gateway]
            );
        }
    }

    // Each instance's stdout reaches the receiver, which logspout found through skydns: an
    // RFC 5424 message with the container's host name, its name as the tag, the line as message.
    let host = host_name();
    for (instance, line) in ["elasticsearch-1", "elasticsearch-2"].iter().zip(&lines) {
        let received = wait_until(
            &format!("{instance}'s line at the receiver"),
            WAIT,
            || async {
                let logs = docker(&["logs", "docker-rsyslog"]).await;
                logs.lines()
                    .find(|l| l.ends_with(line.as_str()))
                    .map(str::to_owned)
            },
        )
        .await;
        let message = SyslogMessage::parse(received.as_bytes(), Transport::Udp, Framing::Datagram);
        assert_eq!(message.version, Some(1), "{received}");
        assert_eq!(
            message.hostname.as_deref(),
            Some(host.as_str()),
            "{received}"
        );
        assert_eq!(message.appname.as_deref(), Some(*instance), "{received}");
        assert_eq!(message.msg, *line, "{received}");
    }

    // logspout runs and answers its health check.
    wait_until("logspout's health check", WAIT, || async {
        let output = tokio::process::Command::new("docker")
            .args(["exec", "logspout", "/bin/logspout", "healthcheck"])
            .output()
            .await
            .ok()?;
        output.status.success().then_some(())
    })
    .await;

    // ExecStop of elasticsearch@1: it exits 0, its records go, DNS answers the other only.
    stop(&es1, &env);
    assert!(es1_run.wait().unwrap().success());
    let only_2 = BTreeSet::from([(http2, target(2, 9200))]);
    wait_until("elasticsearch@1's answer to go", WAIT, || async {
        srv(&dns, NAME, Transport::Udp)
            .await
            .filter(|answers| *answers == only_2)
    })
    .await;
    assert_eq!(srv(&dns, NAME, Transport::Tcp).await, Some(only_2));
    assert_eq!(
        srv(
            &dns,
            "elasticsearch-9300.staging.example.local.",
            Transport::Udp
        )
        .await,
        Some(BTreeSet::from([(transport2, target(2, 9300))]))
    );
    let keys = records(&mut client).await;
    assert!(
        !keys.iter().any(|k| k.ends_with("/elasticsearch1")),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with("/elasticsearch2")),
        "{keys:?}"
    );

    // Measured: a container with a published port starts → skydns's first answer naming it,
    // over 50 starts, from `docker run -d` returning and from it being issued.
    let service = format!("latency-{pid}");
    let name = format!("{service}.staging.example.local.");
    let publish = format!("{private_ip}::80");
    let (mut from_return, mut from_issue) = (Vec::new(), Vec::new());
    for (i, probe) in probes.iter().enumerate() {
        let id = format!("probe{i}");
        let named = |answers: &BTreeSet<(u16, String)>| {
            answers.iter().any(|(_, t)| *t == format!("{id}.{name}"))
        };
        let issued = Instant::now();
        docker(&[
            "run",
            "-d",
            "--pull",
            "never",
            "--name",
            probe,
            "-e",
            &format!("SERVICE_NAME={service}"),
            "-e",
            &format!("SERVICE_ID={id}"),
            "-p",
            &publish,
            harness::docker::TEST_IMAGE,
            "sleep",
            "600",
        ])
        .await;
        let returned = Instant::now();
        poll_fast(&format!("an answer for {id}"), || async {
            srv(&dns, &name, Transport::Udp)
                .await
                .filter(named)
                .map(|_| ())
        })
        .await;
        from_return.push(returned.elapsed());
        from_issue.push(issued.elapsed());
        docker(&["rm", "-f", probe]).await;
        wait_until(&format!("{id}'s answer to go"), WAIT, || async {
            srv(&dns, &name, Transport::Udp)
                .await
                .filter(|answers| !named(answers))
        })
        .await;
    }
    for (what, times) in [
        ("`docker run -d` returned", from_return),
        ("`docker run -d` issued", from_issue),
    ] {
        let count = times.len();
        let (p50, p99) = percentiles(times);
        println!("{what} -> DNS answer, {count} starts: p50 {p50:?}, p99 {p99:?}");
    }
    for image in ["registrator", "skydns", "logspout", "syslog-sink"] {
        let image = format!("{image}:{VERSION}");
        let size = docker(&["image", "inspect", "--format", "{{.Size}}", &image]).await;
        println!("{image}: {} bytes", size.trim());
    }

    // ExecStop of the components (docker stop: SIGTERM): each `docker run` ends with exit status
    // 0, and registrator's records go with it although elasticsearch@2 and the receiver still run.
    for (unit, child) in [
        (&logspout, &mut logspout_run),
        (&registrator, &mut registrator_run),
        (&skydns, &mut skydns_run),
    ] {
        stop(unit, &env);
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "{}: docker run ended with {status}",
            unit.name
        );
    }
    assert_eq!(records(&mut client).await, Vec::<String>::new());
    for (unit, child) in [(&es2, &mut es2_run), (&rsyslog, &mut rsyslog_run)] {
        stop(unit, &env);
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "{}: docker run ended with {status}",
            unit.name
        );
    }
    let _ = etcd.kill();
    let _ = etcd.wait();
}
