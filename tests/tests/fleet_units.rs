//! The fleet units in `fleet-units/`: read as INI, checked for the seed's shape (`Global=true`,
//! `EnvironmentFile=/etc/environment`, `docker kill`/`rm` as `ExecStartPre=-`, `docker stop` as
//! `ExecStop`), verified with `systemd-analyze verify`, and then executed as systemd would —
//! specifiers and `EnvironmentFile` variables substituted, `COREOS_PRIVATE_IPV4=127.0.0.1` —
//! against the local Docker Engine with etcd on 127.0.0.1:2379: the units start a stack in which
//! an `elasticsearch@1` container is answered by skydns on 127.0.0.1:53, its `ExecStop` removes
//! the answer, and stopping the components leaves no records behind.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is a failed assertion

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use harness::process::{free_tcp_port, spawn_tied};
use harness::{DnsClient, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fleet-units");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const WAIT: Duration = Duration::from_secs(60);
const PRIVATE_IP: &str = "127.0.0.1";
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
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut out = String::new();
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('p') => out.push_str(prefix),
                Some('i') => out.push_str(instance),
                Some('n') => out.push_str(unit_name),
                Some('H') => out.push_str(host.trim()),
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

fn command(words: &[String]) -> Command {
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]);
    command
}

/// Runs `ExecStartPre` lines (a leading `-` means failure is ignored), then spawns `ExecStart`.
fn start(
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
    let mut start = command(&words);
    start
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_tied(start).unwrap()
}

fn stop(unit: &Unit, env: &BTreeMap<&str, &str>) {
    let line = unit.value("Service", "ExecStop");
    let output = command(&expand(line, &unit.name, env)).output().unwrap();
    assert!(output.status.success(), "{}: {line}: {output:?}", unit.name);
}

/// Removes the units' containers when the test ends, whatever happened.
struct Containers(Vec<&'static str>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker").args(["rm", "-f", name]).output();
        }
    }
}

fn build_images() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/build-images.sh");
    let mut command = Command::new("bash");
    command.arg(script);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo = (name.starts_with("CARGO") && name != "CARGO_HOME")
            || name.starts_with("RUSTC")
            || name.starts_with("RUSTDOC")
            || name == "OUT_DIR"
            || name == "LD_LIBRARY_PATH";
        if set_by_cargo {
            command.env_remove(&*name);
        }
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "build-images.sh: {output:?}");
}

async fn srv_targets(dns: &DnsClient) -> Option<Vec<(u16, String)>> {
    let reply = dns.udp(NAME, RecordType::SRV).await.ok()?;
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
        ResponseCode::NXDomain => Some(Vec::new()),
        _ => None,
    }
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
    let es = Unit::read("elasticsearch@.service");
    assert_eq!(es.value("X-Fleet", "Conflicts"), "%p@*.service");
    assert!(
        es.value("Service", "ExecStart")
            .contains("-e SERVICE_ID=%p%i")
    );
    let env = BTreeMap::from([("COREOS_PRIVATE_IPV4", "10.0.0.5")]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_start_a_working_stack_on_the_local_engine() {
    build_images();
    let env = BTreeMap::from([("COREOS_PRIVATE_IPV4", PRIVATE_IP)]);
    let _containers = Containers(vec!["registrator", "skydns", "logspout", "elasticsearch-1"]);

    // etcd where the units expect it: the host's private address, port 2379.
    let data = tempfile::tempdir().unwrap();
    let mut etcd = Command::new(harness::etcd::etcd_binary());
    etcd.args([
        "--data-dir",
        data.path().to_str().unwrap(),
        "--listen-client-urls",
        "http://127.0.0.1:2379",
        "--advertise-client-urls",
        "http://127.0.0.1:2379",
        "--listen-peer-urls",
        &format!("http://127.0.0.1:{}", free_tcp_port()),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut etcd = spawn_tied(etcd).unwrap();
    let mut client = wait_until("etcd on 127.0.0.1:2379", WAIT, || async {
        let mut client = Client::connect(["http://127.0.0.1:2379"], None)
            .await
            .ok()?;
        client.status().await.ok()?;
        Some(client)
    })
    .await;

    let components: Vec<Unit> = ["skydns", "registrator", "logspout"]
        .iter()
        .map(|name| Unit::read(&format!("{name}.service")))
        .collect();
    let mut running: Vec<Child> = components.iter().map(|u| start(u, &env, |w| w)).collect();

    // The elasticsearch example, with the test image tagged as elasticsearch:1.5.2 standing in
    // for elasticsearch (the arguments after the image are elasticsearch's own, so they are
    // replaced by an idle loop).
    let tagged = Command::new("docker")
        .args(["tag", harness::docker::TEST_IMAGE, "elasticsearch:1.5.2"])
        .status()
        .unwrap();
    assert!(tagged.success());
    let es = Unit {
        name: "elasticsearch@1.service".to_owned(),
        ..Unit::read("elasticsearch@.service")
    };
    let mut es_run = start(&es, &env, |words| {
        let image = words
            .iter()
            .position(|w| w == "elasticsearch:1.5.2")
            .unwrap();
        let mut words = words[..=image].to_vec();
        words.extend(["sh", "-c", "while true; do sleep 1; done"].map(str::to_owned));
        words
    });

    let dns = DnsClient::new("127.0.0.1:53".parse().unwrap());
    let targets = wait_until("skydns to answer elasticsearch@1", WAIT, || async {
        srv_targets(&dns).await.filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(
        targets,
        [(
            9200,
            "elasticsearch1.elasticsearch-9200.staging.example.local.".to_owned()
        )]
    );
    let a = dns.udp(NAME, RecordType::A).await.unwrap();
    let ips: Vec<String> = a
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(ips, [PRIVATE_IP]);

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

    // ExecStop of elasticsearch@1: its answer goes.
    stop(&es, &env);
    assert!(es_run.wait().unwrap().code().is_some());
    wait_until("elasticsearch@1's answer to go", WAIT, || async {
        srv_targets(&dns).await.filter(|t| t.is_empty())
    })
    .await;

    // ExecStop of the components: each `docker run` ends with exit status 0, no records left.
    for (unit, child) in components.iter().zip(running.iter_mut()).rev() {
        stop(unit, &env);
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "{}: docker run ended with {status}",
            unit.name
        );
    }
    assert_eq!(records(&mut client).await, Vec::<String>::new());
    let _ = etcd.kill();
    let _ = etcd.wait();
}
