//! The seed's scenario end to end, with the real binaries: registrator sees two elasticsearch
//! containers start and writes their records to etcd; skydns answers
//! `elasticsearch-9200.staging.example.local` with both instances; logspout ships a container's
//! output to a syslog receiver; stopping a container removes its answer.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use harness::process::{RunningBinary, free_tcp_udp_port};
use harness::{ContainerSpec, DnsClient, EtcdServer, SyslogReceiver, TestDocker, wait_until};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const WAIT: Duration = Duration::from_secs(30);
const IMAGE: &str = "elasticsearch:1.5.2";

fn tag_test_image_as_elasticsearch() {
    let status = Command::new("docker")
        .args(["tag", harness::docker::TEST_IMAGE, IMAGE])
        .status()
        .expect("run docker tag");
    assert!(status.success(), "docker tag {IMAGE} failed");
}

/// The SRV ports answered for `name`, or None while skydns does not answer NOERROR.
async fn srv_ports(dns: &DnsClient, name: &str) -> Option<BTreeSet<u16>> {
    let reply = dns.udp(name, RecordType::SRV).await.ok()?;
    (reply.metadata.response_code == ResponseCode::NoError).then(|| harness::dns::srv_ports(&reply))
}

#[tokio::test]
async fn registrator_and_skydns_serve_the_seeds_elasticsearch_and_logspout_ships_its_logs() {
    let etcd = EtcdServer::start().await;
    let docker = TestDocker::connect().await;
    tag_test_image_as_elasticsearch();
    let mut client = etcd.client().await;
    client
        .put("/skydns/config", r#"{"domain":"example.local."}"#, None)
        .await
        .unwrap();

    let dns_port = free_tcp_udp_port();
    let dns_addr = format!("127.0.0.1:{dns_port}");
    let mut skydns = RunningBinary::start(
        "skydns",
        &[],
        &[
            ("ETCD_MACHINES", etcd.endpoint().as_str()),
            ("SKYDNS_ADDR", dns_addr.as_str()),
            ("SKYDNS_NAMESERVERS", "127.0.0.1:9"),
        ],
    );
    let registry = format!("skydns2://{}/staging.example.local", etcd.host_port());
    let mut registrator = RunningBinary::start(
        "registrator",
        &[
            "-ip",
            "127.0.0.1",
            "-ttl-refresh",
            "30",
            "-ttl",
            "40",
            &registry,
        ],
        &[("DOCKER_HOST", "unix:///var/run/docker.sock")],
    );
    let receiver = SyslogReceiver::start().await;
    let route = format!("syslog+tcp://127.0.0.1:{}", receiver.port());
    let mut logspout = RunningBinary::start(
        "logspout",
        &[&route],
        &[
            ("DOCKER_HOST", "unix:///var/run/docker.sock"),
            ("PORT", &free_tcp_udp_port().to_string()),
            ("HTTP_BIND_ADDRESS", "127.0.0.1"),
        ],
    );

    let mut nodes = Vec::new();
    for n in 1..=2 {
        let node = docker
            .run(
                ContainerSpec::shell(&format!(
                    "echo \"elasticsearch{n} started\"; trap 'exit 0' TERM; \
                     while true; do sleep 1; done"
                ))
                .image(IMAGE)
                .env("SERVICE_ID", &format!("elasticsearch{n}"))
                .publish(9200)
                .publish(9300),
            )
            .await;
        nodes.push(node);
    }
    let mut ports = BTreeSet::new();
    for node in &nodes {
        ports.insert(node.host_port("9200/tcp").await);
    }

    let dns = DnsClient::new(dns_addr.parse().unwrap());
    let name = "elasticsearch-9200.staging.example.local.";
    let answered = wait_until("both instances in the SRV answer", WAIT, || async {
        srv_ports(&dns, name).await.filter(|got| *got == ports)
    })
    .await;
    assert_eq!(answered, ports);

    let a = dns.tcp(name, RecordType::A).await.unwrap();
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(!a.answers.is_empty());
    assert!(a.answers.iter().all(|r| matches!(&r.data,
        RData::A(ip) if ip.0 == std::net::Ipv4Addr::LOCALHOST)));

    let shipped = receiver.wait_for_msg("elasticsearch1 started", WAIT).await;
    assert_eq!(shipped.msg, "elasticsearch1 started");

    nodes[1].stop(Duration::from_secs(5)).await;
    let first_only = BTreeSet::from([nodes[0].host_port("9200/tcp").await]);
    wait_until("the stopped instance to leave the answer", WAIT, || async {
        srv_ports(&dns, name).await.filter(|got| *got == first_only)
    })
    .await;

    skydns.assert_running();
    registrator.assert_running();
    logspout.assert_running();
}
