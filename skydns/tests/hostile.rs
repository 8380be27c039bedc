//! Hostile input against a running skydns: generated well-formed queries (arbitrary questions
//! inside and outside the zone, every qtype and class, EDNS options, header counts that lie)
//! over UDP and TCP, garbage keys and values written into a real etcd, many idle TCP
//! connections, a TCP client that stalls inside a query, and a flood of forwards to a dead
//! upstream. After every case the server must still answer a known authoritative name.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::process::{RunningBinary, bind_udp_tcp, free_tcp_port, free_tcp_udp_port};
use harness::{DnsClient, EtcdServer, wait_until};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::RecordType;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use support::{Running, WAIT, rcode, set, strings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Wall-clock budget of each generated-input loop (the case count is printed).
const BUDGET: Duration = Duration::from_secs(4);

const GOOD: &str = "good.skydns.test.";

fn good_records() -> Vec<(&'static str, &'static str)> {
    vec![
        ("/skydns/test/skydns/good", r#"{"host":"10.9.0.1"}"#),
        (
            "/skydns/test/skydns/big/a",
            r#"{"host":"10.4.0.1","port":80}"#,
        ),
        (
            "/skydns/test/skydns/big/b",
            r#"{"host":"big-target.example.org","port":81,"text":"t"}"#,
        ),
        (
            "/skydns/test/skydns/big/c/d",
            r#"{"host":"10.4.0.3","mail":true}"#,
        ),
        ("/skydns/test/skydns/cn", r#"{"host":"good.skydns.test"}"#),
        ("/skydns/test/skydns/dns/ns/ns1", r#"{"host":"10.0.0.53"}"#),
        (
            "/skydns/arpa/in-addr/10/0/0/1",
            r#"{"host":"good.skydns.test"}"#,
        ),
    ]
}

/// Panics unless the known authoritative name still answers over UDP.
async fn assert_serving(client: &DnsClient, context: &dyn std::fmt::Debug) {
    let reply = client
        .udp(GOOD, RecordType::A)
        .await
        .unwrap_or_else(|e| panic!("no answer after {context:?}: {e}"));
    assert_eq!(
        set(&reply.answers),
        strings(&["good.skydns.test. 3600 IN A 10.9.0.1"]),
        "after {context:?}"
    );
}

/// A name in wire format: a known name, random labels under the zone or outside it, or a
/// compression pointer (to the header, or to itself).
fn wire_name() -> impl Strategy<Value = Vec<u8>> {
    let known = prop::sample::select(vec![
        "good.skydns.test.",
        "GOOD.SkyDNS.Test.",
        "big.skydns.test.",
        "*.big.skydns.test.",
        "any.skydns.test.",
        "c.*.skydns.test.",
        "skydns.test.",
        "ns.dns.skydns.test.",
        "stub.dns.skydns.test.",
        "local.dns.skydns.test.",
        "cn.skydns.test.",
        "missing.skydns.test.",
        "1.0.0.10.in-addr.arpa.",
        "in-addr.arpa.",
        "1.0.0.0.ip6.arpa.",
        "www.example.org.",
        "version.bind.",
        "localhost.",
        ".",
    ])
    .prop_map(|name| {
        encode_name(
            name.trim_end_matches('.')
                .split('.')
                .filter(|l| !l.is_empty()),
        )
    });
    let label = prop_oneof![
        "[a-z0-9-]{1,20}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 1..64),
    ];
    let suffix = prop::sample::select(vec!["skydns.test", "big.skydns.test", "example.org", ""]);
    let random = (prop::collection::vec(label, 0..8), suffix).prop_map(|(labels, suffix)| {
        let mut wire = Vec::new();
        for label in labels {
            wire.push(u8::try_from(label.len()).unwrap_or(63).min(63));
            wire.extend_from_slice(&label[..label.len().min(63)]);
        }
        wire.extend(encode_name(suffix.split('.').filter(|l| !l.is_empty())));
        wire
    });
    let pointer = prop_oneof![
        Just(vec![0xc0, 0x0c]),
        Just(vec![0xc0, 0x00]),
        any::<u16>().prop_map(|p| (p | 0xc000).to_be_bytes().to_vec()),
        Just(vec![3, b'a', b'b', b'c', 0xc0, 0x0c]),
    ];
    prop_oneof![4 => known, 4 => random, 1 => pointer]
}

fn encode_name<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in labels {
        wire.push(u8::try_from(label.len()).unwrap());
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

fn qtype() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => prop::sample::select(vec![1u16, 2, 5, 6, 12, 15, 16, 28, 33, 41, 43, 48, 251, 252, 255, 65]),
        1 => any::<u16>(),
    ]
}

fn qclass() -> impl Strategy<Value = u16> {
    prop_oneof![4 => Just(1u16), 1 => Just(3u16), 1 => Just(255u16), 1 => Just(254u16), 1 => any::<u16>()]
}

/// An OPT record: size, extended rcode, version, flags and arbitrary options.
fn opt_record() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        any::<u8>(),
        prop_oneof![4 => Just(0u8), 1 => any::<u8>()],
        any::<u16>(),
        prop::collection::vec(
            (
                prop_oneof![Just(65011u16), Just(8u16), Just(10u16), any::<u16>()],
                prop::collection::vec(any::<u8>(), 0..40),
                any::<bool>(),
            ),
            0..4,
        ),
    )
        .prop_map(|(size, ext_rcode, version, flags, options)| {
            let mut rdata = Vec::new();
            for (code, data, lie) in options {
                rdata.extend_from_slice(&code.to_be_bytes());
                let len = if lie { data.len() + 7 } else { data.len() };
                rdata.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
                rdata.extend_from_slice(&data);
            }
            let mut wire = vec![0, 0, 41];
            wire.extend_from_slice(&size.to_be_bytes());
            wire.extend_from_slice(&[ext_rcode, version]);
            wire.extend_from_slice(&flags.to_be_bytes());
            wire.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
            wire.extend(rdata);
            wire
        })
}

/// A query with a well-formed header: opcode mostly QUERY, QR rarely set, 0 to 3 questions,
/// 0 to 2 OPT records, counts that are true or lie, and sometimes trailing bytes.
fn query_packet() -> impl Strategy<Value = Vec<u8>> {
    let question = || (wire_name(), qtype(), qclass());
    (
        any::<u16>(),
        prop_oneof![8 => Just(0u16), 1 => (0u16..16).prop_map(|op| op << 11), 1 => Just(0x8000u16)],
        any::<u16>().prop_map(|bits| bits & 0x07ff),
        prop_oneof![6 => prop::collection::vec(question(), 1..2), 1 => prop::collection::vec(question(), 0..4)],
        prop::collection::vec(opt_record(), 0..3),
        prop_oneof![6 => Just(None), 1 => any::<[u16; 4]>().prop_map(Some)],
        prop_oneof![6 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 1..30)],
    )
        .prop_map(|(id, kind, bits, questions, opts, lie, trailing)| {
            let counts = lie.unwrap_or([
                u16::try_from(questions.len()).unwrap(),
                0,
                0,
                u16::try_from(opts.len()).unwrap(),
            ]);
            let mut wire = Vec::new();
            wire.extend_from_slice(&id.to_be_bytes());
            wire.extend_from_slice(&(kind | bits).to_be_bytes());
            for count in counts {
                wire.extend_from_slice(&count.to_be_bytes());
            }
            for (name, qtype, qclass) in questions {
                wire.extend(name);
                wire.extend_from_slice(&qtype.to_be_bytes());
                wire.extend_from_slice(&qclass.to_be_bytes());
            }
            for opt in opts {
                wire.extend(opt);
            }
            wire.extend(trailing);
            wire
        })
}

/// Runs `strategy` until the budget is spent; returns the values generated, in order.
fn generate<S: Strategy>(strategy: &S, seed_cases: u32) -> impl Iterator<Item = S::Value> + '_ {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: seed_cases,
        ..ProptestConfig::default()
    });
    std::iter::from_fn(move || Some(strategy.new_tree(&mut runner).unwrap().current()))
}

/// Checks a reply to a generated query: a parsable response with the query's ID.
fn check_reply(packet: &[u8], reply: &[u8]) {
    let message = Message::from_vec(reply)
        .unwrap_or_else(|e| panic!("unparsable reply {reply:?} to {packet:?}: {e}"));
    assert_eq!(message.metadata.message_type, MessageType::Response);
    assert_eq!(
        message.metadata.id,
        u16::from_be_bytes([packet[0], packet[1]]),
        "reply to {packet:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_well_formed_queries_over_udp_and_tcp() {
    let server = Running::start(&good_records(), &["-domain", "skydns.test.", "-stubzones"]).await;
    server
        .upstream
        .add_a("big-target.example.org.", [192, 0, 2, 7].into(), 300);
    let quick = server
        .client
        .clone()
        .with_timeout(Duration::from_millis(300));
    let strategy = query_packet();
    let started = Instant::now();
    let (mut cases, mut udp_replies, mut tcp_replies) = (0u32, 0u32, 0u32);
    for packet in generate(&strategy, 10_000) {
        if started.elapsed() > BUDGET {
            break;
        }
        cases += 1;
        if let Some(reply) = quick.udp_raw(&packet).await.unwrap() {
            udp_replies += 1;
            check_reply(&packet, &reply);
        }
        if let Some(reply) = quick.tcp_raw(&packet).await.unwrap() {
            tcp_replies += 1;
            check_reply(&packet, &reply);
        }
        assert_serving(&server.client, &packet).await;
    }
    eprintln!(
        "generated queries: {cases} cases, {udp_replies} UDP and {tcp_replies} TCP replies, no crash"
    );
    assert!(cases > 50, "only {cases} cases ran");
    assert!(
        udp_replies > cases / 2,
        "most generated queries are answered: {udp_replies} of {cases}"
    );
    server.stop().await;
}

/// Keys and values that have broken DNS servers over etcd: garbage JSON, deep nesting, huge
/// values, invalid labels, binary bytes, odd types.
fn hostile_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
    let base = "/skydns/test/skydns/bad";
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", r#"{"host":"#.repeat(5_000), "}".repeat(5_000));
    let huge_host = format!(r#"{{"host":"{}"}}"#, "a".repeat(1_000_000));
    let huge_text = format!(
        r#"{{"host":"10.1.1.1","text":"{}"}}"#,
        "t".repeat(1_000_000)
    );
    let many_labels = format!(r#"{{"host":"{}x"}}"#, "a.".repeat(200));
    let long_label_key = format!("{base}/{}", "l".repeat(300));
    let deep_key = format!("{base}/{}", vec!["d"; 300].join("/"));
    let text = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
    vec![
        text(&format!("{base}/garbage"), "not json"),
        text(&format!("{base}/empty"), ""),
        text(&format!("{base}/null"), "null"),
        text(&format!("{base}/array"), "[1,2,3]"),
        text(&format!("{base}/deep-array"), &deep_array),
        text(&format!("{base}/deep-object"), &deep_object),
        text(&format!("{base}/huge-host"), &huge_host),
        text(&format!("{base}/huge-text"), &huge_text),
        text(&format!("{base}/many-labels"), &many_labels),
        text(
            &format!("{base}/types"),
            r#"{"host":1,"port":"80","ttl":-1}"#,
        ),
        text(
            &format!("{base}/ports"),
            r#"{"host":"10.1.1.2","port":99999999999}"#,
        ),
        text(
            &format!("{base}/prio"),
            r#"{"host":"10.1.1.3","priority":-5,"weight":1e300}"#,
        ),
        text(
            &format!("{base}/target"),
            r#"{"host":"..","targetstrip":4294967295}"#,
        ),
        text(
            &format!("{base}/group"),
            r#"{"host":"10.1.1.4","group":"\u0000\uffff"}"#,
        ),
        text(&format!("{base}/ipv6"), r#"{"host":"::ffff:10.1.1.5"}"#),
        text(
            &format!("{base}/cname-self"),
            r#"{"host":"cname-self.bad.skydns.test"}"#,
        ),
        text(&format!("{base}/UPPER"), r#"{"host":"10.1.1.6"}"#),
        text(&format!("{base}/with space"), r#"{"host":"10.1.1.7"}"#),
        text(&format!("{base}/dot.ted"), r#"{"host":"10.1.1.8"}"#),
        text(&format!("{base}//double-slash"), r#"{"host":"10.1.1.9"}"#),
        text(&format!("{base}/trailing/"), r#"{"host":"10.1.1.10"}"#),
        text(&format!("{base}/*"), r#"{"host":"10.1.1.11"}"#),
        text(&long_label_key, r#"{"host":"10.1.1.12"}"#),
        text(&deep_key, r#"{"host":"10.1.1.13"}"#),
        (
            format!("{base}/bin-value").into_bytes(),
            vec![0xff, 0x00, 0xfe, b'{', 0x80],
        ),
        (
            [format!("{base}/").as_bytes(), &[0xff, 0xfe, 0x00, b'x']].concat(),
            br#"{"host":"10.1.1.14"}"#.to_vec(),
        ),
        text("/skydns/arpa/in-addr/10/1/1/bad", "not json"),
        text("/skydns/arpa/in-addr/10/1/1/2", r#"{"host":"not a name"}"#),
        text("/skydns/test/skydns/dns/ns/bad", r#"{"host":""}"#),
        text(
            "/skydns/test/skydns/dns/stub/org/example/bad",
            r#"{"host":"x","port":0}"#,
        ),
        text("/skydns/", r#"{"host":"10.1.1.15"}"#),
        text("/skydns", r#"{"host":"10.1.1.16"}"#),
        text("/skydns/test", "garbage"),
    ]
}

/// Arbitrary keys (under the zone, some segments binary) and values (JSON-ish or bytes).
fn generated_entry() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let segment = prop_oneof![
        "[a-z0-9*-]{0,12}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    let key = prop::collection::vec(segment, 1..6).prop_map(|segments| {
        let mut key = b"/skydns/test/skydns/gen".to_vec();
        for segment in segments {
            key.push(b'/');
            key.extend(segment);
        }
        key
    });
    let json = (
        prop_oneof![
            "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
            "[a-z.]{0,30}",
            "\\PC{0,20}"
        ],
        any::<i64>(),
        any::<bool>(),
        "\\PC{0,40}",
    )
        .prop_map(|(host, number, mail, text)| {
            serde_json::json!({
                "host": host, "port": number, "priority": number, "weight": number,
                "ttl": number, "mail": mail, "text": text.clone(), "targetstrip": number, "group": text,
            })
            .to_string()
            .into_bytes()
        });
    let value = prop_oneof![json, prop::collection::vec(any::<u8>(), 0..200)];
    (key, value)
}

/// Names queried after every hostile write.
const AFTER_WRITE: [(&str, RecordType); 10] = [
    ("bad.skydns.test.", RecordType::A),
    ("bad.skydns.test.", RecordType::SRV),
    ("bad.skydns.test.", RecordType::TXT),
    ("bad.skydns.test.", RecordType::MX),
    ("*.bad.skydns.test.", RecordType::ANY),
    ("cname-self.bad.skydns.test.", RecordType::A),
    ("gen.skydns.test.", RecordType::SRV),
    ("*.gen.skydns.test.", RecordType::A),
    ("skydns.test.", RecordType::NS),
    ("2.1.1.10.in-addr.arpa.", RecordType::PTR),
];

/// Writes one entry, proves the watch followed it (a marker put after it answers), queries
/// the names around it and checks the good record.
async fn apply(
    server: &Running,
    etcd: &mut etcd_client::Client,
    marker: &mut u32,
    key: Vec<u8>,
    value: Vec<u8>,
    context: &str,
) {
    etcd.put(key, value, None)
        .await
        .unwrap_or_else(|e| panic!("etcd put {context}: {e}"));
    *marker += 1;
    let name = format!("m{marker}.marker.skydns.test.");
    etcd.put(
        format!("/skydns/test/skydns/marker/m{marker}"),
        r#"{"host":"10.7.0.1"}"#,
        None,
    )
    .await
    .unwrap();
    server
        .wait_for(
            &format!("marker after {context}"),
            &name,
            RecordType::A,
            |r| !r.answers.is_empty(),
        )
        .await;
    for (name, qtype) in AFTER_WRITE {
        // Any answer (or none in time) is fine; the server must go on serving.
        let _ = server.client.udp(name, qtype).await;
        let _ = server.client.tcp(name, qtype).await;
    }
    assert_serving(&server.client, &context).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_etcd_keys_and_values_never_hide_the_good_records() {
    let server = Running::start(&good_records(), &["-domain", "skydns.test."]).await;
    let mut etcd = server.etcd.client().await;
    let client = server.client.clone();
    let mut marker = 0u32;
    let fixed = hostile_entries();
    let fixed_count = fixed.len();
    for (key, value) in fixed {
        let context = String::from_utf8_lossy(&key[..key.len().min(60)]).into_owned();
        apply(&server, &mut etcd, &mut marker, key, value, &context).await;
    }
    let strategy = generated_entry();
    let started = Instant::now();
    let mut generated = 0u32;
    for (key, value) in generate(&strategy, 10_000) {
        if started.elapsed() > BUDGET {
            break;
        }
        generated += 1;
        let context = format!("generated entry {generated}");
        apply(&server, &mut etcd, &mut marker, key, value, &context).await;
    }
    eprintln!("hostile etcd entries: {fixed_count} fixed and {generated} generated, no crash");

    // The good records are all still there, and deleting the garbage is followed too.
    let reply = client
        .udp("big.skydns.test.", RecordType::SRV)
        .await
        .unwrap();
    assert_eq!(reply.answers.len(), 3, "{reply:?}");
    let reply = client
        .udp("1.0.0.10.in-addr.arpa.", RecordType::PTR)
        .await
        .unwrap();
    assert_eq!(reply.answers.len(), 1);
    etcd.delete(
        "/skydns/test/skydns/bad",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    server
        .wait_for(
            "the bad subtree to go",
            "bad.skydns.test.",
            RecordType::A,
            |r| rcode(r) == ResponseCode::NXDomain,
        )
        .await;
    assert_serving(&client, &"the end").await;
    server.stop().await;
}

/// Opens `count` TCP connections that send nothing.
async fn idle_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        streams.push(TcpStream::connect(addr).await.unwrap());
    }
    streams
}

/// True when the server closed the connection (end of stream or reset) within `wait`.
async fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_connections_beyond_the_limit_are_closed_and_queries_still_work() {
    // The default limit: 512 connections; 8 more are opened.
    let (server, metrics) = Running::start_with_metrics(&good_records()).await;
    let streams = idle_connections(server.addr, 520).await;
    // Every connection waits for its fate at the same time; the open ones time out.
    let mut checks = tokio::task::JoinSet::new();
    for mut stream in streams {
        checks.spawn(async move {
            let closed = closed_by_server(&mut stream, Duration::from_secs(2)).await;
            (stream, closed)
        });
    }
    let mut streams = Vec::new();
    let mut closed = 0;
    while let Some(checked) = checks.join_next().await {
        let (stream, was_closed) = checked.unwrap();
        closed += usize::from(was_closed);
        streams.push(stream);
    }
    eprintln!("idle TCP connections: 520 opened, {closed} closed at once by the server");
    assert_eq!(
        closed, 8,
        "the 8 connections beyond the limit of 512 are closed"
    );
    let (_, body) = harness::http::http_get(metrics, "/metrics").await.unwrap();
    assert_eq!(
        harness::http::metric_sum(&body, "skydns_tcp_refused_total"),
        8.0
    );
    assert_eq!(
        harness::http::metric_sum(&body, "skydns_tcp_connections"),
        512.0
    );
    // UDP is served while TCP is full.
    assert_serving(&server.client, &"512 idle TCP connections").await;
    // Once the idle clients go, TCP answers again.
    drop(streams);
    let client = server.client.clone();
    let reply = wait_until("TCP to answer again", WAIT, || {
        let client = client.clone();
        async move { client.tcp(GOOD, RecordType::A).await.ok() }
    })
    .await;
    assert_eq!(reply.answers.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_client_stalled_inside_a_query_is_dropped_and_blocks_no_one() {
    let server = Running::start(
        &good_records(),
        &[
            "-domain",
            "skydns.test.",
            "-tcp-idle-timeout",
            "1s",
            "-tcp-max-connections",
            "4",
        ],
    )
    .await;
    // A length prefix and half a query, then nothing; and a connection that sends nothing.
    let query = DnsClient::query_message(GOOD, RecordType::A)
        .to_vec()
        .unwrap();
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(&u16::try_from(query.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    stalled.write_all(&query[..5]).await.unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Others are answered meanwhile, over TCP and UDP.
    for _ in 0..20 {
        let reply = server.client.tcp(GOOD, RecordType::A).await.unwrap();
        assert_eq!(reply.answers.len(), 1);
        assert_serving(&server.client, &"a stalled TCP client").await;
    }
    // Both are dropped after the idle timeout, freeing their slots.
    assert!(
        closed_by_server(&mut stalled, WAIT).await,
        "stalled client dropped"
    );
    assert!(
        closed_by_server(&mut silent, WAIT).await,
        "silent client dropped"
    );
    let held = idle_connections(server.addr, 4).await;
    let reply = wait_until("TCP to answer after the held ones time out", WAIT, || {
        let client = server.client.clone();
        async move { client.tcp(GOOD, RecordType::A).await.ok() }
    })
    .await;
    assert_eq!(reply.answers.len(), 1);
    drop(held);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forwards_to_a_dead_upstream_is_bounded_and_logged_rate_limited() {
    // The dead upstream: a UDP socket and a TCP listener that never answer.
    let (dead_udp, dead_tcp) = bind_udp_tcp().await;
    let dead = dead_udp.local_addr().unwrap().to_string();
    let etcd = EtcdServer::start().await;
    support::put_all(&etcd, &good_records()).await;
    let port = free_tcp_udp_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let metrics_port = free_tcp_port().to_string();
    let binary = RunningBinary::start(
        "skydns",
        &[
            "-machines",
            &etcd.endpoint(),
            "-addr",
            &addr.to_string(),
            "-domain",
            "skydns.test.",
            "-nameservers",
            &dead,
            "-rtimeout",
            "1s",
            "-metrics-port",
            &metrics_port,
            "-metrics-ip",
            "127.0.0.1",
        ],
        &[("RUST_LOG", "info")],
    );
    let client = DnsClient::new(addr);
    wait_until("skydns to answer", WAIT, || {
        let client = client.clone();
        async move { client.udp(GOOD, RecordType::A).await.ok() }
    })
    .await;

    // 600 forwards at once, more than the default bound of 256.
    let flood = std::sync::Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    flood.connect(addr).await.unwrap();
    let total = 600u16;
    // Every forward ends in SERVFAIL: refused at once beyond the bound, or after its attempts.
    // (A datagram the kernel drops under the burst gets no reply: UDP.)
    let receiver = {
        let flood = flood.clone();
        tokio::spawn(async move {
            let mut answered = std::collections::HashSet::new();
            let mut buf = vec![0u8; 4096];
            while answered.len() < usize::from(total) {
                let wait = tokio::time::timeout(Duration::from_secs(5), flood.recv(&mut buf));
                let Ok(received) = wait.await else {
                    break;
                };
                let reply = Message::from_vec(&buf[..received.unwrap()]).unwrap();
                assert_eq!(rcode(&reply), ResponseCode::ServFail);
                answered.insert(reply.metadata.id);
            }
            answered
        })
    };
    for id in 0..total {
        let mut query = DnsClient::query_message(&format!("n{id}.example.org."), RecordType::A);
        query.metadata.id = id;
        flood.send(&query.to_vec().unwrap()).await.unwrap();
        if id % 25 == 24 {
            // Paced a little, so the burst fits the server's socket buffers.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // Authoritative answers keep coming during the flood.
    for _ in 0..20 {
        assert_serving(&client, &"the forward flood").await;
    }
    let answered = receiver.await.unwrap();
    assert!(
        answered.len() >= usize::from(total) * 9 / 10,
        "a SERVFAIL for every forward: {} of {total}",
        answered.len()
    );
    let metrics: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let (_, body) = harness::http::http_get(metrics, "/metrics").await.unwrap();
    let refused = harness::http::metric_sum(&body, "skydns_forward_refused_total");
    let failed = harness::http::metric_sum(&body, "skydns_forwarded_total{result=\"failed\"}");
    let log = binary.log();
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    eprintln!(
        "forward flood: {total} forwards, {} SERVFAIL replies, {refused} refused at the bound, {failed} failed, {warnings} warning lines",
        answered.len()
    );
    assert!(
        refused >= 1.0,
        "forwards beyond the bound are refused and counted"
    );
    assert!(
        failed <= 256.0,
        "at most the bound were attempted: {failed}"
    );
    assert!(
        warnings <= 10,
        "failures are logged rate-limited, not one per attempt:\n{log}"
    );
    drop((dead_udp, dead_tcp));
}
