//! The TLS transport against a real TLS listener on loopback, with a CA made for the test and
//! the system roots disabled.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use harness::{ContainerSpec, TestDocker, wait_until};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::{Logspout, WAIT, unique};
use tokio::io::{AsyncBufReadExt, BufReader};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "openssl {args:?}");
}

/// A CA and a certificate for `localhost` signed by it.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=logspout-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ];
    ca.extend(ec);
    openssl(dir, &ca);
    let mut csr = vec![
        "req",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ];
    csr.extend(ec);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
    );
}

/// Accepts TLS connections on 127.0.0.1 and collects the lines received.
async fn tls_receiver(dir: &Path) -> (u16, Arc<Mutex<Vec<String>>>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
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
    let (port, lines) = tls_receiver(dir.path()).await;
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
    let (port, lines) = tls_receiver(dir.path()).await;
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
