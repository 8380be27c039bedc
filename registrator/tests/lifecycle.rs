//! The real binary with real Docker and a real etcd: the seed's elasticsearch, stop, SIGKILL
//! with a TTL, SIGTERM, keep-on-exit, lease loss, etcd restarts, Docker daemon restarts (a socket
//! proxy that is cut and restored) and `-deregister on-success`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{DomainName, KeySchema, ServiceRecord};
use harness::{ContainerSpec, DockerProxy, EtcdServer, TestDocker, wait_until};
use support::{Registrator, WAIT, lease_of, records, tag_test_image, wait_key, wait_records};

fn uri(etcd: &EtcdServer, path: &str) -> String {
    format!("skydns2://{}/{path}", etcd.host_port())
}

/// Exits 3 on SIGTERM. It says "trapped" once the trap is set: a `docker stop` before that
/// would meet the shell's default (PID 1 ignores TERM) and end in SIGKILL, a death by signal.
const FAILS_ON_TERM: &str = "trap 'exit 3' TERM; echo trapped; while true; do sleep 1; done";

#[tokio::test]
async fn seed_elasticsearch_gets_two_records_and_loses_them_on_docker_stop() {
    tag_test_image("elasticsearch:1.5.2");
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = uri(&etcd, "staging.example.local");
    let _registrator = Registrator::start(&[
        "-ip",
        "127.0.0.1",
        "-ttl-refresh",
        "30",
        "-ttl",
        "40",
        &registry,
    ]);

    let es = docker
        .run(
            ContainerSpec::idle()
                .image("elasticsearch:1.5.2")
                .publish_port(9200, "tcp", 0)
                .publish_port(9300, "tcp", 0)
                .env("SERVICE_ID", "es1"),
        )
        .await;
    let mut expected = BTreeMap::new();
    for port in [9200, 9300] {
        let host_port = es.host_port(&format!("{port}/tcp")).await;
        expected.insert(
            format!("/skydns/local/example/staging/elasticsearch-{port}/es1"),
            ServiceRecord::new("127.0.0.1", host_port)
                .to_json()
                .unwrap(),
        );
    }
    // Exactly these two with this ID under the elasticsearch names (another suite running a
    // seed container on the same engine at the same time would use another ID).
    let prefix = "/skydns/local/example/staging/elasticsearch-";
    let es1_records = |mut client: etcd_client::Client| async move {
        let all = records(&mut client, prefix).await;
        all.into_iter()
            .filter(|(k, _)| k.ends_with("/es1"))
            .collect::<BTreeMap<_, _>>()
    };
    let got = wait_until("the two elasticsearch records", WAIT, || {
        let client = client.clone();
        let expected = expected.clone();
        async move {
            let got = es1_records(client).await;
            (got == expected).then_some(got)
        }
    })
    .await;
    assert_eq!(got.len(), 2);
    let key = "/skydns/local/example/staging/elasticsearch-9200/es1";
    let lease = lease_of(&mut client, key).await;
    assert_ne!(lease, 0, "records with -ttl live on a lease");
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 40);

    es.stop(Duration::from_secs(5)).await;
    wait_until("both records removed", WAIT, || {
        let client = client.clone();
        async move { es1_records(client).await.is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn sigkill_with_ttl_loses_the_records_when_the_lease_expires() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = uri(&etcd, "kill.example.local");
    let mut registrator = Registrator::start(&["-ttl", "4", "-ttl-refresh", "1", &registry]);
    let container = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "killed")
                .env("SERVICE_ID", "k1"),
        )
        .await;
    let key = "/skydns/local/example/kill/killed/k1";
    let host_port = container.host_port("80/tcp").await;
    let expected = BTreeMap::from([(
        key.to_owned(),
        ServiceRecord::new("127.0.0.1", host_port)
            .to_json()
            .unwrap(),
    )]);
    wait_records(&mut client, key, &expected).await;
    let lease = lease_of(&mut client, key).await;
    assert_eq!(
        client
            .lease_time_to_live(lease, None)
            .await
            .unwrap()
            .granted_ttl(),
        4
    );
    // Renewal: the record outlives its TTL while registrator runs (time must pass for that).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(records(&mut client, key).await, expected);

    registrator.kill();
    wait_records(&mut client, key, &BTreeMap::new()).await;
}

#[tokio::test]
async fn sigterm_removes_this_instances_records_and_exits_zero() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = uri(&etcd, "term.example.local");
    let mut registrator = Registrator::start(&[&registry]);
    let _container = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "termed")
                .env("SERVICE_ID", "t1"),
        )
        .await;
    let key = "/skydns/local/example/term/termed/t1";
    wait_until("the record", WAIT, || {
        let mut client = client.clone();
        async move { (!records(&mut client, key).await.is_empty()).then_some(()) }
    })
    .await;
    assert_eq!(lease_of(&mut client, key).await, 0, "no -ttl: no lease");

    registrator.terminate();
    let status = registrator.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{}", registrator.log());
    assert!(records(&mut client, key).await.is_empty());
    let log = registrator.log();
    assert!(
        log.lines()
            .any(|l| l.contains(" removed ") && l.contains(key)),
        "{log}"
    );
}

#[tokio::test]
async fn keep_on_exit_leaves_the_records_to_their_ttl() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = uri(&etcd, "keep.example.local");
    let mut registrator = Registrator::start(&[
        "-keep-on-exit",
        "-ttl",
        "30",
        "-ttl-refresh",
        "10",
        &registry,
    ]);
    let _container = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "kept")
                .env("SERVICE_ID", "k1"),
        )
        .await;
    let key = "/skydns/local/example/keep/kept/k1";
    wait_until("the record", WAIT, || {
        let mut client = client.clone();
        async move { (!records(&mut client, key).await.is_empty()).then_some(()) }
    })
    .await;
    registrator.terminate();
    assert_eq!(registrator.wait_exit().await.code(), Some(0));
    assert_eq!(records(&mut client, key).await.len(), 1);
    assert_ne!(lease_of(&mut client, key).await, 0);
}

#[tokio::test]
async fn a_lost_lease_is_replaced_and_every_record_written_again() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = uri(&etcd, "lease.example.local");
    let registrator = Registrator::start(&["-ttl", "10", "-ttl-refresh", "1", &registry]);
    let container = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .publish(81)
                .env("SERVICE_NAME", "leased")
                .env("SERVICE_ID", "l1"),
        )
        .await;
    // Every registrator of the suite registers every container: look only at our names.
    let prefix = "/skydns/local/example/lease/leased-";
    let mut expected = BTreeMap::new();
    for port in [80, 81] {
        let host_port = container.host_port(&format!("{port}/tcp")).await;
        expected.insert(
            format!("{prefix}{port}/l1"),
            ServiceRecord::new("127.0.0.1", host_port)
                .to_json()
                .unwrap(),
        );
    }
    wait_records(&mut client, prefix, &expected).await;
    let key = format!("{prefix}80/l1");
    let first = lease_of(&mut client, &key).await;
    // What an etcd partition longer than the TTL does: the lease is gone with its keys.
    client.lease_revoke(first).await.unwrap();

    wait_records(&mut client, prefix, &expected).await;
    let second = lease_of(&mut client, &key).await;
    assert_ne!(second, 0);
    assert_ne!(second, first);
    assert_eq!(
        lease_of(&mut client, &format!("{prefix}81/l1")).await,
        second
    );
    assert!(
        registrator.log().contains("lease expired"),
        "{}",
        registrator.log()
    );
}

#[tokio::test]
async fn writes_during_an_etcd_outage_land_after_it_comes_back() {
    let docker = TestDocker::connect().await;
    let mut etcd = EtcdServer::start().await;
    let registry = uri(&etcd, "outage.example.local");
    let registrator = Registrator::start(&["-ttl", "20", "-ttl-refresh", "2", &registry]);
    let first = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "before")
                .env("SERVICE_ID", "b1"),
        )
        .await;
    let prefix = "/skydns/local/example/outage/";
    let before = (
        format!("{prefix}before/b1"),
        ServiceRecord::new("127.0.0.1", first.host_port("80/tcp").await)
            .to_json()
            .unwrap(),
    );
    {
        let mut client = etcd.client().await;
        wait_key(&mut client, &before.0, Some(&before.1)).await;
    }

    etcd.stop();
    let second = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "during")
                .env("SERVICE_ID", "d1"),
        )
        .await;
    let during = (
        format!("{prefix}during/d1"),
        ServiceRecord::new("127.0.0.1", second.host_port("80/tcp").await)
            .to_json()
            .unwrap(),
    );
    // Let the retries back off to their longest step (attempts 1..4: 0.25 + 0.5 + 1 + 2 s and
    // more with jitter), so that waiting out the step would be seen.
    harness::wait_until("four failed write attempts", support::WAIT, || async {
        (registrator.log().matches("etcd write failed").count() >= 4).then_some(())
    })
    .await;
    etcd.restart().await;
    let back = std::time::Instant::now();

    let mut client = etcd.client().await;
    wait_key(&mut client, &during.0, Some(&during.1)).await;
    eprintln!("etcd back -> pending record landed: {:?}", back.elapsed());
    wait_key(&mut client, &before.0, Some(&before.1)).await;
    // The write was not left to the backoff: a probe saw etcd answer and wrote at once.
    let log = registrator.log();
    assert!(log.contains("etcd answers again"), "{log}");
    assert_eq!(
        log.matches("etcd write failed, will retry").count(),
        1,
        "one warning per outage, the retries at debug: {log}"
    );
}

#[tokio::test]
async fn deregister_on_success_keeps_the_records_of_failed_containers() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = format!("etcd://{}/onsuccess", etcd.host_port());
    let _registrator = Registrator::start(&["-deregister", "on-success", &registry]);
    let failing = docker
        .run(
            ContainerSpec::shell(FAILS_ON_TERM)
                .publish(80)
                .env("SERVICE_NAME", "failing")
                .env("SERVICE_ID", "f1"),
        )
        .await;
    let succeeding = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "succeeding")
                .env("SERVICE_ID", "s1"),
        )
        .await;
    let failing_record = (
        "/onsuccess/failing/f1".to_owned(),
        format!("127.0.0.1:{}", failing.host_port("80/tcp").await),
    );
    let succeeding_record = (
        "/onsuccess/succeeding/s1".to_owned(),
        format!("127.0.0.1:{}", succeeding.host_port("80/tcp").await),
    );
    wait_key(&mut client, &failing_record.0, Some(&failing_record.1)).await;
    wait_key(
        &mut client,
        &succeeding_record.0,
        Some(&succeeding_record.1),
    )
    .await;
    // Exit code 3: kept. Then exit code 0: removed. Both die events are handled in order, so
    // once the second record is gone the first one has been decided.
    failing.wait_for_log("trapped", WAIT).await;
    failing.stop(Duration::from_secs(10)).await;
    succeeding.stop(Duration::from_secs(10)).await;
    wait_key(&mut client, &succeeding_record.0, None).await;
    assert_eq!(
        records(&mut client, &failing_record.0).await,
        BTreeMap::from([failing_record])
    );
}

#[tokio::test]
async fn default_ids_become_dns_safe_skydns2_labels() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = uri(&etcd, "ids.example.local");
    let _registrator = Registrator::start(&[&registry]);
    let container = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "plain"),
        )
        .await;
    let id = format!("{}:{}:80", support::hostname(), container.name());
    let key = KeySchema::default()
        .service_key(
            &DomainName::parse("ids.example.local").unwrap(),
            "plain",
            &id,
        )
        .unwrap();
    let label = key.rsplit('/').next().unwrap();
    assert!(!label.contains(':') && !label.contains('.'), "{label}");
    let expected = BTreeMap::from([(
        key,
        ServiceRecord::new("127.0.0.1", container.host_port("80/tcp").await)
            .to_json()
            .unwrap(),
    )]);
    wait_records(&mut client, "/skydns/local/example/ids/plain/", &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_daemon_restart_is_caught_up_after_reconnecting() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    // Registrator reaches Docker only through the proxy; the test uses the real socket.
    let proxy = DockerProxy::start();
    let metrics = format!("127.0.0.1:{}", harness::process::free_tcp_port());
    let registry = format!("etcd://{}/reconnect", etcd.host_port());
    let mut registrator = Registrator::start_with_docker(
        &["-ip", "127.0.0.1", "-metrics", &metrics, &registry],
        &proxy.docker_host(),
    );
    let service = |name: &str, id: &str| {
        ContainerSpec::idle()
            .publish(80)
            .env("SERVICE_NAME", name)
            .env("SERVICE_ID", id)
    };
    let kept = docker.run(service("reconnect-kept", "k1")).await;
    let stopped = docker.run(service("reconnect-stopped", "s1")).await;
    let kept_key = "/reconnect/reconnect-kept/k1";
    let kept_value = format!("127.0.0.1:{}", kept.host_port("80/tcp").await);
    let stopped_key = "/reconnect/reconnect-stopped/s1";
    let stopped_value = format!("127.0.0.1:{}", stopped.host_port("80/tcp").await);
    wait_key(&mut client, kept_key, Some(&kept_value)).await;
    wait_key(&mut client, stopped_key, Some(&stopped_value)).await;
    assert_eq!(
        support::metric(&metrics, "registrator_docker_connects_total").await,
        1.0
    );

    // Docker "restarts": while it is away one container stops and another starts. Registrator
    // sees neither event.
    proxy.cut();
    registrator.wait_log("lost Docker, will reconnect").await;
    stopped.stop(Duration::from_secs(5)).await;
    let started = docker.run(service("reconnect-started", "n1")).await;
    let started_key = "/reconnect/reconnect-started/n1";
    let started_value = format!("127.0.0.1:{}", started.host_port("80/tcp").await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        records(&mut client, stopped_key).await.len(),
        1,
        "the stop was seen while Docker was away: registrator does not use DOCKER_HOST"
    );
    assert!(
        registrator.is_running(),
        "registrator exited without Docker"
    );
    proxy.restore();

    wait_key(&mut client, started_key, Some(&started_value)).await;
    wait_key(&mut client, stopped_key, None).await;
    wait_key(&mut client, kept_key, Some(&kept_value)).await;
    assert!(support::metric(&metrics, "registrator_docker_connects_total").await >= 2.0);

    // A second, short outage with nothing changing meanwhile: the resync after it keeps every
    // record of the containers that still run and brings back none of the stopped one.
    proxy.outage(Duration::from_secs(2)).await;
    wait_until("a third connection to Docker", WAIT, || async {
        (support::metric(&metrics, "registrator_docker_connects_total").await >= 3.0).then_some(())
    })
    .await;
    wait_until("the resync after the second outage", WAIT, || async {
        (registrator.log().matches(" synced").count() >= 3).then_some(())
    })
    .await;
    assert_eq!(
        records(&mut client, "/reconnect/reconnect-").await,
        BTreeMap::from([
            (kept_key.to_owned(), kept_value),
            (started_key.to_owned(), started_value),
        ])
    );
    assert!(registrator.is_running(), "registrator exited");
}

#[tokio::test]
async fn require_healthy_follows_health_status_and_metrics_are_served() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let metrics = format!("127.0.0.1:{}", harness::process::free_tcp_port());
    let registry = format!("etcd://{}/healthy", etcd.host_port());
    let registrator = Registrator::start(&["-require-healthy", "-metrics", &metrics, &registry]);
    registrator.wait_log("synced").await;
    let container = docker
        .run(
            ContainerSpec::shell(
                "trap 'exit 0' TERM; sleep 3; touch /tmp/healthy; sleep 5; rm /tmp/healthy; \
                 while true; do sleep 1; done",
            )
            .healthcheck("test -f /tmp/healthy", Duration::from_secs(1))
            .publish(80)
            .env("SERVICE_NAME", "health-checked")
            .env("SERVICE_ID", "h1"),
        )
        .await;
    registrator.wait_log(container.short_id()).await;
    registrator.wait_log("ignored: not healthy yet").await;
    let key = "/healthy/health-checked/h1";
    let value = format!("127.0.0.1:{}", container.host_port("80/tcp").await);
    wait_key(&mut client, key, Some(&value)).await;
    wait_key(&mut client, key, None).await;

    let (status, response) = harness::http::http_get(metrics.parse().unwrap(), "/metrics")
        .await
        .unwrap();
    assert_eq!(status, 200, "{response}");
    assert!(response.contains("registrator_services "), "{response}");
    let health_events = response
        .lines()
        .find(|l| l.starts_with("registrator_docker_events_total{action=\"health_status\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(health_events >= 2, "{response}");
}

#[tokio::test]
async fn running_containers_are_listed_at_start_and_resync_rewrites_lost_records() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let container = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "resynced")
                .env("SERVICE_ID", "r1"),
        )
        .await;
    let registry = format!("etcd://{}/resync", etcd.host_port());
    let _registrator = Registrator::start(&["-resync", "1", &registry]);
    let key = "/resync/resynced/r1";
    let value = format!("127.0.0.1:{}", container.host_port("80/tcp").await);
    wait_key(&mut client, key, Some(&value)).await;

    client.delete(key, None).await.unwrap();
    wait_key(&mut client, key, Some(&value)).await;
}

#[tokio::test]
async fn several_etcd_endpoints_survive_a_member_going_down() {
    let docker = TestDocker::connect().await;
    let mut cluster = harness::EtcdCluster::start(3).await;
    let endpoints = cluster.endpoints().replace("http://", "");
    let registry = format!("skydns2://{endpoints}/cluster.example.local");
    let _registrator = Registrator::start(&["-ttl", "20", "-ttl-refresh", "2", &registry]);
    let first = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "clustered-a")
                .env("SERVICE_ID", "a1"),
        )
        .await;
    let mut client = cluster.member_client(1).await;
    let prefix = "/skydns/local/example/cluster";
    let first_value = ServiceRecord::new("127.0.0.1", first.host_port("80/tcp").await)
        .to_json()
        .unwrap();
    wait_key(
        &mut client,
        &format!("{prefix}/clustered-a/a1"),
        Some(&first_value),
    )
    .await;

    cluster.stop_member(0);
    let second = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "clustered-b")
                .env("SERVICE_ID", "b1"),
        )
        .await;
    let second_value = ServiceRecord::new("127.0.0.1", second.host_port("80/tcp").await)
        .to_json()
        .unwrap();
    wait_key(
        &mut client,
        &format!("{prefix}/clustered-b/b1"),
        Some(&second_value),
    )
    .await;
}

#[tokio::test]
async fn cleanup_removes_records_this_host_left_for_stopped_containers() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    // What a reboot without -ttl leaves: a stopped container and its record from the last run.
    let stopped = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "left-behind"),
        )
        .await;
    stopped.stop(Duration::from_secs(5)).await;
    let stale = format!(
        "/clean/left-behind/{}:{}:80",
        support::hostname(),
        stopped.name()
    );
    client
        .put(stale.as_str(), "127.0.0.1:1", None)
        .await
        .unwrap();
    // An explicit ID may belong to another host's container: never touched.
    let foreign = "/clean/left-behind/es1";
    client.put(foreign, "10.0.0.7:9200", None).await.unwrap();

    let registry = format!("etcd://{}/clean", etcd.host_port());
    let registrator = Registrator::start(&["-cleanup", "-resync", "1", &registry]);
    wait_key(&mut client, &stale, None).await;
    assert_eq!(
        records(&mut client, foreign).await,
        BTreeMap::from([(foreign.to_owned(), "10.0.0.7:9200".to_owned())])
    );
    assert!(
        registrator.log().contains("dangling: removed"),
        "{}",
        registrator.log()
    );
}

#[tokio::test]
async fn etcd_authentication_with_username_and_password() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut admin = etcd.client().await;
    admin.role_add("root").await.unwrap();
    admin.user_add("root", "s3cret", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.auth_enable().await.unwrap();
    let registry = format!("etcd://{}/auth", etcd.host_port());

    // A wrong password is a clear start-up error.
    let mut refused = Registrator::start(&[
        "-etcd-username",
        "root",
        "-etcd-password",
        "wrong",
        &registry,
    ]);
    assert_eq!(refused.wait_exit().await.code(), Some(1));
    assert!(
        refused.log().contains("cannot reach the registry"),
        "{}",
        refused.log()
    );

    let _registrator = Registrator::start_with_env(
        &["-etcd-username", "root", &registry],
        &[("REGISTRATOR_ETCD_PASSWORD", "s3cret")],
    );
    let container = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "authed")
                .env("SERVICE_ID", "a1"),
        )
        .await;
    let mut client = etcd
        .settings()
        .with_auth("root", "s3cret")
        .connect()
        .await
        .unwrap();
    let value = format!("127.0.0.1:{}", container.host_port("80/tcp").await);
    wait_key(&mut client, "/auth/authed/a1", Some(&value)).await;
}

#[tokio::test]
async fn one_key_claimed_by_two_containers_is_restored_not_deleted() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = format!("etcd://{}/dup", etcd.host_port());
    let _registrator = Registrator::start(&[&registry]);
    let spec = || {
        ContainerSpec::idle()
            .publish(80)
            .env("SERVICE_NAME", "duplicated")
            .env("SERVICE_ID", "same")
    };
    let key = "/dup/duplicated/same";
    let first = docker.run(spec()).await;
    let first_value = format!("127.0.0.1:{}", first.host_port("80/tcp").await);
    wait_key(&mut client, key, Some(&first_value)).await;
    let second = docker.run(spec()).await;
    let second_value = format!("127.0.0.1:{}", second.host_port("80/tcp").await);
    wait_key(&mut client, key, Some(&second_value)).await;

    second.stop(Duration::from_secs(5)).await;
    wait_key(&mut client, key, Some(&first_value)).await;
    first.stop(Duration::from_secs(5)).await;
    wait_key(&mut client, key, None).await;
}

#[tokio::test]
async fn on_success_with_ttl_lets_a_failed_containers_records_expire() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = format!("etcd://{}/expire", etcd.host_port());
    let registrator = Registrator::start(&[
        "-deregister",
        "on-success",
        "-ttl",
        "3",
        "-ttl-refresh",
        "1",
        &registry,
    ]);
    let failing = docker
        .run(
            ContainerSpec::shell(FAILS_ON_TERM)
                .publish(80)
                .env("SERVICE_NAME", "expiring")
                .env("SERVICE_ID", "e1"),
        )
        .await;
    let key = "/expire/expiring/e1";
    let value = format!("127.0.0.1:{}", failing.host_port("80/tcp").await);
    wait_key(&mut client, key, Some(&value)).await;
    let renewed = lease_of(&mut client, key).await;

    failing.wait_for_log("trapped", WAIT).await;
    failing.stop(Duration::from_secs(10)).await;
    registrator.wait_log("no longer renewed").await;
    // Moved to a lease of its own that nobody renews, then gone while registrator runs on.
    wait_until("the record on another lease", WAIT, || {
        let mut client = client.clone();
        async move {
            let lease = lease_of(&mut client, key).await;
            (lease == 0 || lease != renewed).then_some(())
        }
    })
    .await;
    wait_key(&mut client, key, None).await;
    let log = registrator.log();
    assert!(
        !log.lines()
            .any(|l| l.contains(" removed ") && l.contains(key)),
        "expired, not removed: {log}"
    );
}

#[tokio::test]
async fn sigint_is_a_graceful_stop_too() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = format!("etcd://{}/sigint", etcd.host_port());
    let mut registrator = Registrator::start(&["-ttl", "30", "-ttl-refresh", "10", &registry]);
    let container = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "interrupted")
                .env("SERVICE_ID", "i1"),
        )
        .await;
    let key = "/sigint/interrupted/i1";
    let value = format!("127.0.0.1:{}", container.host_port("80/tcp").await);
    wait_key(&mut client, key, Some(&value)).await;
    registrator.signal(libc::SIGINT);
    assert_eq!(registrator.wait_exit().await.code(), Some(0));
    assert!(records(&mut client, key).await.is_empty());
}

/// A Docker network created by the test; removed when dropped.
struct TestNetwork(String);

impl TestNetwork {
    /// A new bridge network `name`, removed on drop (after the containers declared later).
    async fn create(docker: &TestDocker, name: String) -> Self {
        Self::create_with(
            docker,
            bollard::models::NetworkCreateRequest {
                name,
                ..Default::default()
            },
        )
        .await
    }

    /// A new dual-stack bridge network `name` with the IPv6 subnet `subnet`.
    async fn create_dual_stack(docker: &TestDocker, name: String, subnet: &str) -> Self {
        Self::create_with(
            docker,
            bollard::models::NetworkCreateRequest {
                name,
                enable_ipv6: Some(true),
                ipam: Some(bollard::models::Ipam {
                    config: Some(vec![bollard::models::IpamConfig {
                        subnet: Some(subnet.to_owned()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
    }

    async fn create_with(
        docker: &TestDocker,
        request: bollard::models::NetworkCreateRequest,
    ) -> Self {
        let name = request.name.clone();
        docker
            .docker()
            .create_network(request)
            .await
            .unwrap_or_else(|e| panic!("creating network {name}: {e}"));
        Self(name)
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.0])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `-ipv6`: a container on a dual-stack network gets its IPv4 record and a second one with its
/// IPv6 address (`<id>-ipv6`, an AAAA in skydns); both go when it stops.
#[tokio::test]
async fn ipv6_registers_both_addresses_of_a_dual_stack_endpoint() {
    let docker = TestDocker::connect().await;
    let pid = std::process::id();
    let subnet = format!("fd00:{:x}::/64", pid % 0xffff);
    let network =
        TestNetwork::create_dual_stack(&docker, format!("regtest-dual-{pid}"), &subnet).await;
    let container = docker
        .run(
            ContainerSpec::idle()
                .network_mode(&network.0)
                .expose(8080)
                .env("SERVICE_NAME", "dual")
                .env("SERVICE_ID", "d1"),
        )
        .await;
    let endpoint = container
        .inspect()
        .await
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(&network.0))
        .unwrap();
    let v4 = endpoint.ip_address.unwrap();
    let v6 = endpoint.global_ipv6_address.unwrap();
    assert!(
        v6.starts_with(&subnet[..subnet.len() - 4]),
        "{v6} in {subnet}"
    );
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = format!("etcd://{}/dual", etcd.host_port());
    let _registrator = Registrator::start(&["-internal", "-ipv6", &registry]);
    wait_key(&mut client, "/dual/dual/d1", Some(&format!("{v4}:8080"))).await;
    wait_key(
        &mut client,
        "/dual/dual/d1-ipv6",
        Some(&format!("[{v6}]:8080")),
    )
    .await;
    drop(container);
    wait_key(&mut client, "/dual/dual/d1", None).await;
    wait_key(&mut client, "/dual/dual/d1-ipv6", None).await;
}

#[tokio::test]
async fn internal_on_a_user_defined_network_registers_the_address_on_that_network() {
    let docker = TestDocker::connect().await;
    let name = format!("regtest-{}", std::process::id());
    let _network = TestNetwork::create(&docker, name.clone()).await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = format!("etcd://{}/net", etcd.host_port());
    let _registrator = Registrator::start(&["-internal", &registry]);
    let container = docker
        .run(
            ContainerSpec::idle()
                .network_mode(&name)
                .expose(8080)
                .env("SERVICE_NAME", "on-network")
                .env("SERVICE_ID", "n1"),
        )
        .await;
    let ip = container
        .inspect()
        .await
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(&name).cloned())
        .and_then(|e| e.ip_address)
        .unwrap();
    assert!(!ip.is_empty());
    wait_key(
        &mut client,
        "/net/on-network/n1",
        Some(&format!("{ip}:8080")),
    )
    .await;
}

#[tokio::test]
async fn network_and_service_network_choose_the_address_of_a_multi_network_container() {
    let docker = TestDocker::connect().await;
    let mut networks = Vec::new();
    for side in ["front", "back"] {
        let name = format!("regtest-{side}-{}", std::process::id());
        networks.push(TestNetwork::create(&docker, name).await);
    }
    let (front, back) = (networks[0].0.clone(), networks[1].0.clone());
    // Both containers start on `front` and are connected to `back` before registrator lists them.
    let mut containers = Vec::new();
    for (id, asked) in [("m1", None), ("m2", Some(front.as_str()))] {
        let mut spec = ContainerSpec::idle()
            .network_mode(&front)
            .expose(8080)
            .env("SERVICE_NAME", "multi")
            .env("SERVICE_ID", id);
        if let Some(network) = asked {
            spec = spec.label("SERVICE_NETWORK", network);
        }
        let container = docker.run(spec).await;
        docker
            .docker()
            .connect_network(
                &back,
                bollard::models::NetworkConnectRequest {
                    container: container.id().to_owned(),
                    endpoint_config: None,
                },
            )
            .await
            .unwrap();
        containers.push(container);
    }
    let mut ips = Vec::new();
    for container in &containers {
        let networks = container
            .inspect()
            .await
            .network_settings
            .and_then(|n| n.networks)
            .unwrap();
        let ip_on = |name: &str| {
            networks
                .get(name)
                .and_then(|e| e.ip_address.clone())
                .unwrap()
        };
        ips.push((ip_on(&front), ip_on(&back)));
    }
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = format!("etcd://{}/multi", etcd.host_port());
    let _registrator = Registrator::start(&["-internal", "-network", &back, &registry]);
    // -network picks `back` over the network mode's `front`; the label picks `front` back.
    let m1 = format!("{}:8080", ips[0].1);
    wait_key(&mut client, "/multi/multi/m1", Some(&m1)).await;
    let m2 = format!("{}:8080", ips[1].0);
    wait_key(&mut client, "/multi/multi/m2", Some(&m2)).await;
}

#[tokio::test]
async fn hostile_container_metadata_is_skipped_and_the_rest_is_registered() {
    let docker = TestDocker::connect().await;
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let registry = uri(&etcd, "hostile.example.local");
    let mut registrator = Registrator::start(&[&registry]);
    // What Docker accepts but no DNS name can hold: a 200 KB label, hundreds of SERVICE_
    // variables, names with spaces, control characters and emoji, ports out of range.
    let mut hostile = ContainerSpec::idle()
        .publish(80)
        .publish_udp(53)
        .label("SERVICE_TAGS", &"t,".repeat(100_000))
        .env("SERVICE_NAME", "na me\u{1}\u{1F600}")
        .env("SERVICE_80_ID", &"x".repeat(70_000))
        .env("SERVICE_99999_NAME", "nope")
        .env("SERVICE_53_NAME", "..");
    for i in 0..300 {
        hostile = hostile.env(&format!("SERVICE_{i}_TAGS"), "\u{7f}é");
    }
    let _hostile = docker.run(hostile).await;
    let plain = docker
        .run(
            ContainerSpec::idle()
                .publish(80)
                .env("SERVICE_NAME", "plain")
                .env("SERVICE_ID", "p1"),
        )
        .await;
    let value = ServiceRecord::new("127.0.0.1", plain.host_port("80/tcp").await)
        .to_json()
        .unwrap();
    wait_key(
        &mut client,
        "/skydns/local/example/hostile/plain/p1",
        Some(&value),
    )
    .await;
    assert!(registrator.is_running(), "{}", registrator.log());
    // Whatever was written for the hostile container is a key skydns can answer for.
    let schema = KeySchema::default();
    for key in records(&mut client, "/skydns/").await.keys() {
        assert!(schema.name(key).is_ok(), "unanswerable key {key:?}");
    }
}
