//! The structured adapters end to end: real containers, logspout as a process, real UDP, TCP
//! and TLS receivers on 127.0.0.1: `json` lines, GELF (chunked over UDP, NUL-delimited over
//! TCP, compared with what Docker's own `gelf` log driver sends for the same container) and
//! Logstash events.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use harness::docker::TEST_IMAGE;
use harness::{ContainerSpec, TestDocker, wait_until};
use serde_json::Value;
use support::{Logspout, WAIT, unique};
use tokio::io::AsyncReadExt;

type Shared<T> = Arc<Mutex<Vec<T>>>;

/// Collects every datagram sent to a UDP socket on 127.0.0.1.
async fn udp_receiver() -> (u16, Shared<Vec<u8>>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let store: Shared<Vec<u8>> = Arc::default();
    let datagrams = store.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 70_000];
        while let Ok(n) = socket.recv(&mut buf).await {
            datagrams.lock().unwrap().push(buf[..n].to_vec());
        }
    });
    (port, store)
}

/// Spawns a reader per accepted stream; each connection's bytes are one entry.
fn collect_streams<S>(stream: S, store: Shared<Vec<u8>>)
where
    S: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let index = {
            let mut all = store.lock().unwrap();
            all.push(Vec::new());
            all.len() - 1
        };
        let mut stream = stream;
        let mut buf = vec![0u8; 65_536];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            store.lock().unwrap()[index].extend_from_slice(&buf[..n]);
        }
    });
}

/// Collects the bytes of every TCP connection to 127.0.0.1.
async fn tcp_receiver() -> (u16, Shared<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let store: Shared<Vec<u8>> = Arc::default();
    let connections = store.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            collect_streams(tcp, connections.clone());
        }
    });
    (port, store)
}

/// Collects the bytes of every TLS connection (certificate from the test CA in `dir`).
async fn tls_receiver(dir: &std::path::Path) -> (u16, Shared<Vec<u8>>) {
    let config = harness::tls::server_config(dir, false);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let store: Shared<Vec<u8>> = Arc::default();
    let connections = store.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    collect_streams(tls, connections);
                }
            });
        }
    });
    (port, store)
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(bytes)))
}

/// The complete frames (ending with `delimiter`) of every connection, parsed.
fn stream_objects(store: &Shared<Vec<u8>>, delimiter: u8) -> Vec<Value> {
    let connections = store.lock().unwrap().clone();
    let mut out = Vec::new();
    for bytes in connections {
        let mut frames: Vec<&[u8]> = bytes.split(|&b| b == delimiter).collect();
        frames.pop(); // after the last delimiter: empty or incomplete
        out.extend(frames.into_iter().map(parse));
    }
    out
}

async fn wait_objects(what: &str, count: usize, objects: impl Fn() -> Vec<Value>) -> Vec<Value> {
    wait_until(what, WAIT, || {
        let got = objects();
        async move { (got.len() >= count).then_some(got) }
    })
    .await
}

fn by_message<'a>(objects: &'a [Value], field: &str, message: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o[field] == message)
        .unwrap_or_else(|| panic!("no {field} {message:?} in {objects:?}"))
}

/// `2026-12-02T15:44:57.123456789Z`: RFC 3339 with nanoseconds, UTC.
fn assert_nanosecond_time(value: &Value) {
    let text = value.as_str().unwrap();
    assert_eq!(text.len(), 30, "{text}");
    assert!(text.ends_with('Z') && text.as_bytes()[19] == b'.', "{text}");
    let time = chrono::DateTime::parse_from_rfc3339(text).unwrap();
    let age = chrono::Utc::now().signed_duration_since(time);
    assert!(age.num_seconds().abs() < 120, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_over_udp_tcp_and_tls_carry_container_metadata() {
    let dir = tempfile::tempdir().unwrap();
    harness::tls::make_certificates(dir.path());
    let (udp_port, udp) = udp_receiver().await;
    let (tcp_port, tcp) = tcp_receiver().await;
    let (tls_port, tls) = tls_receiver(dir.path()).await;
    let docker = TestDocker::connect().await;
    let name = unique("ls-json");
    let routes = format!(
        "json://127.0.0.1:{udp_port}?filter.name={name}&labels=com.example.,\
         json+tcp://127.0.0.1:{tcp_port}?filter.name={name},\
         json+tls://localhost:{tls_port}?filter.name={name}&labels=app"
    );
    let ca = dir.path().join("ca.pem").display().to_string();
    let env = [
        ("LOGSPOUT_TLS_CA_CERTS", ca.as_str()),
        ("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true"),
    ];
    let logspout = Logspout::start(Some(&routes), &env).await;
    let container = docker
        .run(
            ContainerSpec::shell(
                "echo hello; echo 'oops \"quoted\"' >&2; printf 'bad\\377\\n'; sleep 30",
            )
            .name(&name)
            .hostname("abc123")
            .label("com.example.tier", "front")
            .label("app", "web\n\"x\""),
        )
        .await;

    let udp_objects = wait_objects("3 json datagrams", 3, || {
        let datagrams = udp.lock().unwrap().clone();
        for d in &datagrams {
            assert_eq!(d.last(), Some(&b'\n'), "{d:?}");
            assert_eq!(d.iter().filter(|&&b| b == b'\n').count(), 1);
        }
        datagrams.iter().map(|d| parse(d)).collect()
    })
    .await;
    let tcp_objects =
        wait_objects("3 json lines over TCP", 3, || stream_objects(&tcp, b'\n')).await;
    let tls_objects =
        wait_objects("3 json lines over TLS", 3, || stream_objects(&tls, b'\n')).await;

    for (objects, labels) in [
        (&udp_objects, vec!["com.example.tier"]),
        (
            &tcp_objects,
            vec![
                "app",
                "com.example.tier",
                "io.harness",
                "io.harness.image",
                "io.harness.owner-pid",
            ],
        ),
        (&tls_objects, vec!["app"]),
    ] {
        assert_eq!(objects.len(), 3, "{objects:?}");
        for (message, stream) in [
            ("hello", "stdout"),
            ("oops \"quoted\"", "stderr"),
            ("bad\u{fffd}", "stdout"),
        ] {
            let o = by_message(objects, "message", message);
            assert_eq!(o["stream"], stream);
            assert_nanosecond_time(&o["time"]);
            assert_eq!(
                o["container"],
                serde_json::json!({
                    "id": container.id(),
                    "name": name,
                    "image": TEST_IMAGE,
                    "hostname": "abc123",
                })
            );
            assert_eq!(o["host"], "abc123");
            let keys: Vec<&str> = o["labels"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, labels);
            if labels.contains(&"app") {
                assert_eq!(o["labels"]["app"], "web\n\"x\"");
            }
            let fields: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(
                fields,
                ["container", "host", "labels", "message", "stream", "time"]
            );
        }
    }
    let sent = logspout.metric("logspout_route_lines_out_total").await;
    assert!(sent >= 9.0, "lines out {sent}");
}

/// GELF messages from UDP datagrams: whole ones, and chunked ones reassembled by message ID.
fn gelf_datagrams(datagrams: &[Vec<u8>]) -> (Vec<Value>, usize) {
    let mut whole = Vec::new();
    let mut chunked: HashMap<Vec<u8>, Vec<Option<Vec<u8>>>> = HashMap::new();
    let mut chunk_count = 0;
    for d in datagrams {
        if d.starts_with(&[0x1e, 0x0f]) {
            chunk_count += 1;
            assert!(d.len() <= 8192, "chunk of {} bytes", d.len());
            let (seq, count) = (usize::from(d[10]), usize::from(d[11]));
            let slots = chunked
                .entry(d[2..10].to_vec())
                .or_insert_with(|| vec![None; count]);
            assert_eq!(slots.len(), count);
            slots[seq] = Some(d[12..].to_vec());
        } else {
            assert!(d.len() <= 8192, "unchunked datagram of {} bytes", d.len());
            whole.push(parse(d));
        }
    }
    for slots in chunked.values() {
        if slots.iter().all(Option::is_some) {
            let joined: Vec<u8> = slots.iter().flatten().flatten().copied().collect();
            whole.push(parse(&joined));
        }
    }
    (whole, chunk_count)
}

const LONG_LINE_SCRIPT: &str =
    "s=xxxxxxxxxx; for i in 1 2 3 4 5 6 7 8 9 10 11; do s=$s$s; done; echo \"$s\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gelf_over_udp_chunks_large_messages_and_over_tcp_ends_each_with_nul() {
    let (udp_port, udp) = udp_receiver().await;
    let (tcp_port, tcp) = tcp_receiver().await;
    let docker = TestDocker::connect().await;
    let name = unique("ls-gelf");
    let routes = format!(
        "gelf://127.0.0.1:{udp_port}?filter.name={name}&labels=com.example.,\
         gelf+tcp://127.0.0.1:{tcp_port}?filter.name={name}&labels=com.example."
    );
    let logspout = Logspout::start(Some(&routes), &[]).await;
    let container = docker
        .run(
            ContainerSpec::shell(&format!(
                "echo hello; echo oops >&2; {LONG_LINE_SCRIPT}; sleep 30"
            ))
            .name(&name)
            .hostname("abc123")
            .label("com.example.tier", "front"),
        )
        .await;
    let inspect = container.inspect().await;
    let udp_objects = wait_objects("3 GELF messages over UDP", 3, || {
        gelf_datagrams(&udp.lock().unwrap()).0
    })
    .await;
    let (_, chunks) = gelf_datagrams(&udp.lock().unwrap());
    assert_eq!(chunks, 3, "20,480 x's in 8,180-byte chunk payloads");
    let tcp_objects = wait_objects("3 GELF messages over TCP", 3, || stream_objects(&tcp, 0)).await;
    let long = "x".repeat(10 * 2048);
    for objects in [&udp_objects, &tcp_objects] {
        assert_eq!(objects.len(), 3);
        for (message, level) in [("hello", 6), ("oops", 3), (long.as_str(), 6)] {
            let o = by_message(objects, "short_message", message);
            assert_eq!(o["version"], "1.1");
            assert_eq!(o["host"], "abc123");
            assert_eq!(o["level"], level);
            assert_eq!(o["_container_id"], container.id());
            assert_eq!(o["_container_name"], name.as_str());
            assert_eq!(o["_tag"], container.short_id());
            assert_eq!(o["_image_name"], TEST_IMAGE);
            assert_eq!(o["_image_id"], inspect.image.as_deref().unwrap());
            assert_eq!(o["_com.example.tier"], "front");
            assert!(o.get("_io.harness").is_none());
            let age = chrono::Utc::now().timestamp() as f64 - o["timestamp"].as_f64().unwrap();
            assert!(age.abs() < 120.0, "{o}");
        }
    }
    assert_eq!(
        logspout.metric("logspout_route_udp_oversize_total").await,
        1.0
    );
    assert_eq!(
        logspout.metric("logspout_route_lines_dropped_total").await,
        0.0
    );
}

/// Records what Docker's own `gelf` log driver sends on this machine (printed, and kept as the
/// reference) and checks that our GELF for the same container has the same fields with the
/// same values. logspout does not attach containers with the `gelf` driver (Docker cannot be
/// asked for their logs as the original expects), so our side renders the container's
/// inspect result with the `gelf` route's renderer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_gelf_matches_what_dockers_gelf_driver_sends() {
    let (port, received) = udp_receiver().await;
    let docker = TestDocker::connect().await;
    let address = format!("udp://127.0.0.1:{port}");
    let container = docker
        .run(
            ContainerSpec::shell("echo hello; echo oops >&2; sleep 30")
                .hostname("abc123")
                .label("app", "web")
                .label("other", "x")
                .log_driver(
                    "gelf",
                    &[
                        ("gelf-address", address.as_str()),
                        ("gelf-compression-type", "none"),
                        ("labels", "app"),
                    ],
                ),
        )
        .await;
    let theirs = wait_objects("2 GELF messages from Docker", 2, || {
        received.lock().unwrap().iter().map(|d| parse(d)).collect()
    })
    .await;
    for message in &theirs {
        eprintln!("Docker's gelf driver sent: {message}");
    }
    let inspect = container.inspect().await;
    let info = Arc::new(logspout::pump::container_info(&inspect));
    let (spec, _) = logspout::route::AdapterSpec::resolve("gelf").unwrap();
    let options = HashMap::from([("labels".to_owned(), "app".to_owned())]);
    let renderer = logspout::render::Renderer::new(
        spec,
        &logspout::render::AdapterSettings::default(),
        &options,
    )
    .unwrap();
    let daemon_host = docker.docker().info().await.unwrap().name.unwrap();
    for (line, source, level) in [
        ("hello", logspout::message::Source::Stdout, 6),
        ("oops", logspout::message::Source::Stderr, 3),
    ] {
        let theirs = by_message(&theirs, "short_message", line);
        let seconds = theirs["timestamp"].as_f64().unwrap();
        let time =
            chrono::DateTime::from_timestamp_millis((seconds * 1000.0).round() as i64).unwrap();
        let message = logspout::message::Message {
            container: info.clone(),
            source,
            data: bytes::Bytes::from(line),
            time,
        };
        let ours = parse(&renderer.render(&message));
        let their_fields: BTreeSet<&String> = theirs.as_object().unwrap().keys().collect();
        let our_fields: BTreeSet<&String> = ours.as_object().unwrap().keys().collect();
        assert_eq!(our_fields, their_fields, "ours {ours}\ntheirs {theirs}");
        assert_eq!(theirs["level"], level);
        for (field, value) in ours.as_object().unwrap() {
            if field == "host" {
                // Docker: the daemon's host name. Ours: SYSLOG_HOSTNAME (/etc/host_hostname),
                // by default the container's host name, as in syslog lines.
                assert_eq!(theirs[field], daemon_host.as_str());
                assert_eq!(*value, "abc123");
            } else {
                assert_eq!(theirs[field], *value, "field {field}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logstash_events_over_udp_and_tcp_merge_json_lines() {
    let (udp_port, udp) = udp_receiver().await;
    let (tcp_port, tcp) = tcp_receiver().await;
    let docker = TestDocker::connect().await;
    let name = unique("ls-logstash");
    let routes = format!(
        "logstash://127.0.0.1:{udp_port}?filter.name={name}&labels=app,\
         logstash+tcp://127.0.0.1:{tcp_port}?filter.name={name}&labels=app&decode_json_logs=false"
    );
    let _logspout = Logspout::start(Some(&routes), &[]).await;
    let container = docker
        .run(
            ContainerSpec::shell("echo plain; echo '{\"level\":\"warn\",\"n\":2}' >&2; sleep 30")
                .name(&name)
                .hostname("abc123")
                .label("app", "web")
                .env("LOGSTASH_TAGS", "docker,prod")
                .env("LOGSTASH_FIELDS", "env=test"),
        )
        .await;
    let udp_objects = wait_objects("2 Logstash datagrams", 2, || {
        udp.lock().unwrap().iter().map(|d| parse(d)).collect()
    })
    .await;
    let tcp_objects = wait_objects("2 Logstash lines over TCP", 2, || {
        stream_objects(&tcp, b'\n')
    })
    .await;
    let docker_info = serde_json::json!({
        "name": format!("/{name}"),
        "id": container.id(),
        "image": TEST_IMAGE,
        "hostname": "abc123",
        "labels": {"app": "web"},
    });
    let common = serde_json::json!({
        "docker": docker_info,
        "tags": ["docker", "prod"],
        "env": "test",
    });
    let with = |extra: Value| {
        let mut event = common.clone();
        for (k, v) in extra.as_object().unwrap() {
            event[k] = v.clone();
        }
        event
    };
    let plain = with(serde_json::json!({"message": "plain", "stream": "stdout"}));
    let merged = with(serde_json::json!({"level": "warn", "n": 2, "stream": "stderr"}));
    let kept =
        with(serde_json::json!({"message": "{\"level\":\"warn\",\"n\":2}", "stream": "stderr"}));
    assert!(udp_objects.contains(&plain), "{udp_objects:?}");
    assert!(udp_objects.contains(&merged), "{udp_objects:?}");
    assert!(tcp_objects.contains(&plain), "{tcp_objects:?}");
    assert!(tcp_objects.contains(&kept), "{tcp_objects:?}");
}
