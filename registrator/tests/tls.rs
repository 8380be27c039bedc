//! TLS to etcd: an etcd that requires client certificates (made with the `openssl` CLI), and
//! the real binary given `-etcd-cacert`, `-etcd-cert` and `-etcd-key`.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{EtcdSettings, EtcdTls};
use harness::process::{free_tcp_port, spawn_tied};
use harness::{ContainerSpec, TestDocker, wait_until};
use support::{Registrator, WAIT, wait_key};

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, usage) in [("server", "serverAuth"), ("client", "clientAuth")] {
        let ext = format!(
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\nkeyUsage=critical,digitalSignature\n"
        );
        std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write the extension file");
        let (key, csr, pem, extfile) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
        );
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn records_are_written_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let file = |name: &str| dir.path().join(name);
    let (client_port, peer_port) = (free_tcp_port(), free_tcp_port());
    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut etcd = Command::new(harness::etcd::etcd_binary());
    etcd.args(["--name", "tls", "--data-dir"])
        .arg(file("data"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("tls={peer_url}")])
        .arg("--cert-file")
        .arg(file("server.pem"))
        .arg("--key-file")
        .arg(file("server.key"))
        .arg("--trusted-ca-file")
        .arg(file("ca.pem"))
        .arg("--client-cert-auth")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _etcd = KillOnDrop(spawn_tied(etcd).expect("start etcd"));

    let tls = EtcdTls {
        ca: Some(file("ca.pem")),
        cert: Some(file("client.pem")),
        key: Some(file("client.key")),
    };
    let settings = EtcdSettings::new(&format!("127.0.0.1:{client_port}"))
        .unwrap()
        .with_tls(tls)
        .unwrap();
    let mut client = wait_until("etcd over TLS", WAIT, || {
        let settings = settings.clone();
        async move { settings.connect().await.ok() }
    })
    .await;

    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let registry = format!("skydns2://127.0.0.1:{client_port}/tls.example.local");
    let _registrator = Registrator::start(&[
        "-etcd-cacert",
        ca.to_str().unwrap(),
        "-etcd-cert",
        cert.to_str().unwrap(),
        "-etcd-key",
        key.to_str().unwrap(),
        &registry,
    ]);
    let docker = TestDocker::connect().await;
    let container = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "secure")
                .env("SERVICE_ID", "s1"),
        )
        .await;
    let value = common::ServiceRecord::new("127.0.0.1", container.host_port("80/tcp").await)
        .to_json()
        .unwrap();
    wait_key(
        &mut client,
        "/skydns/local/example/tls/secure/s1",
        Some(&value),
    )
    .await;
}
