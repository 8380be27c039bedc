//! The seed scenario (`elasticsearch-9200.staging.example.local`, domain from `/skydns/config`)
//! and the index following etcd: a put becomes visible, a delete or an expired lease turns the
//! name into NXDOMAIN, all without restarting skydns.

mod support;

use etcd_client::PutOptions;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType::{A, AAAA, NS, SRV};
use support::{Running, is_negative_soa, put_all, rcode, set, strings};

const ES1: &str = "/skydns/local/example/staging/elasticsearch-9200/es1";
const ES2: &str = "/skydns/local/example/staging/elasticsearch-9200/es2";
const SEED: &[(&str, &str)] = &[
    (
        "/skydns/config",
        r#"{"domain":"staging.example.local.","ttl":3600}"#,
    ),
    (ES1, r#"{"host":"10.0.0.1","port":9200}"#),
    (ES2, r#"{"host":"10.0.0.2","port":9200}"#),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_answers_both_instances() {
    // No -domain flag: the domain comes from /skydns/config, as in the seed's unit.
    let server = Running::start(SEED, &[]).await;
    let client = &server.client;
    let name = "elasticsearch-9200.staging.example.local.";

    // 62: both A records.
    let reply = client.udp(name, A).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(
        set(&reply.answers),
        strings(&[
            "elasticsearch-9200.staging.example.local. 3600 IN A 10.0.0.1",
            "elasticsearch-9200.staging.example.local. 3600 IN A 10.0.0.2",
        ])
    );
    // 63: both SRV records with targets from the keys, A glue in additional.
    let reply = client.udp(name, SRV).await.unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&[
            "elasticsearch-9200.staging.example.local. 3600 IN SRV 10 50 9200 es1.elasticsearch-9200.staging.example.local.",
            "elasticsearch-9200.staging.example.local. 3600 IN SRV 10 50 9200 es2.elasticsearch-9200.staging.example.local.",
        ])
    );
    assert_eq!(
        set(&reply.additionals),
        strings(&[
            "es1.elasticsearch-9200.staging.example.local. 3600 IN A 10.0.0.1",
            "es2.elasticsearch-9200.staging.example.local. 3600 IN A 10.0.0.2",
        ])
    );
    // Same over TCP.
    let reply = client.tcp(name, SRV).await.unwrap();
    assert_eq!(reply.answers.len(), 2);
    // 64: one instance.
    let reply = client
        .udp("es1.elasticsearch-9200.staging.example.local.", SRV)
        .await
        .unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&[
            "es1.elasticsearch-9200.staging.example.local. 3600 IN SRV 10 100 9200 es1.elasticsearch-9200.staging.example.local."
        ])
    );
    // 65: NODATA with the zone's SOA.
    let reply = client.udp(name, AAAA).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert!(is_negative_soa(&reply, "staging.example.local.", 60));
    // 66: NXDOMAIN, authoritative.
    let reply = client
        .udp("kibana.staging.example.local.", A)
        .await
        .unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NXDomain);
    assert!(reply.metadata.authoritative);
    assert!(is_negative_soa(&reply, "staging.example.local.", 60));
    // 67: the apex aggregates the zone.
    let reply = client.udp("staging.example.local.", A).await.unwrap();
    assert_eq!(reply.answers.len(), 2);
    // 68: apex NS without dns/ns: NODATA (the original says NXDOMAIN for an existing apex).
    let reply = client.udp("staging.example.local.", NS).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    // 69: wildcard.
    let reply = client.udp("*.staging.example.local.", SRV).await.unwrap();
    assert_eq!(reply.answers.len(), 2);
    assert_eq!(reply.additionals.len(), 2);
    // Case is echoed.
    let reply = client
        .udp("ElasticSearch-9200.Staging.Example.Local.", A)
        .await
        .unwrap();
    assert!(
        reply
            .answers
            .iter()
            .all(|r| r.name.to_ascii() == "ElasticSearch-9200.Staging.Example.Local."),
        "{:?}",
        set(&reply.answers)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_deletes_and_expired_leases_are_followed() {
    let server = Running::start(SEED, &[]).await;
    let mut etcd = server.etcd.client().await;
    let kibana = "kibana.staging.example.local.";

    // A put becomes visible.
    put_all(
        &server.etcd,
        &[(
            "/skydns/local/example/staging/kibana/k1",
            r#"{"host":"10.0.0.9","port":5601}"#,
        )],
    )
    .await;
    server
        .wait_for("kibana to appear", kibana, A, |r| {
            set(&r.answers) == strings(&["kibana.staging.example.local. 3600 IN A 10.0.0.9"])
        })
        .await;

    // A change of value replaces the record.
    put_all(
        &server.etcd,
        &[(
            "/skydns/local/example/staging/kibana/k1",
            r#"{"host":"10.0.0.10"}"#,
        )],
    )
    .await;
    server
        .wait_for("kibana to change", kibana, A, |r| {
            set(&r.answers) == strings(&["kibana.staging.example.local. 3600 IN A 10.0.0.10"])
        })
        .await;

    // A delete turns it into NXDOMAIN.
    etcd.delete("/skydns/local/example/staging/kibana/k1", None)
        .await
        .unwrap();
    server
        .wait_for("kibana to disappear", kibana, A, |r| {
            rcode(r) == ResponseCode::NXDomain
        })
        .await;

    // One instance deleted: the other still answers.
    etcd.delete(ES2, None).await.unwrap();
    server
        .wait_for(
            "es2 to disappear",
            "elasticsearch-9200.staging.example.local.",
            A,
            |r| r.answers.len() == 1,
        )
        .await;

    // A record on a lease: its TTL is capped by the lease, and it goes when the lease expires.
    let lease = etcd.lease_grant(5, None).await.unwrap().id();
    etcd.put(
        "/skydns/local/example/staging/eph/a",
        r#"{"host":"10.3.0.1","ttl":600}"#,
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    let reply = server
        .wait_for("the leased record", "eph.staging.example.local.", A, |r| {
            !r.answers.is_empty()
        })
        .await;
    let ttl = reply.answers[0].ttl;
    assert!(
        (1..=5).contains(&ttl),
        "TTL {ttl} is capped by the 5 s lease"
    );
    server
        .wait_for(
            "the leased record to expire",
            "eph.staging.example.local.",
            A,
            |r| rcode(r) == ResponseCode::NXDomain,
        )
        .await;

    // A malformed value written later is skipped; its sibling keeps answering.
    put_all(
        &server.etcd,
        &[
            (
                "/skydns/local/example/staging/mixed/good",
                r#"{"host":"10.4.0.1"}"#,
            ),
            ("/skydns/local/example/staging/mixed/bad", "{not json"),
        ],
    )
    .await;
    server
        .wait_for("the good sibling", "mixed.staging.example.local.", A, |r| {
            set(&r.answers) == strings(&["mixed.staging.example.local. 3600 IN A 10.4.0.1"])
        })
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_while_etcd_is_down_and_resyncs_after() {
    let mut server = Running::start(SEED, &[]).await;
    let name = "elasticsearch-9200.staging.example.local.";
    server.etcd.stop();
    // The last good index keeps answering.
    for _ in 0..5 {
        let reply = server.client.udp(name, A).await.unwrap();
        assert_eq!(reply.answers.len(), 2);
    }
    server.etcd.restart().await;
    put_all(
        &server.etcd,
        &[(
            "/skydns/local/example/staging/after/x",
            r#"{"host":"10.5.5.5"}"#,
        )],
    )
    .await;
    server
        .wait_for(
            "a write after the restart",
            "after.staging.example.local.",
            A,
            |r| r.answers.len() == 1,
        )
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_larger_than_one_page_loads_completely() {
    let etcd = harness::EtcdServer::start().await;
    let mut client = etcd.client().await;
    let keys: Vec<(String, String)> = (0..12_000)
        .map(|i: u32| {
            (
                format!("/skydns/test/skydns/many/n{i}"),
                format!(
                    r#"{{"host":"10.{}.{}.{}"}}"#,
                    i / 65536,
                    (i / 256) % 256,
                    i % 256
                ),
            )
        })
        .collect();
    for chunk in keys.chunks(128) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|(k, v)| etcd_client::TxnOp::put(k.as_str(), v.as_str(), None))
            .collect();
        client
            .txn(etcd_client::Txn::new().and_then(ops))
            .await
            .unwrap();
    }
    let upstream = harness::FakeUpstream::start().await;
    let server = Running::start_with(etcd, upstream, &["-domain", "skydns.test."]).await;
    for i in [0u32, 4999, 5000, 11_999] {
        let reply = server
            .client
            .udp(&format!("n{i}.many.skydns.test."), A)
            .await
            .unwrap();
        assert_eq!(reply.answers.len(), 1, "n{i}");
    }
    let reply = server.client.tcp("many.skydns.test.", A).await.unwrap();
    // 12,000 A records do not fit in one 64 KiB TCP message: as many as fit are sent.
    assert!(reply.answers.len() > 2000, "{}", reply.answers.len());
    server.stop().await;
}
