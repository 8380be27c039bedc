//! The demo behind `docker/demo.sh`: starts a real etcd and two elasticsearch-like containers
//! publishing 9200 and 9300 (as in the seed's scenario), stores their service records with the
//! SkyDNS key schema, lists them back from etcd and shows the containers' output. Everything it
//! starts is removed when it ends.

use std::time::Duration;

use common::{DomainName, KeySchema, Protocol, Service};
use etcd_client::GetOptions;
use harness::{ContainerSpec, EtcdServer, TestDocker};

#[tokio::main]
async fn main() {
    println!("== starting etcd (Debian's etcd-server) on a free loopback port");
    let etcd = EtcdServer::start().await;
    println!("   etcd is serving at {}", etcd.endpoint());

    println!("== starting two elasticsearch-like containers with -p 9200 -p 9300");
    let docker = TestDocker::connect().await;
    let mut containers = Vec::new();
    for id in ["es1", "es2"] {
        let container = docker
            .run(
                ContainerSpec::shell(&format!(
                    "echo \"[{id}] node started\"; echo \"[{id}] warming up\" >&2; \
                     trap 'exit 0' TERM; while true; do sleep 1; done"
                ))
                .env("SERVICE_ID", id)
                .publish(9200)
                .publish(9300),
            )
            .await;
        println!(
            "   {} ({}) SERVICE_ID={id}: 9200/tcp -> 127.0.0.1:{}, 9300/tcp -> 127.0.0.1:{}",
            container.name(),
            container.short_id(),
            container.host_port("9200/tcp").await,
            container.host_port("9300/tcp").await,
        );
        containers.push((id, container));
    }

    println!("== writing one record per published port under staging.example.local");
    let schema = KeySchema::default();
    let domain = DomainName::parse("staging.example.local").expect("valid domain");
    let mut client = etcd.client().await;
    for (id, container) in &containers {
        for port in [9200, 9300] {
            let service = Service {
                id: (*id).to_owned(),
                name: format!("elasticsearch-{port}"),
                ip: "127.0.0.1".to_owned(),
                port: container.host_port(&format!("{port}/tcp")).await,
                protocol: Protocol::Tcp,
                ..Service::default()
            };
            let key = service.skydns_key(&schema, &domain).expect("valid key");
            let value = service.record().to_json().expect("encodable record");
            client
                .put(key.as_str(), value.as_str(), None)
                .await
                .expect("etcd put");
        }
    }

    println!("== etcdctl get --prefix {}", schema.watch_prefix());
    let listing = client
        .get(schema.watch_prefix(), Some(GetOptions::new().with_prefix()))
        .await
        .expect("etcd get");
    for kv in listing.kvs() {
        let key = kv.key_str().unwrap_or("<binary key>");
        let name = schema
            .name(key)
            .map(|n| n.to_string())
            .unwrap_or_else(|e| e.to_string());
        println!(
            "   {key} = {}\n     answers for {name}",
            kv.value_str().unwrap_or("<binary value>")
        );
    }

    println!("== the containers' output, read through the Docker API");
    for (_, container) in &containers {
        let logs = container
            .wait_for_log("warming up", Duration::from_secs(10))
            .await;
        print!("   stdout: {}   stderr: {}", logs.stdout, logs.stderr);
    }

    println!("== cleaning up: containers removed, etcd stopped");
}
