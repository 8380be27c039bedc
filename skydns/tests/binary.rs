//! The real `skydns` binary: Go-style flags and environment as in the seed's unit, answers
//! over UDP and TCP, a clean exit on SIGTERM, `-version`, one clear line for bad flags, etcd
//! over TLS with a client certificate (and a wrong CA), and what `-verbose` logs.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use harness::process::{RunningBinary, free_tcp_udp_port, spawn_tied, terminate};
use harness::tls::make_certificates;
use harness::{DnsClient, EtcdServer, FakeUpstream, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use support::{WAIT, answered, put_all, rcode, set, strings};

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

const WEB: (&str, &str) = (
    "/skydns/local/skydns/web/a",
    r#"{"host":"10.0.0.7","port":80}"#,
);

/// A file of a certificate directory as a flag value.
fn path_arg(dir: &std::path::Path, name: &str) -> String {
    dir.join(name)
        .to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 temporary path {}", dir.display()))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_reads_and_watches_etcd_over_tls_with_a_client_certificate() {
    // etcd serves clients only over TLS and only with a certificate from its CA.
    let etcd = EtcdServer::start_tls().await;
    put_all(&etcd, &[WEB]).await;
    let dir = etcd.tls_dir().unwrap();
    let (ca, pem, key) = (
        path_arg(dir, "ca.pem"),
        path_arg(dir, "client.pem"),
        path_arg(dir, "client.key"),
    );
    let upstream = FakeUpstream::start().await;
    let addr = format!("127.0.0.1:{}", free_tcp_udp_port());
    let skydns = RunningBinary::start(
        "skydns",
        &[
            "-machines",
            &etcd.endpoint(),
            "-addr",
            &addr,
            "-nameservers",
            &upstream.addr().to_string(),
            "-ca-cert",
            &ca,
            "-tls-pem",
            &pem,
            "-tls-key",
            &key,
        ],
        &[],
    );
    let client = DnsClient::new(addr.parse().unwrap());
    let reply = answered(
        &client,
        "skydns over TLS to answer",
        "web.skydns.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(
        set(&reply.answers),
        strings(&["web.skydns.local. 3600 IN A 10.0.0.7"])
    );
    // The watch runs over the same TLS connection: a later write is served.
    let mut writer = etcd.client().await;
    writer
        .put("/skydns/local/skydns/web/b", r#"{"host":"10.0.0.8"}"#, None)
        .await
        .unwrap();
    wait_until("the later write to be served over TLS", WAIT, || {
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
    let status = skydns.stop();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_etcd_ca_is_logged_and_retried_without_serving_or_crashing() {
    let etcd = EtcdServer::start_tls().await;
    put_all(&etcd, &[WEB]).await;
    let dir = etcd.tls_dir().unwrap();
    // A CA that did not sign etcd's certificate; the client certificate itself is good.
    let other = tempfile::tempdir().unwrap();
    make_certificates(other.path());
    let (wrong_ca, pem, key) = (
        path_arg(other.path(), "ca.pem"),
        path_arg(dir, "client.pem"),
        path_arg(dir, "client.key"),
    );
    let upstream = FakeUpstream::start().await;
    let addr = format!("127.0.0.1:{}", free_tcp_udp_port());
    let mut skydns = RunningBinary::start(
        "skydns",
        &[
            "-machines",
            &etcd.endpoint(),
            "-addr",
            &addr,
            "-nameservers",
            &upstream.addr().to_string(),
            "-ca-cert",
            &wrong_ca,
            "-tls-pem",
            &pem,
            "-tls-key",
            &key,
        ],
        &[],
    );
    let log = wait_until("the failed etcd connection to be logged", WAIT, || {
        let log = skydns.log();
        async move { log.contains("connect to etcd").then_some(log) }
    })
    .await;
    let line = log
        .lines()
        .find(|l| l.contains("connect to etcd"))
        .unwrap_or_default();
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("failed, will retry"), "{line}");
    assert!(
        line.contains(&etcd.endpoint()),
        "names the endpoint: {line}"
    );
    assert!(
        line.contains("invalid peer certificate"),
        "says what is wrong: {line}"
    );
    // Still running, retrying; nothing is served before etcd has been read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    skydns.assert_running();
    let quick = DnsClient::new(addr.parse().unwrap()).with_timeout(Duration::from_millis(300));
    assert!(quick.udp("web.skydns.local.", RecordType::A).await.is_err());
    assert!(!skydns.log().contains("ready for queries"));
    let status = skydns.stop();
    assert!(status.success(), "a stop while retrying is clean: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_each_query_and_the_default_logs_none() {
    let etcd = EtcdServer::start().await;
    put_all(&etcd, &[WEB]).await;
    let upstream = FakeUpstream::start().await;
    let (endpoint, forwarder) = (etcd.endpoint(), upstream.addr().to_string());
    for verbose in [true, false] {
        let addr = format!("127.0.0.1:{}", free_tcp_udp_port());
        let mut args = vec![
            "-machines",
            &endpoint,
            "-addr",
            &addr,
            "-nameservers",
            &forwarder,
        ];
        if verbose {
            args.push("-verbose");
        }
        // What is logged by default, whatever the test runner's RUST_LOG says.
        let skydns = RunningBinary::start_without("skydns", &args, &[], &["RUST_LOG"]);
        let client = DnsClient::new(addr.parse().unwrap());
        answered(
            &client,
            "skydns to answer",
            "web.skydns.local.",
            RecordType::A,
        )
        .await;
        // A query of its own (the case is kept in the log), answered NXDOMAIN.
        let reply = client
            .udp("Verbose-Probe.skydns.local.", RecordType::AAAA)
            .await
            .unwrap();
        assert_eq!(rcode(&reply), ResponseCode::NXDomain);
        let expected = "query name=Verbose-Probe.skydns.local. qtype=AAAA client=127.0.0.1:";
        if verbose {
            let log = wait_until("the query to be logged", WAIT, || {
                let log = skydns.log();
                async move { log.contains(expected).then_some(log) }
            })
            .await;
            let line = log
                .lines()
                .find(|l| l.contains(expected))
                .unwrap_or_default();
            assert!(line.contains("INFO"), "{line}");
            assert!(
                log.contains("query name=web.skydns.local. qtype=A client=127.0.0.1:"),
                "every query is logged:\n{log}"
            );
        } else {
            // The reply is sent after the line would have been written; give it time anyway.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let log = skydns.log();
            assert!(
                log.contains("ready for queries"),
                "the log is captured:\n{log}"
            );
            assert!(!log.contains("query name="), "no query logged:\n{log}");
        }
        let status = skydns.stop();
        assert!(status.success(), "exit status {status}");
    }
}
