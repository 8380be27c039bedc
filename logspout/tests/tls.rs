//! TLS: the TLS transport against a real TLS listener on loopback, with a CA made for the test
//! and the system roots disabled; and the Docker Engine reached over verified TLS
//! (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`).

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use harness::tls::{DockerTlsFront, make_certificates};
use harness::{ContainerSpec, SyslogReceiver, TestDocker, wait_until};
use support::{Logspout, WAIT, unique};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Accepts TLS connections on 127.0.0.1 and collects the lines received; with `client_auth`
/// only clients presenting a certificate from the test CA complete the handshake.
async fn tls_receiver(dir: &Path, client_auth: bool) -> (u16, Arc<Mutex<Vec<String>>>) {
    let config = harness::tls::server_config(dir, client_auth);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let store = lines.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut reader = BufReader::new(tls).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    store.lock().unwrap().push(line);
                }
            });
        }
    });
    (port, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_verifies_the_destination_with_the_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let (port, lines) = tls_receiver(dir.path(), false).await;
    let docker = TestDocker::connect().await;
    let name = unique("ls-tls");
    let routes = format!("syslog+tls://localhost:{port}?filter.name={name}");
    let ca = dir.path().join("ca.pem").display().to_string();
    let env = [
        ("LOGSPOUT_TLS_CA_CERTS", ca.as_str()),
        ("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true"),
    ];
    let _logspout = Logspout::start(Some(&routes), &env).await;
    let container = docker
        .run(
            ContainerSpec::shell("echo secret; sleep 30")
                .name(&name)
                .hostname("abc123"),
        )
        .await;
    let pid = container.inspect().await.state.and_then(|s| s.pid).unwrap();
    let line = wait_until("a line over TLS", WAIT, || async {
        lines.lock().unwrap().first().cloned()
    })
    .await;
    let (head, tail) = line.split_at(6);
    assert_eq!(head, "<14>1 ");
    assert!(
        tail.ends_with(&format!(" abc123 {name} {pid} - - secret")),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_tls_destination_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let (port, lines) = tls_receiver(dir.path(), false).await;
    let other = tempfile::tempdir().unwrap();
    make_certificates(other.path());
    let docker = TestDocker::connect().await;
    let name = unique("ls-untrusted");
    let routes = format!("syslog+tls://localhost:{port}?filter.name={name}");
    let wrong_ca = other.path().join("ca.pem").display().to_string();
    let env = [
        ("LOGSPOUT_TLS_CA_CERTS", wrong_ca.as_str()),
        ("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true"),
    ];
    let logspout = Logspout::start(Some(&routes), &env).await;
    let _c = docker
        .run(ContainerSpec::shell("echo secret; sleep 30").name(&name))
        .await;
    wait_until("a refused TLS handshake", WAIT, || async {
        logspout
            .log()
            .contains("cannot connect, messages stay queued")
            .then_some(())
    })
    .await;
    assert!(lines.lock().unwrap().is_empty());
    assert!(
        logspout.log().contains("invalid peer certificate"),
        "{}",
        logspout.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_to_a_destination_that_requires_one() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let (port, lines) = tls_receiver(dir.path(), true).await;
    let docker = TestDocker::connect().await;
    let name = unique("ls-mtls");
    let routes = format!("syslog+tls://localhost:{port}?filter.name={name}");
    let path = |file: &str| dir.path().join(file).display().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let trust = [
        ("LOGSPOUT_TLS_CA_CERTS", ca.as_str()),
        ("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true"),
        ("LOGSPOUT_TLS_HARDENING", "true"),
    ];
    // Without the client certificate the destination refuses every handshake: nothing
    // arrives, logspout warns, keeps running and keeps trying.
    let mut without = Logspout::start(Some(&routes), &trust).await;
    let _c = docker
        .run(ContainerSpec::shell("while true; do echo mtls-line; sleep 0.2; done").name(&name))
        .await;
    wait_until("two refused attempts", WAIT, || async {
        (without.metric("logspout_route_reconnects_total").await >= 2.0).then_some(())
    })
    .await;
    let log = without.log();
    assert!(
        log.contains("cannot connect, messages stay queued; route stalled, retrying")
            && log.contains("CertificateRequired"),
        "{log}"
    );
    assert!(!log.contains("destination closed the connection"), "{log}");
    assert!(without.is_running());
    assert!(
        lines.lock().unwrap().is_empty(),
        "delivered without a client certificate"
    );
    drop(without);

    let mut env = trust.to_vec();
    env.extend([
        ("LOGSPOUT_TLS_CLIENT_CERT", cert.as_str()),
        ("LOGSPOUT_TLS_CLIENT_KEY", key.as_str()),
    ]);
    let _with = Logspout::start(Some(&routes), &env).await;
    let line = wait_until("a line over mutual TLS", WAIT, || async {
        lines.lock().unwrap().first().cloned()
    })
    .await;
    assert!(
        line.starts_with("<14>1 ") && line.ends_with(" - - mtls-line"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_is_reached_over_verified_tls_with_docker_cert_path() {
    let front = DockerTlsFront::start();
    let receiver = SyslogReceiver::start().await;
    let docker = TestDocker::connect().await;
    let name = unique("ls-docker-tls");
    let routes = format!(
        "syslog+tcp://127.0.0.1:{}?filter.name={name}",
        receiver.port()
    );
    let (host, cert_path) = (front.docker_host(), front.cert_path());
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", cert_path.to_str().unwrap()),
    ];
    let _logspout = Logspout::start(Some(&routes), &env).await;
    let _c = docker
        .run(ContainerSpec::shell("echo through-tls; sleep 30").name(&name))
        .await;
    let message = receiver.wait_for_msg("through-tls", WAIT).await;
    assert!(
        message.raw_text().ends_with("- - through-tls"),
        "{}",
        message.raw_text()
    );

    // Without the client certificate the same endpoint refuses logspout at start-up.
    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = support::run_to_exit(
        Some(&routes),
        &[
            ("DOCKER_HOST", host.as_str()),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", empty.path().to_str().unwrap()),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("ca.pem cannot be read"), "{stderr}");
}
