//! The demo behind `docker/demo.sh`: the seed's scenario on this machine with the real binaries.
//! A real etcd; skydns, registrator and logspout as the seed's units run them; two
//! elasticsearch containers publishing 9200 and 9300. It shows the records registrator wrote,
//! skydns answering A and SRV for `elasticsearch-9200.staging.example.local` (round robin), a
//! container's output arriving at a syslog receiver, and a stopped container leaving the
//! answer. Everything it starts is stopped and removed when it ends.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use etcd_client::GetOptions;
use harness::dns::srv_ports;
use harness::process::{RunningBinary, free_tcp_udp_port};
use harness::{ContainerSpec, DnsClient, EtcdServer, SyslogReceiver, TestDocker, wait_until};
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};

const NAME: &str = "elasticsearch-9200.staging.example.local.";
const WAIT: Duration = Duration::from_secs(30);

fn show(reply: &Message) {
    for record in &reply.answers {
        println!("     {record}");
    }
    for record in &reply.additionals {
        println!("     (additional) {record}");
    }
}

#[tokio::main]
async fn main() {
    println!("== etcd (Debian's etcd-server) on a free loopback port, domain set as in the seed");
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put("/skydns/config", r#"{"domain":"example.local."}"#, None)
        .await
        .expect("etcd put");
    println!(
        "   {}  /skydns/config = {{\"domain\":\"example.local.\"}}",
        etcd.endpoint()
    );

    let dns_addr = format!("127.0.0.1:{}", free_tcp_udp_port());
    println!(
        "== skydns  ETCD_MACHINES={} SKYDNS_ADDR={dns_addr}",
        etcd.endpoint()
    );
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
    println!("== registrator -ttl-refresh 30 -ttl 40 {registry}");
    let mut registrator = RunningBinary::start(
        "registrator",
        &["-ttl-refresh", "30", "-ttl", "40", &registry],
        &[("DOCKER_HOST", "unix:///var/run/docker.sock")],
    );
    let receiver = SyslogReceiver::start().await;
    let route = format!("syslog+tcp://127.0.0.1:{}", receiver.port());
    println!("== logspout {route}   (a syslog receiver listens there)");
    let mut logspout = RunningBinary::start(
        "logspout",
        &[&route],
        &[
            ("DOCKER_HOST", "unix:///var/run/docker.sock"),
            ("PORT", &free_tcp_udp_port().to_string()),
            ("HTTP_BIND_ADDRESS", "127.0.0.1"),
        ],
    );

    println!(
        "== docker run elasticsearch:1.5.2 twice, -p 9200 -p 9300 -e SERVICE_ID=elasticsearchN"
    );
    let docker = TestDocker::connect().await;
    let tagged = Command::new("docker")
        .args(["tag", harness::docker::TEST_IMAGE, "elasticsearch:1.5.2"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(tagged, "docker tag of the test image failed");
    let mut nodes = Vec::new();
    for (n, host_ip) in [(1, "127.0.0.1"), (2, "127.0.0.2")] {
        let node = docker
            .run(
                ContainerSpec::shell(&format!(
                    "echo \"[elasticsearch{n}] started, publish_host {host_ip}\"; \
                     trap 'exit 0' TERM; while true; do sleep 1; done"
                ))
                .image("elasticsearch:1.5.2")
                .env("SERVICE_ID", &format!("elasticsearch{n}"))
                .publish_on(host_ip, 9200)
                .publish_on(host_ip, 9300),
            )
            .await;
        println!(
            "   {} ({}): 9200 -> {host_ip}:{}, 9300 -> {host_ip}:{}",
            node.name(),
            node.short_id(),
            node.host_port("9200/tcp").await,
            node.host_port("9300/tcp").await
        );
        nodes.push(node);
    }
    let mut ports = BTreeSet::new();
    for node in &nodes {
        ports.insert(node.host_port("9200/tcp").await);
    }

    let dns = DnsClient::new(dns_addr.parse().expect("a socket address"));
    wait_until("both instances in the SRV answer", WAIT, || async {
        let reply = dns.udp(NAME, RecordType::SRV).await.ok()?;
        (srv_ports(&reply) == ports).then_some(())
    })
    .await;

    println!("== what registrator wrote: etcdctl get --prefix /skydns/local/");
    let listing = client
        .get("/skydns/local/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("etcd get");
    for kv in listing.kvs() {
        println!(
            "   {} = {}   (lease {:x})",
            kv.key_str().unwrap_or("?"),
            kv.value_str().unwrap_or("?"),
            kv.lease()
        );
    }

    println!("== dig @{dns_addr} {NAME} A   (three times: round robin)");
    for _ in 0..3 {
        let reply = dns.udp(NAME, RecordType::A).await.expect("an A answer");
        let order: Vec<String> = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        println!("     {}", order.join(", "));
    }
    println!("== dig @{dns_addr} {NAME} SRV   (over TCP)");
    show(&dns.tcp(NAME, RecordType::SRV).await.expect("an SRV answer"));

    println!("== the first container's output, as the syslog receiver got it");
    let shipped = receiver
        .wait_for_msg("[elasticsearch1] started", WAIT)
        .await;
    println!("   {}", shipped.raw_text());

    println!(
        "== docker stop {}: its record goes, the answer shrinks",
        nodes[1].name()
    );
    nodes[1].stop(Duration::from_secs(5)).await;
    let remaining = BTreeSet::from([nodes[0].host_port("9200/tcp").await]);
    wait_until("the stopped instance to leave the answer", WAIT, || async {
        let reply = dns.udp(NAME, RecordType::SRV).await.ok()?;
        (srv_ports(&reply) == remaining).then_some(())
    })
    .await;
    show(&dns.udp(NAME, RecordType::SRV).await.expect("an SRV answer"));

    skydns.assert_running();
    registrator.assert_running();
    logspout.assert_running();
    println!("== done: stopping logspout, registrator (removes its records), skydns, etcd");
}
