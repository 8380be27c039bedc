//! `docker/stack.sh` and `docker/docker-compose.yml`, as a user runs them: `up` builds the images
//! (a no-op when nothing changed), starts the seed's stack and shows both elasticsearch instances
//! in A and SRV answers and a container's line at the syslog receiver; then one instance stops
//! and DNS answers the other only; `down` removes everything. The stack runs under its own
//! compose project, subnet and loopback DNS port, so it can run beside a user's copy.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is a failed assertion

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Output};
use std::time::Duration;

use harness::process::free_tcp_udp_port;
use harness::{DnsClient, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/stack.sh");
const NAME: &str = "elasticsearch-9200.staging.example.local.";
const WAIT: Duration = Duration::from_secs(90);

/// Runs stack.sh with this test's project, without the variables `cargo test` sets (they would
/// make build-images.sh's cargo rebuild everything instead of nothing).
fn stack(action: &str, project: &str, port: u16) -> Output {
    let mut command = Command::new("bash");
    command
        .args([SCRIPT, action])
        .env("COMPOSE_PROJECT_NAME", project)
        .env("STACK_DNS_PORT", port.to_string())
        .env("STACK_NET", "172.31.252");
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
    command.output().expect("run docker/stack.sh")
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
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("docker-rsyslog") && l.contains("elasticsearch1 is alive")),
        "no shipped line in:\n{stdout}"
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
}
