//! Shared setup of the skydns integration tests: a real etcd, a fake upstream on loopback, and
//! skydns itself started in-process (`skydns::run`) on a free loopback port.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use harness::process::{free_tcp_port, free_tcp_udp_port};
use harness::{DnsClient, EtcdServer, FakeUpstream, wait_until};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use skydns::Flags;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(30);

/// A running in-process skydns with its etcd and fake upstream.
pub struct Running {
    pub etcd: EtcdServer,
    pub upstream: FakeUpstream,
    pub addr: SocketAddr,
    pub client: DnsClient,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), skydns::RunError>>>,
}

/// Parses flags as the binary does (Go-style single dashes allowed).
pub fn flags(args: &[String]) -> Flags {
    let mut argv = vec!["skydns".to_owned()];
    argv.extend(args.iter().cloned());
    Flags::try_parse_from(common::cli::go_style_args(&Flags::command(), argv))
        .unwrap_or_else(|e| panic!("bad test flags {args:?}: {e}"))
}

/// Writes keys before (or while) skydns runs.
pub async fn put_all(etcd: &EtcdServer, entries: &[(&str, &str)]) {
    let mut client = etcd.client().await;
    for (key, value) in entries {
        client.put(*key, *value, None).await.unwrap();
    }
}

impl Running {
    /// Starts etcd with `entries`, a fake upstream, and skydns with `args` (plus -machines,
    /// -addr and -nameservers pointing at them); waits until it answers.
    pub async fn start(entries: &[(&str, &str)], args: &[&str]) -> Self {
        let etcd = EtcdServer::start().await;
        put_all(&etcd, entries).await;
        let upstream = FakeUpstream::start().await;
        Self::start_with(etcd, upstream, args).await
    }

    /// As [`start`](Self::start) for `-domain skydns.test.` with `/metrics` and `/health` on a
    /// free loopback port; returns the server and that HTTP address.
    pub async fn start_with_metrics(entries: &[(&str, &str)]) -> (Self, SocketAddr) {
        let port = free_tcp_port();
        let port_text = port.to_string();
        let args = [
            "-domain",
            "skydns.test.",
            "-metrics-port",
            &port_text,
            "-metrics-ip",
            "127.0.0.1",
        ];
        let server = Self::start(entries, &args).await;
        (server, SocketAddr::from(([127, 0, 0, 1], port)))
    }

    pub async fn start_with(etcd: EtcdServer, upstream: FakeUpstream, args: &[&str]) -> Self {
        let port = free_tcp_udp_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut all: Vec<String> = vec![
            "-machines".into(),
            etcd.endpoint(),
            "-addr".into(),
            addr.to_string(),
        ];
        if !args.contains(&"-nameservers") {
            all.push("-nameservers".into());
            all.push(upstream.addr().to_string());
        }
        all.extend(args.iter().map(|s| (*s).to_owned()));
        let mut config = flags(&all).into_config().unwrap();
        // Never fall back to the machine's resolver.
        config.resolv_conf = None;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(skydns::run(config, shutdown.clone()));
        let client = DnsClient::new(addr).with_timeout(Duration::from_secs(3));
        let probe = client.clone();
        wait_until("skydns to answer", WAIT, || {
            let probe = probe.clone();
            async move {
                // CHAOS is answered locally: the probe never reaches the fake upstream.
                let mut query = DnsClient::query_message("version.bind.", RecordType::TXT);
                query.queries[0].query_class = DNSClass::CH;
                probe.udp_message(&query).await.ok()
            }
        })
        .await;
        Self {
            etcd,
            upstream,
            addr,
            client,
            shutdown,
            task: Some(task),
        }
    }

    /// Stops skydns and checks that it ended without error.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("skydns stops after shutdown")
                .unwrap()
                .unwrap();
        }
    }

    /// Polls a query until `check` accepts the reply.
    pub async fn wait_for(
        &self,
        what: &str,
        name: &str,
        qtype: RecordType,
        check: impl Fn(&Message) -> bool,
    ) -> Message {
        let client = self.client.clone();
        let check = &check;
        wait_until(what, WAIT, || {
            let client = client.clone();
            let name = name.to_owned();
            async move {
                let reply = client.udp(&name, qtype).await.ok()?;
                check(&reply).then_some(reply)
            }
        })
        .await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A record as `owner ttl CLASS TYPE rdata`.
pub fn rr(record: &Record) -> String {
    record.to_string()
}

pub fn set(records: &[Record]) -> BTreeSet<String> {
    records.iter().map(rr).collect()
}

pub fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// True for a negative answer's authority: exactly the zone's SOA with TTL `min_ttl`.
pub fn is_negative_soa(reply: &Message, zone: &str, min_ttl: u32) -> bool {
    matches!(reply.authorities.as_slice(), [soa]
        if soa.record_type() == RecordType::SOA
            && soa.name.to_ascii() == zone
            && soa.ttl == min_ttl)
}

pub fn rcode(reply: &Message) -> ResponseCode {
    reply.metadata.response_code
}

/// Polls `name`/`qtype` over UDP at `client` until a reply has answers (a server that is
/// still starting, or records that are still arriving).
pub async fn answered(client: &DnsClient, what: &str, name: &str, qtype: RecordType) -> Message {
    wait_until(what, WAIT, || {
        let client = client.clone();
        let name = name.to_owned();
        async move {
            client
                .udp(&name, qtype)
                .await
                .ok()
                .filter(|r| !r.answers.is_empty())
        }
    })
    .await
}
