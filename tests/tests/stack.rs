//! `docker/stack.sh` and `docker/docker-compose.yml`, as a user runs them: `up` builds the images
//! (a no-op when nothing changed), starts the seed's stack and shows both elasticsearch instances
//! in A and SRV answers and a container's line at the syslog receiver (the `syslog-sink` image),
//! shipped by logspout over the seed's route `syslog://docker-rsyslog.staging.example.local:514`
//! (UDP, the name resolved through skydns); then one instance stops and DNS answers the other
//! only; `down` removes everything. The stack runs under its own compose project, subnet and
//! loopback DNS port, so nothing clashes with a user's copy; that copy must not be up, though,
//! since each copy's registrator registers every container on the host.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is a failed assertion

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Output};
use std::time::Duration;

use harness::dns::Transport;
use harness::process::free_tcp_udp_port;
use harness::syslog::Framing;
use harness::{DnsClient, SyslogMessage, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/stack.sh");
const NAME: &str = "elasticsearch-9200.staging.example.local.";
const WAIT: Duration = Duration::from_secs(90);
/// The seed's logspout route: syslog over UDP to the receiver registered as `docker-rsyslog`.
const ROUTE: &str = "syslog://docker-rsyslog.staging.example.local:514";

/// Runs stack.sh with this test's project, without the variables `cargo test` sets (they would
/// make build-images.sh's cargo rebuild everything instead of nothing).
fn stack(action: &str, project: &str, port: u16) -> Output {
    let mut command = Command::new("bash");
    command
        .args([SCRIPT, action])
        .env("COMPOSE_PROJECT_NAME", project)
        .env("STACK_DNS_PORT", port.to_string())
        .env("STACK_NET", "172.31.252");
    harness::images::without_cargo_env(&mut command)
        .output()
        .expect("run docker/stack.sh")
}

/// `docker` with these arguments; its stdout (stderr is kept apart, so `docker logs` of a
/// container gives the container's stdout only).
fn docker(args: &[&str]) -> String {
    let output = Command::new("docker").args(args).output().unwrap();
    assert!(output.status.success(), "docker {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// Takes the stack down when the test ends, whatever happened.
struct Down {
    project: String,
    port: u16,
}

impl Drop for Down {
    fn drop(&mut self) {
        let output = stack("down", &self.project, self.port);
        if !output.status.success() {
            eprintln!(
                "stack.sh down failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

async fn a_answers(dns: &DnsClient) -> Option<BTreeSet<IpAddr>> {
    let reply = dns.udp(NAME, RecordType::A).await.ok()?;
    (reply.metadata.response_code == ResponseCode::NoError).then(|| {
        reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_up_shows_the_seed_working_and_down_removes_it() {
    let project = format!("harness-stack-{}", std::process::id());
    let port = free_tcp_udp_port();
    let _down = Down {
        project: project.clone(),
        port,
    };

    let up = stack("up", &project, port);
    let stdout = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(
        up.status.success(),
        "stack.sh up failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    println!("{stdout}");
    // Both instances in the SRV answer, on port 9200, and the receiver got a line.
    for id in ["elasticsearch1", "elasticsearch2"] {
        let target = format!("10 50 9200 {id}.elasticsearch-9200.staging.example.local.");
        assert!(
            stdout.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.contains(&"SRV") && words.join(" ").ends_with(&target)
            }),
            "no SRV {target:?} in:\n{stdout}"
        );
    }
    // elasticsearch1's line as the receiver printed it: an RFC 5424 message, user.info (stdout),
    // the container's host name and name, the line as the message.
    let es1 = format!("{project}_elasticsearch1_1");
    let shown = stdout
        .lines()
        .find(|l| l.starts_with("<14>1 ") && l.ends_with("elasticsearch1 is alive"))
        .unwrap_or_else(|| panic!("no shipped line in:\n{stdout}"));
    let message = SyslogMessage::parse(shown.as_bytes(), Transport::Udp, Framing::Datagram);
    let es1_hostname = docker(&["inspect", "-f", "{{.Config.Hostname}}", &es1]);
    assert_eq!(message.version, Some(1), "{shown}");
    assert_eq!(message.facility.as_deref(), Some("user"), "{shown}");
    assert_eq!(message.severity.as_deref(), Some("info"), "{shown}");
    assert_eq!(
        message.hostname.as_deref(),
        Some(es1_hostname.trim()),
        "{shown}"
    );
    assert_eq!(message.appname.as_deref(), Some(es1.as_str()), "{shown}");
    assert_eq!(message.msg, "elasticsearch1 is alive", "{shown}");
    // It is one of the lines the receiver printed, and the receiver got nothing from the stack's
    // containers marked LOGSPOUT=ignore — its own output included, so nothing loops. (logspout
    // ships every container on this Docker host, so other containers' lines may be there too.)
    let sink = format!("{project}_docker-rsyslog_1");
    let received = docker(&["logs", &sink]);
    assert!(
        received.lines().any(|l| l == shown),
        "{shown:?} not in:\n{received}"
    );
    let ignored = [
        "etcd",
        "skydns",
        "registrator",
        "logspout",
        "docker-rsyslog",
    ]
    .map(|service| format!("{project}_{service}_1"));
    for line in received.lines() {
        let message = SyslogMessage::parse(line.as_bytes(), Transport::Udp, Framing::Datagram);
        let app = message.appname.unwrap_or_default();
        assert!(
            !ignored.contains(&app),
            "{line:?} from {app:?} at the receiver"
        );
    }

    // Shipped through the seed's route, unchanged: logspout's one argument; its name resolved
    // through skydns to the receiver, where logspout connected.
    let logspout = format!("{project}_logspout_1");
    let args = docker(&["inspect", "-f", "{{json .Args}}", &logspout]);
    assert_eq!(args.trim(), format!("[\"{ROUTE}\"]"));
    assert!(stdout.lines().any(|l| l == ROUTE), "no route in:\n{stdout}");
    let sink_ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &sink,
    ]);
    let connected = format!(
        "address=docker-rsyslog.staging.example.local:514 peer={}:514",
        sink_ip.trim()
    );
    let logspout_log = Command::new("docker")
        .args(["logs", &logspout])
        .output()
        .unwrap();
    let logspout_log = String::from_utf8_lossy(&logspout_log.stderr).into_owned()
        + &String::from_utf8_lossy(&logspout_log.stdout);
    assert!(
        logspout_log
            .lines()
            .any(|l| l.contains(" connected ") && l.contains(&connected)),
        "no {connected:?} in logspout's log:\n{logspout_log}"
    );
    // Over UDP: the receiver (which listens on TCP 514 too) has no TCP connection on port 514,
    // where a syslog+tcp route would keep one open. /proc/<pid>/net/tcp is the receiver's network
    // namespace; state 01 is ESTABLISHED, local port 514 is 0202.
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &sink]);
    let tcp = std::fs::read_to_string(format!("/proc/{}/net/tcp", pid.trim())).unwrap();
    assert!(
        tcp.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("00000000:0202")),
        "the receiver does not listen on TCP 514:\n{tcp}"
    );
    assert!(
        !tcp.lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(":0202") && fields[3] == "01"
        }),
        "a TCP connection to the receiver:\n{tcp}"
    );
    for service in ["skydns", "registrator", "logspout"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("{project}_{service}_1")) && l.contains("(healthy)")),
            "{service} is not healthy in:\n{stdout}"
        );
    }

    // The same answers, asked directly: two addresses; after one instance stops, one.
    let dns = DnsClient::new(SocketAddr::from(([127, 0, 0, 1], port)));
    let both = wait_until("two A answers", WAIT, || async {
        a_answers(&dns).await.filter(|ips| ips.len() == 2)
    })
    .await;
    let stopped = Command::new("docker")
        .args(["stop", "-t", "1", &format!("{project}_elasticsearch2_1")])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
    let left = wait_until("one A answer", WAIT, || async {
        a_answers(&dns).await.filter(|ips| ips.len() == 1)
    })
    .await;
    assert!(left.is_subset(&both), "{left:?} is not one of {both:?}");

    let down = stack("down", &project, port);
    assert!(down.status.success(), "stack.sh down: {down:?}");
    let remaining = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ])
        .output()
        .unwrap();
    assert!(remaining.status.success(), "{remaining:?}");
    assert!(
        remaining.stdout.is_empty(),
        "containers left: {remaining:?}"
    );
    let networks = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]);
    assert!(networks.is_empty(), "networks left: {networks}");
    let network = Command::new("docker")
        .args(["network", "inspect", &format!("{project}_stack")])
        .output()
        .unwrap();
    assert!(!network.status.success(), "{project}_stack is left");
}
