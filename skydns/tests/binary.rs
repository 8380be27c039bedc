//! The real `skydns` binary: Go-style flags and environment as in the seed's unit, answers
//! over UDP and TCP, a clean exit on SIGTERM, `-version`, and one clear line for bad flags.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use harness::process::{free_tcp_udp_port, spawn_tied, terminate};
use harness::{DnsClient, EtcdServer, FakeUpstream, wait_until};
use hickory_proto::rr::RecordType;
use support::{WAIT, put_all, set, strings};

const BIN: &str = env!("CARGO_BIN_EXE_skydns");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_the_seed_and_exits_cleanly_on_sigterm() {
    let etcd = EtcdServer::start().await;
    put_all(
        &etcd,
        &[
            ("/skydns/config", r#"{"domain":"staging.example.local."}"#),
            (
                "/skydns/local/example/staging/elasticsearch-9200/es1",
                r#"{"host":"10.0.0.1","port":9200}"#,
            ),
            (
                "/skydns/local/example/staging/elasticsearch-9200/es2",
                r#"{"host":"10.0.0.2","port":9200}"#,
            ),
        ],
    )
    .await;
    let upstream = FakeUpstream::start().await;
    let port = free_tcp_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let mut command = Command::new(BIN);
    // As the seed's unit: ETCD_MACHINES and SKYDNS_ADDR from the environment.
    command
        .env("ETCD_MACHINES", etcd.endpoint())
        .env("SKYDNS_ADDR", &addr)
        .env_remove("SKYDNS_DOMAIN")
        .args([
            "-nameservers",
            &upstream.addr().to_string(),
            "-round-robin=false",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = spawn_tied(command).unwrap();

    let client = DnsClient::new(addr.parse().unwrap());
    let name = "elasticsearch-9200.staging.example.local.";
    let reply = wait_until("the binary to answer", WAIT, || {
        let client = client.clone();
        async move {
            client
                .udp(name, RecordType::A)
                .await
                .ok()
                .filter(|r| !r.answers.is_empty())
        }
    })
    .await;
    assert_eq!(
        set(&reply.answers),
        strings(&[
            "elasticsearch-9200.staging.example.local. 3600 IN A 10.0.0.1",
            "elasticsearch-9200.staging.example.local. 3600 IN A 10.0.0.2",
        ])
    );
    let reply = client.tcp(name, RecordType::SRV).await.unwrap();
    assert_eq!(reply.answers.len(), 2);
    assert_eq!(reply.additionals.len(), 2);

    terminate(&child).unwrap();
    let status = wait_until("the binary to exit", WAIT, || {
        let exited = child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success(), "exit status {status}");
    // The port is free again.
    assert!(
        client
            .clone()
            .with_timeout(Duration::from_millis(300))
            .udp(name, RecordType::A)
            .await
            .is_err()
    );
}

#[test]
fn version_and_bad_flags() {
    let output = Command::new(BIN).arg("-version").output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("skydns server version: 2.5.3a"),
        "{stdout}"
    );

    let output = Command::new(BIN)
        .args(["-addr", "localhost:53"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "skydns: addr is invalid: \"localhost:53\" must be a literal IP:port"
    );
}

/// The original silently serves no metrics for a `PROMETHEUS_PORT` it cannot parse; ours says
/// so in one line and exits non-zero (before reaching for etcd).
#[test]
fn an_unparsable_prometheus_port_is_one_error_line_and_a_failed_exit() {
    for port in ["nine", "99999", "0", "-1"] {
        let output = Command::new(BIN)
            .env("PROMETHEUS_PORT", port)
            .args(["-machines", "http://127.0.0.1:1"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{port}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.trim(),
            format!(
                "skydns: PROMETHEUS_PORT (-metrics-port) {port:?} is not a port number from 1 \
                 to 65535"
            ),
            "{port}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_authenticates_to_etcd_with_username_and_password_from_the_environment() {
    let etcd = EtcdServer::start().await;
    put_all(
        &etcd,
        &[(
            "/skydns/local/skydns/web/a",
            r#"{"host":"10.0.0.7","port":80}"#,
        )],
    )
    .await;
    let mut admin = etcd.client().await;
    admin.role_add("root").await.unwrap();
    admin.user_add("root", "s3cret", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();

    let upstream = FakeUpstream::start().await;
    let port = free_tcp_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let mut command = Command::new(BIN);
    command
        .env("ETCD_MACHINES", etcd.endpoint())
        .env("ETCD_USERNAME", "root")
        .env("ETCD_PASSWORD", "s3cret")
        .args(["-addr", &addr, "-nameservers", &upstream.addr().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = spawn_tied(command).unwrap();
    let client = DnsClient::new(addr.parse().unwrap());
    let reply = wait_until("the binary to answer with auth", WAIT, || {
        let client = client.clone();
        async move {
            client
                .udp("web.skydns.local.", RecordType::A)
                .await
                .ok()
                .filter(|r| !r.answers.is_empty())
        }
    })
    .await;
    assert_eq!(
        set(&reply.answers),
        strings(&["web.skydns.local. 3600 IN A 10.0.0.7"])
    );
    // The watch works with authentication too: a later write shows up.
    let mut writer = common::EtcdSettings::new(&etcd.endpoint())
        .unwrap()
        .with_auth("root", "s3cret")
        .connect()
        .await
        .unwrap();
    writer
        .put("/skydns/local/skydns/web/b", r#"{"host":"10.0.0.8"}"#, None)
        .await
        .unwrap();
    wait_until("the later write to be served", WAIT, || {
        let client = client.clone();
        async move {
            client
                .udp("web.skydns.local.", RecordType::A)
                .await
                .ok()
                .filter(|r| r.answers.len() == 2)
        }
    })
    .await;
    terminate(&child).unwrap();
    let status = wait_until("the binary to exit", WAIT, || {
        let exited = child.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success(), "exit status {status}");
}
