//! TLS: an etcd that requires client certificates (made with the `openssl` CLI), and the real
//! binary given `-etcd-cacert`, `-etcd-cert` and `-etcd-key`; and the Docker Engine reached over
//! verified TLS (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`).

mod support;

use harness::tls::DockerTlsFront;
use harness::{ContainerSpec, EtcdServer, TestDocker};
use support::{Registrator, wait_key};

#[tokio::test]
async fn records_are_written_over_tls_with_a_client_certificate() {
    // etcd serves clients only over TLS, and only those with a certificate from its CA.
    let etcd = EtcdServer::start_tls().await;
    let mut client = etcd.client().await;
    let dir = etcd.tls_dir().unwrap();
    let file = |name: &str| dir.join(name);
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let registry = format!("skydns2://{}/tls.example.local", etcd.host_port());
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
