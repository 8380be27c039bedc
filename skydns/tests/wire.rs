//! Wire-level behaviour against the running server: UDP truncation at 512 bytes or the EDNS
//! size, TCP, EDNS echo, malformed and garbage packets, forwarding to the fake upstream and its
//! restrictions (which forwarder `-ns-rotate` picks, external targets under `-no-rec`),
//! metrics and /health.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::AAAA;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use support::{Running, rcode, set, strings};

fn big_fixture() -> Vec<(String, String)> {
    (0..40)
        .map(|i| {
            (
                format!("/skydns/test/skydns/big/n{i}"),
                format!(r#"{{"host":"10.4.0.{i}"}}"#),
            )
        })
        .collect()
}

async fn start_big(args: &[&str]) -> Running {
    let entries = big_fixture();
    let borrowed: Vec<(&str, &str)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut all = vec!["-domain", "skydns.test."];
    all.extend_from_slice(args);
    Running::start(&borrowed, &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_truncation_tcp_and_edns() {
    let server = start_big(&[]).await;
    let client = &server.client;

    // 78: 40 A records do not fit in 512 bytes: TC=1 with the 29 that fit.
    let reply = client.udp("big.skydns.test.", RecordType::A).await.unwrap();
    assert!(reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 29);
    assert!(reply.edns.is_none());
    // Over TCP: all 40.
    let reply = client.tcp("big.skydns.test.", RecordType::A).await.unwrap();
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 40);
    // With EDNS 4096: all 40 over UDP, and the OPT is echoed.
    let mut query = harness::DnsClient::query_message("big.skydns.test.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    query.set_edns(edns);
    let reply = client.udp_message(&query).await.unwrap();
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 40);
    let echoed = reply.edns.as_ref().expect("OPT echoed");
    assert_eq!(echoed.version(), 0);
    // With EDNS 1232 and a smaller answer, still fine; EDNS version 1 gets BADVERS.
    let mut query = harness::DnsClient::query_message("n1.big.skydns.test.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    query.set_edns(edns);
    let reply = client.udp_message(&query).await.unwrap();
    // 16 is BADVERS in an OPT context (the decoder names it BADSIG, which shares the code).
    assert_eq!(u16::from(rcode(&reply)), 16);
    assert!(reply.edns.is_some());

    // SRV with glue that does not fit: the additional section is dropped first, without TC.
    let reply = client
        .udp("n1.big.skydns.test.", RecordType::SRV)
        .await
        .unwrap();
    assert_eq!(reply.answers.len(), 1);
    assert_eq!(reply.additionals.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_garbage_packets_never_kill_the_server() {
    let server = start_big(&[]).await;
    let client = server
        .client
        .clone()
        .with_timeout(Duration::from_millis(500));

    // A query with two questions: FORMERR.
    let mut query = harness::DnsClient::query_message("n1.big.skydns.test.", RecordType::A);
    query.add_query(hickory_proto::op::Query::query(
        Name::from_ascii("n2.big.skydns.test.").unwrap(),
        RecordType::A,
    ));
    let reply = client.udp_message(&query).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::FormErr);
    // No question at all: FORMERR.
    let mut empty = Message::query();
    empty.metadata.id = 77;
    let reply = client.udp_message(&empty).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::FormErr);
    // An UPDATE: NOTIMP.
    let mut update = harness::DnsClient::query_message("n1.big.skydns.test.", RecordType::A);
    update.metadata.op_code = OpCode::Update;
    let reply = client.udp_message(&update).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NotImp);
    // A response is not answered (no reflection).
    let mut response = harness::DnsClient::query_message("n1.big.skydns.test.", RecordType::A);
    response.metadata.message_type = MessageType::Response;
    assert!(
        client
            .udp_raw(&response.to_vec().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    // A truncated packet: dropped or FORMERR, never a crash.
    let valid = harness::DnsClient::query_message("n1.big.skydns.test.", RecordType::A)
        .to_vec()
        .unwrap();
    for cut in [0, 5, 11, 12, 20, valid.len() - 1] {
        if let Some(reply) = client.udp_raw(&valid[..cut]).await.unwrap() {
            let reply = Message::from_vec(&reply).unwrap();
            assert_eq!(rcode(&reply), ResponseCode::FormErr, "cut at {cut}");
        }
    }

    // Random packets, and random mutations of a valid query.
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec((0..valid.len(), any::<u8>()), 1..6).prop_map({
            let valid = valid.clone();
            move |flips| {
                let mut packet = valid.clone();
                for (at, byte) in flips {
                    packet[at] = byte;
                }
                packet
            }
        }),
    ];
    let values: Vec<Vec<u8>> = (0..300)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    for packet in &values {
        if let Some(reply) = client.udp_raw(packet).await.unwrap() {
            // Whatever comes back is a well-formed DNS response.
            let reply = Message::from_vec(&reply).expect("a parsable reply");
            assert_eq!(reply.metadata.message_type, MessageType::Response);
        }
        let _ = client.tcp_raw(packet).await;
    }
    // Still answering.
    let reply = server
        .client
        .udp("n1.big.skydns.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&["n1.big.skydns.test. 3600 IN A 10.4.0.1"])
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_relays_upstream_answers_and_fails_cleanly() {
    let server = Running::start(
        &[
            ("/skydns/test/skydns/ext", r#"{"host":"www.example.org"}"#),
            (
                "/skydns/test/skydns/srvext/a",
                r#"{"host":"www.example.org","port":443}"#,
            ),
        ],
        &["-domain", "skydns.test.", "-rtimeout", "1s"],
    )
    .await;
    let upstream = &server.upstream;
    upstream.add_a("www.example.org.", Ipv4Addr::new(192, 0, 2, 10), 300);
    upstream.add_record(Record::from_rdata(
        Name::from_ascii("www.example.org.").unwrap(),
        300,
        RData::AAAA(AAAA("2001:db8::10".parse().unwrap())),
    ));
    let client = &server.client;

    // 57: relayed with the upstream's TTL.
    let reply = client.udp("www.example.org.", RecordType::A).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(
        set(&reply.answers),
        strings(&["www.example.org. 300 IN A 192.0.2.10"])
    );
    // Over TCP too.
    let reply = client.tcp("www.example.org.", RecordType::A).await.unwrap();
    assert_eq!(reply.answers.len(), 1);
    // 79: an external CNAME target resolved through the forwarder, TTLs 60.
    let reply = client.udp("ext.skydns.test.", RecordType::A).await.unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&[
            "ext.skydns.test. 60 IN CNAME www.example.org.",
            "www.example.org. 60 IN A 192.0.2.10"
        ])
    );
    // 80: an external SRV target gets A and AAAA glue.
    let reply = client
        .udp("srvext.skydns.test.", RecordType::SRV)
        .await
        .unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&["srvext.skydns.test. 3600 IN SRV 10 100 443 www.example.org."])
    );
    assert_eq!(
        set(&reply.additionals),
        strings(&[
            "www.example.org. 60 IN A 192.0.2.10",
            "www.example.org. 60 IN AAAA 2001:db8::10"
        ])
    );
    // 58: too few labels: SERVFAIL without asking upstream.
    let before = upstream.queries().len();
    let reply = client.udp("localhost.", RecordType::A).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    assert_eq!(upstream.queries().len(), before);
    // An upstream that truncates over UDP is asked again over TCP.
    upstream.set_truncate_udp(true);
    let reply = client.udp("www.example.org.", RecordType::A).await.unwrap();
    assert_eq!(reply.answers.len(), 1);
    assert!(
        upstream
            .queries()
            .iter()
            .any(|(_, _, t)| *t == harness::dns::Transport::Tcp)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_restrictions_and_dead_upstreams() {
    // 59: nothing listens at the forwarder: SERVFAIL is sent (the original sends nothing).
    let dead = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap().to_string()
    };
    let server = Running::start(
        &[],
        &[
            "-domain",
            "skydns.test.",
            "-nameservers",
            &dead,
            "-rtimeout",
            "300ms",
        ],
    )
    .await;
    let reply = server
        .client
        .clone()
        .with_timeout(Duration::from_secs(10))
        .udp("www.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    server.stop().await;

    // Clients outside -forward-allow are refused; -no-rec gives SERVFAIL without RA.
    for (args, expected, ra) in [
        (
            &["-forward-allow", "10.0.0.0/8"][..],
            ResponseCode::Refused,
            true,
        ),
        (&["-no-rec"][..], ResponseCode::ServFail, false),
    ] {
        let mut all = vec!["-domain", "skydns.test."];
        all.extend_from_slice(args);
        let server = Running::start(&[], &all).await;
        server
            .upstream
            .add_a("www.example.org.", Ipv4Addr::new(192, 0, 2, 10), 300);
        let reply = server
            .client
            .udp("www.example.org.", RecordType::A)
            .await
            .unwrap();
        assert_eq!(rcode(&reply), expected, "{args:?}");
        assert_eq!(reply.metadata.recursion_available, ra, "{args:?}");
        assert!(server.upstream.queries().is_empty(), "{args:?}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ns_rotate_picks_the_forwarder_by_query_id_and_off_always_the_first() {
    // §3.18: the client's query goes to nameserver `id % n` with ns_rotate (the default),
    // else always to the first.
    let ids: Vec<u16> = (0..40u16)
        .map(|i| i.wrapping_mul(1637).wrapping_add(5))
        .collect();
    for (flags, rotate) in [(&[][..], true), (&["-ns-rotate=false"][..], false)] {
        let first = harness::FakeUpstream::start().await;
        let second = harness::FakeUpstream::start().await;
        for upstream in [&first, &second] {
            upstream.add_a("www.example.org.", Ipv4Addr::new(192, 0, 2, 10), 300);
        }
        let nameservers = format!("{},{}", first.addr(), second.addr());
        let mut args = vec!["-domain", "skydns.test.", "-nameservers", &nameservers];
        args.extend_from_slice(flags);
        let server = Running::start_with(harness::EtcdServer::start().await, first, &args).await;
        for &id in &ids {
            let mut query = harness::DnsClient::query_message("www.example.org.", RecordType::A);
            query.metadata.id = id;
            let reply = server.client.udp_message(&query).await.unwrap();
            assert_eq!(rcode(&reply), ResponseCode::NoError, "id {id}");
            assert_eq!(reply.answers.len(), 1, "id {id}");
        }
        let (to_first, to_second) = (server.upstream.query_ids(), second.query_ids());
        if rotate {
            let even: Vec<u16> = ids.iter().copied().filter(|id| id % 2 == 0).collect();
            let odd: Vec<u16> = ids.iter().copied().filter(|id| id % 2 == 1).collect();
            assert!(
                even.len() >= 10 && odd.len() >= 10,
                "both parities: {ids:?}"
            );
            assert_eq!(to_first, even, "{flags:?}: even IDs go to the first");
            assert_eq!(to_second, odd, "{flags:?}: odd IDs go to the second");
        } else {
            assert_eq!(to_first, ids, "{flags:?}: everything goes to the first");
            assert!(to_second.is_empty(), "{flags:?}: {to_second:?}");
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rec_still_resolves_external_targets_through_the_nameservers() {
    // 84: -no-rec refuses to forward client queries, but external CNAME and SRV targets are
    // still looked up at -nameservers: case 79 (and 80) give the same answer.
    let server = Running::start(
        &[
            ("/skydns/test/skydns/ext", r#"{"host":"www.example.org"}"#),
            (
                "/skydns/test/skydns/srvext/a",
                r#"{"host":"www.example.org","port":443}"#,
            ),
        ],
        &["-domain", "skydns.test.", "-no-rec"],
    )
    .await;
    let upstream = &server.upstream;
    upstream.add_a("www.example.org.", Ipv4Addr::new(192, 0, 2, 10), 300);
    upstream.add_record(Record::from_rdata(
        Name::from_ascii("www.example.org.").unwrap(),
        300,
        RData::AAAA(AAAA("2001:db8::10".parse().unwrap())),
    ));
    let client = &server.client;

    let reply = client.udp("ext.skydns.test.", RecordType::A).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(
        set(&reply.answers),
        strings(&[
            "ext.skydns.test. 60 IN CNAME www.example.org.",
            "www.example.org. 60 IN A 192.0.2.10"
        ])
    );
    let reply = client
        .udp("srvext.skydns.test.", RecordType::SRV)
        .await
        .unwrap();
    assert_eq!(
        set(&reply.additionals),
        strings(&[
            "www.example.org. 60 IN A 192.0.2.10",
            "www.example.org. 60 IN AAAA 2001:db8::10"
        ])
    );
    let lookups = upstream.queries().len();
    assert!(lookups >= 3, "the targets were looked up: {lookups}");
    // The same name asked directly is not forwarded: SERVFAIL without RA, upstream untouched.
    let reply = client.udp("www.example.org.", RecordType::A).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::ServFail);
    assert!(!reply.metadata.recursion_available);
    assert_eq!(upstream.queries().len(), lookups);
    server.stop().await;
}

/// `GET` on skydns's HTTP side: "<status> <body>", so a check can look at both at once.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let (status, body) = harness::http::http_get(addr, path).await.unwrap();
    format!("{status} {body}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health() {
    let (mut server, addr) =
        Running::start_with_metrics(&[("/skydns/test/skydns/web/a", r#"{"host":"10.0.0.1"}"#)])
            .await;
    let reply = server
        .client
        .udp("web.skydns.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(reply.answers.len(), 1);
    let _ = server
        .client
        .udp("nothere.skydns.test.", RecordType::A)
        .await
        .unwrap();

    let health = http_get(addr, "/health").await;
    assert_eq!(health, "200 synced with etcd; 1 records\n");
    let metrics = http_get(addr, "/metrics").await;
    for line in [
        "skydns_requests_total{rcode=\"No Error\",type=\"A\"}",
        "skydns_requests_total{rcode=\"Non-Existent Domain\",type=\"A\"}",
        "skydns_index_records 1",
        "skydns_index_synced 1",
        "skydns_etcd_resyncs_total 1",
        "skydns_skydns_dns_request_duration_seconds_count{system=\"auth\"}",
        "skydns_skydns_dns_request_count_total{system=\"auth\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }

    // etcd gone: /health turns 503 while answers keep coming from the last index.
    server.etcd.stop();
    harness::wait_until("health to report the lost watch", support::WAIT, || async {
        http_get(addr, "/health")
            .await
            .starts_with("503 ")
            .then_some(())
    })
    .await;
    let reply = server
        .client
        .udp("web.skydns.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(reply.answers.len(), 1);
    // The age grows while etcd stays away, on /health and on /metrics alike.
    harness::wait_until(
        "health to report the index's age",
        support::WAIT,
        || async {
            let health = http_get(addr, "/health").await;
            let metrics = http_get(addr, "/metrics").await;
            let age = harness::http::metric_sum(&metrics, "skydns_index_age_seconds");
            (age >= 1.0
                && metrics.contains("skydns_index_synced 0")
                && health.starts_with("503 index not synced with etcd for ")
                && health.ends_with(" s; answering from the last index (1 records)\n")
                && !health.contains(" for 0 s"))
            .then_some(())
        },
    )
    .await;
    server.etcd.restart().await;
    harness::wait_until("health to recover", support::WAIT, || async {
        let metrics = http_get(addr, "/metrics").await;
        (http_get(addr, "/health").await.starts_with("200 ")
            && harness::http::metric_sum(&metrics, "skydns_index_age_seconds") == 0.0)
            .then_some(())
    })
    .await;
    server.stop().await;
}

/// A frozen etcd keeps the connection open and says nothing: the watch's silence must not pass
/// for "no changes". skydns asks a silent watch for its progress every second and gives it up
/// after 3 s; HTTP/2 pings alone (6 s + 2 s, then reconnects to the same frozen member) took
/// 8-17 s in the cluster suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_etcd_is_noticed_within_seconds_and_answers_keep_coming() {
    let (server, addr) =
        Running::start_with_metrics(&[("/skydns/test/skydns/web/a", r#"{"host":"10.0.0.1"}"#)])
            .await;
    assert!(http_get(addr, "/health").await.starts_with("200 "));
    server.etcd.pause();
    let paused = std::time::Instant::now();
    let noticed = std::time::Duration::from_secs(7);
    harness::wait_until("health to report the frozen etcd", noticed, || async {
        http_get(addr, "/health")
            .await
            .starts_with("503 ")
            .then_some(())
    })
    .await;
    eprintln!("frozen etcd noticed after {:?}", paused.elapsed());
    let reply = server
        .client
        .udp("web.skydns.test.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(reply.answers.len(), 1);
    server.etcd.resume();
    harness::wait_until("health to recover", support::WAIT, || async {
        http_get(addr, "/health")
            .await
            .starts_with("200 ")
            .then_some(())
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stub_zones_forward_to_their_own_servers() {
    // 83: the stub server for example.org is a second fake upstream; the -nameservers one
    // refuses everything.
    let stub = harness::FakeUpstream::start().await;
    stub.add_a("www.example.org.", Ipv4Addr::new(192, 0, 2, 20), 300);
    let stub_value = format!(r#"{{"host":"127.0.0.1","port":{}}}"#, stub.addr().port());
    let server = Running::start(
        &[
            ("/skydns/test/skydns/dns/stub/org/example/ns1", &stub_value),
            (
                "/skydns/test/skydns/dns/stub/org/example/ns2",
                r#"{"host":"not-an-ip"}"#,
            ),
        ],
        &["-domain", "skydns.test.", "-stubzones"],
    )
    .await;
    let reply = server
        .client
        .udp("www.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&["www.example.org. 300 IN A 192.0.2.20"])
    );
    assert_eq!(stub.queries().len(), 1);
    assert!(server.upstream.queries().is_empty());
    // Names outside the stub zone still go to -nameservers.
    let reply = server
        .client
        .udp("www.example.com.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(rcode(&reply), ResponseCode::Refused);
    assert_eq!(server.upstream.queries().len(), 1);
    // A query already marked by a skydns is dropped (loop protection).
    let mut query = harness::DnsClient::query_message("www.example.org.", RecordType::A);
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
            65011,
            vec![1],
        ));
    query.set_edns(edns);
    let quiet = server
        .client
        .clone()
        .with_timeout(Duration::from_millis(500));
    assert!(
        quiet
            .udp_raw(&query.to_vec().unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(stub.queries().len(), 1);
    server.stop().await;
}

/// The value of one series on a scrape (0 when absent, like a counter not yet touched).
fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The original's metrics, under the original's names, labels and buckets, move by exactly one
/// per reply of each kind: authoritative hits over UDP and TCP, NXDOMAIN, REFUSED, a truncated
/// UDP answer and its whole TCP form, forwarded and reverse answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_metrics_count_each_reply_under_its_system_and_cause() {
    let mut entries: Vec<(String, String)> = big_fixture();
    entries.push((
        "/skydns/test/skydns/web/a".into(),
        r#"{"host":"10.0.0.1"}"#.into(),
    ));
    entries.push((
        "/skydns/arpa/in-addr/10/0/0/1".into(),
        r#"{"host":"web.skydns.test"}"#.into(),
    ));
    let entries: Vec<(&str, &str)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (server, addr) = Running::start_with_metrics(&entries).await;
    server
        .upstream
        .add_a("example.org.", Ipv4Addr::new(192, 0, 2, 1), 60);
    let before = http_get(addr, "/metrics").await;
    let dns = &server.client;

    let web = dns.udp("web.skydns.test.", RecordType::A).await.unwrap();
    assert_eq!(web.answers.len(), 1);
    assert_eq!(
        dns.tcp("web.skydns.test.", RecordType::A)
            .await
            .unwrap()
            .answers
            .len(),
        1
    );
    for reply in [
        dns.udp("nothere.skydns.test.", RecordType::A)
            .await
            .unwrap(),
        dns.tcp("nothere.skydns.test.", RecordType::A)
            .await
            .unwrap(),
    ] {
        assert_eq!(rcode(&reply), ResponseCode::NXDomain);
    }
    let mut chaos_a = harness::DnsClient::query_message("version.bind.", RecordType::A);
    chaos_a.queries[0].query_class = hickory_proto::rr::DNSClass::CH;
    assert_eq!(
        rcode(&dns.udp_message(&chaos_a).await.unwrap()),
        ResponseCode::Refused
    );
    let cut = dns.udp("big.skydns.test.", RecordType::A).await.unwrap();
    assert!(cut.metadata.truncation);
    let whole = dns.tcp("big.skydns.test.", RecordType::A).await.unwrap();
    assert!(!whole.metadata.truncation && whole.answers.len() == 40);
    assert_eq!(
        dns.udp("example.org.", RecordType::A)
            .await
            .unwrap()
            .answers
            .len(),
        1
    );
    assert_eq!(
        dns.tcp("example.org.", RecordType::A)
            .await
            .unwrap()
            .answers
            .len(),
        1
    );
    let refused = dns
        .udp("nothere.example.org.", RecordType::A)
        .await
        .unwrap();
    assert_eq!(rcode(&refused), ResponseCode::Refused);
    let ptr = dns
        .udp("1.0.0.10.in-addr.arpa.", RecordType::PTR)
        .await
        .unwrap();
    assert_eq!(ptr.answers.len(), 1);

    let after = http_get(addr, "/metrics").await;
    let delta = |name: &str| series(&after, name) - series(&before, name);
    let ns = "skydns_skydns_dns_";
    let expected: &[(&str, f64)] = &[
        ("request_count_total{system=\"auth\"}", 7.0),
        ("request_count_total{system=\"recursive\"}", 3.0),
        ("request_count_total{system=\"reverse\"}", 1.0),
        ("request_count_total{system=\"stub\"}", 0.0),
        ("request_count_total{system=\"cache\"}", 0.0),
        ("error_count_total{cause=\"nxdomain\",system=\"auth\"}", 2.0),
        ("error_count_total{cause=\"refused\",system=\"auth\"}", 1.0),
        (
            "error_count_total{cause=\"truncated\",system=\"auth\"}",
            1.0,
        ),
        ("error_count_total{cause=\"servfail\",system=\"auth\"}", 0.0),
        ("error_count_total{cause=\"overflow\",system=\"auth\"}", 0.0),
        (
            "error_count_total{cause=\"refused\",system=\"recursive\"}",
            1.0,
        ),
        (
            "error_count_total{cause=\"nxdomain\",system=\"recursive\"}",
            0.0,
        ),
        ("cachemiss_count_total{cache=\"response\"}", 7.0),
        ("cachemiss_count_total{cache=\"signature\"}", 0.0),
        ("request_duration_seconds_count{system=\"auth\"}", 7.0),
        ("request_duration_seconds_count{system=\"recursive\"}", 3.0),
        (
            "request_duration_seconds_bucket{system=\"auth\",le=\"+Inf\"}",
            7.0,
        ),
        ("response_size_bytes_count{system=\"auth\"}", 7.0),
        ("response_size_bytes_count{system=\"reverse\"}", 1.0),
        // Every authoritative reply but the whole 40 addresses over TCP fits in 512 bytes.
        ("response_size_bytes_bucket{system=\"auth\",le=\"0\"}", 0.0),
        (
            "response_size_bytes_bucket{system=\"auth\",le=\"512\"}",
            6.0,
        ),
        (
            "response_size_bytes_bucket{system=\"auth\",le=\"1024\"}",
            7.0,
        ),
        (
            "response_size_bytes_bucket{system=\"auth\",le=\"65536\"}",
            7.0,
        ),
    ];
    for (name, want) in expected {
        let name = format!("{ns}{name}");
        assert!(
            after.contains(&format!("{name} ")),
            "{name} missing in:\n{after}"
        );
        assert_eq!(delta(&name), *want, "{name}");
    }
    // The sizes add up to the bytes actually sent.
    let sum = delta(&format!(
        "{ns}response_size_bytes_sum{{system=\"recursive\"}}"
    ));
    assert!(sum > 3.0 * 12.0, "{sum}");
    // The original's bucket boundaries, exactly.
    let mut sizes = vec!["0", "512", "1024", "1500", "2048"]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    sizes.extend((1..=16).map(|i| (i * 4096).to_string()));
    sizes.push("+Inf".into());
    let durations = [
        "0.001", "0.003", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
        "10", "+Inf",
    ];
    let les = |histogram: &str| -> Vec<String> {
        let prefix = format!("{ns}{histogram}_bucket{{system=\"auth\",le=\"");
        after
            .lines()
            .filter_map(|l| Some(l.strip_prefix(&prefix)?.split('"').next()?.to_owned()))
            .collect()
    };
    assert_eq!(les("response_size_bytes"), sizes);
    assert_eq!(les("request_duration_seconds"), durations);
    assert!(after.contains("le=\"12288\""));
    // Ours stay under their own names.
    assert!(after.contains("skydns_requests_total{rcode=\"No Error\",type=\"A\"}"));
    server.stop().await;
}
