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
    wait_for_two_web_answers(&client, "the later write to be served").await;
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
    wait_for_two_web_answers(&client, "the later write to be served over TLS").await;
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

/// Debian's tool for running a program as a socket-activated service would be run.
const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// How socket activation is turned on.
#[derive(Debug, Clone, Copy)]
enum Activation {
    /// `SKYDNS_SYSTEMD=1` in the environment (the `-systemd` flag's variable).
    Environment,
    /// `"systemd": true` in `/skydns/config`, with neither flag nor variable.
    Document,
}

/// Runs the binary as systemd would from a .socket unit with `ListenDatagram=` and
/// `ListenStream=` on one port: `systemd-socket-activate -d` binds the UDP socket and, on the
/// first datagram, execs a second `systemd-socket-activate`, which passes that socket on and
/// adds a TCP listener on the same port, then execs skydns with `LISTEN_FDS=2` (fd 3 UDP, fd
/// 4 TCP) and `LISTEN_PID` its own pid. skydns answers the record from etcd over both, binds
/// nothing on `-addr`, logs so, and sends `READY=1` (and `STOPPING=1`) to `NOTIFY_SOCKET`.
async fn serves_the_sockets_systemd_hands_over(activation: Activation) {
    let config = match activation {
        Activation::Environment => r#"{"domain":"staging.example.local."}"#,
        Activation::Document => r#"{"domain":"staging.example.local.","systemd":true}"#,
    };
    let etcd = EtcdServer::start().await;
    put_all(
        &etcd,
        &[
            ("/skydns/config", config),
            (
                "/skydns/local/example/staging/web/w1",
                r#"{"host":"10.0.0.5","port":8080}"#,
            ),
        ],
    )
    .await;
    let upstream = FakeUpstream::start().await;
    let port = free_tcp_udp_port();
    let addr = format!("127.0.0.1:{port}");
    // What -addr names: skydns must leave it alone.
    let unused_port = loop {
        let candidate = free_tcp_udp_port();
        if candidate != port {
            break candidate;
        }
    };
    let unused = format!("127.0.0.1:{unused_port}");
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let notify_path = dir.path().join("notify");
    let notify = tokio::net::UnixDatagram::bind(&notify_path)
        .unwrap_or_else(|e| panic!("bind NOTIFY_SOCKET: {e}"));
    let log_path = dir.path().join("stderr");
    let log =
        std::fs::File::create(&log_path).unwrap_or_else(|e| panic!("create the log file: {e}"));

    // systemd-socket-activate gives its child only LISTEN_* and the variables named by -E
    // (as a unit's clean environment): each of the two levels passes them on.
    let mut environment = vec![format!("NOTIFY_SOCKET={}", notify_path.display())];
    if let Activation::Environment = activation {
        environment.push("SKYDNS_SYSTEMD=1".to_owned());
    }
    let pass: Vec<String> = environment
        .iter()
        .map(|e| format!("--setenv={e}"))
        .collect();
    let mut command = Command::new(SOCKET_ACTIVATE);
    command
        .args(["--datagram", "--listen", &addr])
        .args(&pass)
        .args([SOCKET_ACTIVATE, "--listen", &addr])
        .args(&pass)
        .arg(BIN)
        .args(["-machines", &etcd.endpoint(), "-addr", &unused])
        .args(["-nameservers", &upstream.addr().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut child =
        spawn_tied(command).unwrap_or_else(|e| panic!("spawn systemd-socket-activate: {e}"));

    // The first query is the datagram that starts skydns; it is answered once etcd is read.
    let client = DnsClient::new(addr.parse().unwrap_or_else(|e| panic!("address: {e}")));
    let name = "web.staging.example.local.";
    let reply = wait_until("the activated binary to answer over UDP", WAIT, || {
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
        strings(&["web.staging.example.local. 3600 IN A 10.0.0.5"])
    );
    let reply = client
        .tcp(name, RecordType::SRV)
        .await
        .unwrap_or_else(|e| panic!("TCP query: {e}"));
    assert_eq!(
        set(&reply.answers),
        strings(&[
            "web.staging.example.local. 3600 IN SRV 10 100 8080 w1.web.staging.example.local."
        ])
    );

    let mut message = [0u8; 256];
    let len = tokio::time::timeout(WAIT, notify.recv(&mut message))
        .await
        .unwrap_or_else(|e| panic!("no READY=1 in time: {e}"))
        .unwrap_or_else(|e| panic!("NOTIFY_SOCKET: {e}"));
    assert_eq!(&message[..len], b"READY=1\n");

    // -addr was not bound: both its ports are still free.
    assert!(
        std::net::UdpSocket::bind(&unused).is_ok(),
        "udp {unused} was bound"
    );
    assert!(
        std::net::TcpListener::bind(&unused).is_ok(),
        "tcp {unused} was bound"
    );

    terminate(&child).unwrap_or_else(|e| panic!("SIGTERM: {e}"));
    let status = wait_until("the activated binary to exit", WAIT, || {
        let exited = child
            .try_wait()
            .unwrap_or_else(|e| panic!("wait for the child: {e}"));
        async move { exited }
    })
    .await;
    assert!(status.success(), "exit status {status}");
    let len = tokio::time::timeout(WAIT, notify.recv(&mut message))
        .await
        .unwrap_or_else(|e| panic!("no STOPPING=1 in time: {e}"))
        .unwrap_or_else(|e| panic!("NOTIFY_SOCKET: {e}"));
    assert_eq!(&message[..len], b"STOPPING=1\n");

    let log = std::fs::read_to_string(&log_path).unwrap_or_else(|e| panic!("read the log: {e}"));
    assert!(
        log.contains(&format!(
            "ready for queries on staging.example.local. for udp://{addr} and tcp://{addr}"
        )),
        "{log}"
    );
    assert!(log.contains("-addr (dns_addr) is not used"), "{log}");
    assert!(log.contains(&format!("ignored={unused}")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skydns_systemd_serves_the_udp_and_tcp_sockets_systemd_hands_over() {
    serves_the_sockets_systemd_hands_over(Activation::Environment).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_true_in_the_etcd_document_turns_socket_activation_on_as_the_flag_does() {
    serves_the_sockets_systemd_hands_over(Activation::Document).await;
}

/// `-systemd` with nothing to serve is one line naming what is missing and exit 1, before
/// reaching for etcd (the original fails the same way, `no UDP or TCP sockets supplied by
/// systemd`, once it has read etcd).
#[test]
fn systemd_without_sockets_is_one_error_line_and_a_failed_exit() {
    let prefix = "skydns: no UDP or TCP sockets supplied by systemd (-systemd): ";
    // (the sh -c script that sets the variables, what the line then says)
    let cases = [
        // Not started by systemd at all.
        (
            "exec \"$0\" -systemd -machines http://127.0.0.1:1",
            "LISTEN_FDS is not set".to_owned(),
        ),
        // Sockets for another process (systemd's own check).
        (
            "LISTEN_FDS=2 LISTEN_PID=1 exec \"$0\" -systemd -machines http://127.0.0.1:1",
            "they are for process \"1\" (LISTEN_PID), not this one (".to_owned(),
        ),
        (
            "LISTEN_FDS=2 exec \"$0\" -systemd -machines http://127.0.0.1:1",
            "LISTEN_PID is not set".to_owned(),
        ),
        (
            "LISTEN_FDS=0 LISTEN_PID=$$ exec \"$0\" -systemd -machines http://127.0.0.1:1",
            "LISTEN_FDS is 0 and none".to_owned(),
        ),
        // Descriptor 3 is a file, not a socket.
        (
            "LISTEN_FDS=1 LISTEN_PID=$$ exec \"$0\" -systemd -machines http://127.0.0.1:1 3</dev/null",
            "LISTEN_FDS is 1 and none of the descriptors is a UDP socket or a TCP listener"
                .to_owned(),
        ),
    ];
    for (script, expected) in cases {
        let output = Command::new("/bin/sh")
            .args(["-c", script, BIN])
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("SKYDNS_SYSTEMD")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{script}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{script}: {stderr}");
        assert!(
            stderr.starts_with(prefix) && stderr.contains(&expected),
            "{script}: {stderr}"
        );
    }
}

/// The README's `.socket` and `.service` pair is what systemd accepts (`systemd-analyze
/// verify`, with the built binary as `ExecStart`), and hands skydns UDP and TCP on one port.
#[test]
fn the_readme_socket_activation_units_pass_systemd_analyze_verify() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for block in readme.split("```ini\n").skip(1) {
        let text = block.split("```").next().unwrap();
        let name = text.lines().next().unwrap().trim_start_matches("# ").trim();
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace("/usr/local/bin/skydns", BIN)).unwrap();
        units.push((name.to_owned(), text.to_owned(), path));
    }
    let names: Vec<&str> = units.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(names, ["skydns.socket", "skydns.service"]);
    let socket = &units[0].1;
    assert!(
        socket.contains("ListenDatagram=10.0.0.5:53\nListenStream=10.0.0.5:53\n"),
        "{socket}"
    );
    let service = &units[1].1;
    assert!(service.contains("Type=notify\n"), "{service}");
    assert!(
        service.contains("ExecStart=/usr/local/bin/skydns -systemd\n"),
        "{service}"
    );

    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(units.iter().map(|(_, _, path)| path))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits until `web.skydns.local.` answers with both of its A records (a later write served).
async fn wait_for_two_web_answers(client: &harness::DnsClient, what: &str) {
    wait_until(what, WAIT, || {
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
}
