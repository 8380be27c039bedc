//! TLS: an etcd that requires client certificates (made with the `openssl` CLI), and the real
//! binary given `-etcd-cacert`, `-etcd-cert` and `-etcd-key`; and the Docker Engine reached over
//! verified TLS (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`).

mod support;

use std::process::{Child, Command, Stdio};

use common::{EtcdSettings, EtcdTls};
use harness::process::{free_tcp_port, spawn_tied};
use harness::tls::{DockerTlsFront, make_certificates};
use harness::{ContainerSpec, EtcdServer, TestDocker, wait_until};
use support::{Registrator, WAIT, wait_key};

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
    registers_a_published_container(&mut client, "secure", "/skydns/local/example/tls/secure/s1")
        .await;
}

#[tokio::test]
async fn docker_is_reached_over_verified_tls_with_docker_cert_path() {
    let front = DockerTlsFront::start();
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = format!("skydns2://{}/dockertls.example.local", etcd.host_port());
    let cert_path = front.cert_path();
    let _registrator = Registrator::start_with_env(
        &["-ip", "127.0.0.1", &registry],
        &[
            ("DOCKER_HOST", &front.docker_host()),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", cert_path.to_str().unwrap()),
        ],
    );
    registers_a_published_container(
        &mut client,
        "overtls",
        "/skydns/local/example/dockertls/overtls/s1",
    )
    .await;
}

/// Runs a container publishing port 80 as `SERVICE_NAME=name`, `SERVICE_ID=s1`, and waits for
/// its record at `key`.
async fn registers_a_published_container(client: &mut etcd_client::Client, name: &str, key: &str) {
    let docker = TestDocker::connect().await;
    let container = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", name)
                .env("SERVICE_ID", "s1"),
        )
        .await;
    let value = common::ServiceRecord::new("127.0.0.1", container.host_port("80/tcp").await)
        .to_json()
        .expect("a record serialises");
    wait_key(client, key, Some(&value)).await;
}
