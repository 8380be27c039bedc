//! Proves the harness itself: real etcd (single member and cluster, leases expire), real
//! containers (published port, env, labels, stdout/stderr through bollard, removed on drop),
//! DNS over UDP and TCP against the fake upstream, and the syslog receiver's framings.

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{DomainName, KeySchema, ServiceRecord};
use etcd_client::{EventType, GetOptions, PutOptions, WatchOptions};
use harness::dns::Transport;
use harness::etcd::next_watch_events;
use harness::syslog::Framing;
use harness::{
    ContainerSpec, DnsClient, EtcdCluster, EtcdServer, FakeUpstream, SyslogReceiver, TestDocker,
    wait_until,
};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn etcd_put_get_and_watch_a_service_record() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let schema = KeySchema::default();
    let domain = DomainName::parse("staging.example.local").unwrap();
    let key = schema
        .service_key(&domain, "elasticsearch-9200", "es1")
        .unwrap();
    assert_eq!(key, "/skydns/local/example/staging/elasticsearch-9200/es1");

    let mut stream = client
        .watch(
            schema.watch_prefix(),
            Some(WatchOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let value = ServiceRecord::new("10.0.0.5", 9200).to_json().unwrap();
    client
        .put(key.as_str(), value.as_str(), None)
        .await
        .unwrap();

    let got = client
        .get(schema.watch_prefix(), Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let kvs = got.kvs();
    assert_eq!(kvs.len(), 1);
    assert_eq!(kvs[0].key_str().unwrap(), key);
    assert_eq!(
        ServiceRecord::from_json(kvs[0].value()).unwrap(),
        ServiceRecord::new("10.0.0.5", 9200)
    );

    let events = next_watch_events(&mut stream, WAIT).await;
    let put = &events[0];
    assert_eq!(put.event_type(), EventType::Put);
    assert_eq!(put.kv().unwrap().key_str().unwrap(), key);
}

#[tokio::test]
async fn a_key_on_a_lease_disappears_when_the_lease_expires() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    const KEY: &str = "/skydns/local/test/web/a";
    let lease = client.lease_grant(2, None).await.unwrap();
    client
        .put(
            KEY,
            r#"{"host":"127.0.0.1"}"#,
            Some(PutOptions::new().with_lease(lease.id())),
        )
        .await
        .unwrap();
    let count = |mut client: etcd_client::Client| async move {
        client.get(KEY, None).await.unwrap().count()
    };
    assert_eq!(count(client.clone()).await, 1);
    let mut stream = client.watch(KEY, None).await.unwrap();
    let events = next_watch_events(&mut stream, WAIT).await;
    assert_eq!(events[0].event_type(), EventType::Delete);
    assert_eq!(count(client.clone()).await, 0);
}

#[tokio::test]
async fn a_three_member_cluster_keeps_serving_with_one_member_down() {
    let mut cluster = EtcdCluster::start(3).await;
    assert_eq!(cluster.size(), 3);
    assert_eq!(cluster.endpoints().split(',').count(), 3);
    let mut first = cluster.member_client(0).await;
    first.put("/harness/k", "v1", None).await.unwrap();
    let mut third = cluster.member_client(2).await;
    let got = third.get("/harness/k", None).await.unwrap();
    assert_eq!(got.kvs()[0].value_str().unwrap(), "v1");

    cluster.stop_member(1);
    // If the stopped member led the cluster, writes fail until a new leader is elected.
    wait_until("a write with one member down", WAIT, || {
        let mut client = third.clone();
        async move { client.put("/harness/k", "v2", None).await.ok() }
    })
    .await;
    let got = first.get("/harness/k", None).await.unwrap();
    assert_eq!(got.kvs()[0].value_str().unwrap(), "v2");

    cluster.restart_member(1).await;
    let second = cluster.member_client(1).await;
    let value = wait_until("the restarted member to catch up", WAIT, || {
        let mut client = second.clone();
        async move {
            let got = client.get("/harness/k", None).await.ok()?;
            let value = got.kvs().first()?.value_str().ok()?.to_owned();
            (value == "v2").then_some(value)
        }
    })
    .await;
    assert_eq!(value, "v2");
}

#[tokio::test]
async fn a_stopped_etcd_restarts_with_its_data() {
    let mut etcd = EtcdServer::start().await;
    etcd.client()
        .await
        .put("/harness/kept", "yes", None)
        .await
        .unwrap();
    etcd.stop();
    assert!(
        EtcdServer::settings(&etcd).connect().await.is_err(),
        "a stopped etcd must not answer"
    );
    etcd.restart().await;
    let got = etcd
        .client()
        .await
        .get("/harness/kept", None)
        .await
        .unwrap();
    assert_eq!(got.kvs()[0].value_str().unwrap(), "yes");
}

#[tokio::test]
async fn a_container_publishes_its_port_and_its_output_is_seen_through_bollard() {
    let docker = TestDocker::connect().await;
    let container = docker
        .run(
            ContainerSpec::shell(
                "echo \"hello $GREETING\"; echo 'oops' >&2; \
                 echo served > /var/www/index.html; exec httpd -f -p 8080 -h /var/www",
            )
            .env("GREETING", "stdout")
            .env("SERVICE_NAME", "web")
            .label("SERVICE_TAGS", "a,b")
            .publish(8080),
        )
        .await;
    let logs = container.wait_for_log("oops", WAIT).await;
    assert_eq!(logs.stdout, "hello stdout\n");
    assert_eq!(logs.stderr, "oops\n");

    let inspect = container.inspect().await;
    let config = inspect.config.unwrap();
    assert!(config.env.unwrap().contains(&"SERVICE_NAME=web".to_owned()));
    assert_eq!(config.labels.unwrap()["SERVICE_TAGS"], "a,b");

    let port = container.host_port("8080/tcp").await;
    assert_ne!(port, 0);
    let response = wait_until(
        "httpd to answer on the published port",
        WAIT,
        || async move {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            stream
                .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                .await
                .ok()?;
            let mut body = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut body)
                .await
                .ok()?;
            body.contains("served").then_some(body)
        },
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
}

#[tokio::test]
async fn a_dropped_container_is_removed() {
    let docker = TestDocker::connect().await;
    let container = docker.run(ContainerSpec::idle()).await;
    let id = container.id().to_owned();
    assert_eq!(container.short_id().len(), 12);
    assert!(docker.docker().inspect_container(&id, None).await.is_ok());
    drop(container);
    let err = docker
        .docker()
        .inspect_container(&id, None)
        .await
        .expect_err("the container is gone after drop");
    assert!(
        err.to_string().contains("404") || err.to_string().contains("No such"),
        "{err}"
    );
}

#[tokio::test]
async fn dns_queries_over_udp_and_tcp_reach_the_fake_upstream() {
    let upstream = FakeUpstream::start().await;
    upstream.add_a("example.org.", Ipv4Addr::new(192, 0, 2, 1), 300);
    let client = DnsClient::new(upstream.addr());

    for transport in [Transport::Udp, Transport::Tcp] {
        let reply = match transport {
            Transport::Udp => client.udp("Example.ORG.", RecordType::A).await,
            Transport::Tcp => client.tcp("example.org.", RecordType::A).await,
        }
        .unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].ttl, 300);
        match &reply.answers[0].data {
            RData::A(a) => assert_eq!(a.0, Ipv4Addr::new(192, 0, 2, 1)),
            other => panic!("expected an A record, got {other:?}"),
        }
    }

    let refused = client.udp("unknown.test.", RecordType::A).await.unwrap();
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    upstream.set_default_rcode(ResponseCode::NXDomain);
    let nx = client.tcp("unknown.test.", RecordType::AAAA).await.unwrap();
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);

    upstream.set_truncate_udp(true);
    let truncated = client.udp("example.org.", RecordType::A).await.unwrap();
    assert!(truncated.metadata.truncation);
    assert!(truncated.answers.is_empty());

    let garbage = client
        .with_timeout(Duration::from_millis(300))
        .udp_raw(b"\x00\x01garbage")
        .await
        .unwrap();
    assert_eq!(
        garbage, None,
        "garbage gets no reply from the fake upstream"
    );

    let seen = upstream.queries();
    assert_eq!(seen.len(), 5);
    assert_eq!(
        seen[0],
        ("example.org.".to_owned(), RecordType::A, Transport::Udp)
    );
    assert_eq!(
        seen[1],
        ("example.org.".to_owned(), RecordType::A, Transport::Tcp)
    );
}

#[tokio::test]
async fn the_syslog_receiver_parses_udp_and_both_tcp_framings() {
    let receiver = SyslogReceiver::start().await;
    let rfc5424 = "<14>1 2024-01-02T03:04:05Z host1 web 42 - [meta a=\"1\"] hello 5424";
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(rfc5424.as_bytes(), receiver.addr())
        .await
        .unwrap();
    let got = receiver.wait_for_msg("hello 5424", WAIT).await;
    assert_eq!(got.transport, Transport::Udp);
    assert_eq!(got.framing, Framing::Datagram);
    assert_eq!(got.raw, rfc5424.as_bytes());
    assert_eq!(got.version, Some(1));
    assert_eq!(got.facility.as_deref(), Some("user"));
    assert_eq!(got.severity.as_deref(), Some("info"));
    assert_eq!(got.timestamp.as_deref(), Some("2024-01-02T03:04:05+00:00"));
    assert_eq!(got.hostname.as_deref(), Some("host1"));
    assert_eq!(got.appname.as_deref(), Some("web"));
    assert_eq!(got.procid.as_deref(), Some("42"));
    assert_eq!(got.msgid, None);
    assert_eq!(
        got.structured_data,
        vec![("meta".to_owned(), vec![("a".to_owned(), "1".to_owned())])]
    );
    assert_eq!(got.msg, "hello 5424");

    let rfc3164 = "<11>Jan  2 03:04:05 host2 app[7]: hello 3164";
    let octet = "<14>1 2024-01-02T03:04:05Z host3 app - - - hello\noctet";
    let mut tcp = TcpStream::connect(receiver.addr()).await.unwrap();
    tcp.write_all(format!("{rfc3164}\n{} {octet}", octet.len()).as_bytes())
        .await
        .unwrap();
    tcp.flush().await.unwrap();
    let all = receiver.wait_for_count(3, WAIT).await;
    let newline = &all[1];
    assert_eq!(newline.framing, Framing::NewlineTerminated);
    assert_eq!(newline.raw, rfc3164.as_bytes());
    assert_eq!(newline.version, None);
    assert_eq!(newline.severity.as_deref(), Some("err"));
    assert_eq!(newline.hostname.as_deref(), Some("host2"));
    assert_eq!(newline.appname.as_deref(), Some("app"));
    assert_eq!(newline.procid.as_deref(), Some("7"));
    assert_eq!(newline.msg, "hello 3164");
    let counted = &all[2];
    assert_eq!(counted.framing, Framing::OctetCounted);
    assert_eq!(counted.raw, octet.as_bytes());
    assert_eq!(
        counted.msg, "hello\noctet",
        "octet counting keeps embedded newlines"
    );
}

#[tokio::test]
async fn the_syslog_receiver_can_go_down_and_come_back_on_its_port() {
    let mut receiver = SyslogReceiver::start().await;
    let port = receiver.port();
    receiver.stop().await;
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "a stopped receiver refuses connections"
    );
    receiver.resume().await;
    assert_eq!(receiver.port(), port);
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"<13>Jan  1 00:00:00 h t: back\n")
        .await
        .unwrap();
    assert_eq!(receiver.wait_for_msg("back", WAIT).await.msg, "back");
}

#[tokio::test]
async fn etcd_and_containers_are_stopped_when_a_test_panics() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let failing = tokio::spawn(async move {
        let etcd = EtcdServer::start().await;
        let container = TestDocker::connect().await.run(ContainerSpec::idle()).await;
        let _ = tx.send((etcd.settings(), container.id().to_owned()));
        panic!("a failing test");
    });
    assert!(failing.await.unwrap_err().is_panic());
    let (settings, container_id) = rx.await.unwrap();
    assert!(
        settings.connect().await.is_err(),
        "etcd must be gone after the panic"
    );
    let docker = TestDocker::connect().await;
    assert!(
        docker
            .docker()
            .inspect_container(&container_id, None)
            .await
            .is_err(),
        "the container must be gone after the panic"
    );
}
