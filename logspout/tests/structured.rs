//! The structured adapters end to end: real containers, logspout as a process, real UDP, TCP
//! and TLS receivers on 127.0.0.1: `json` lines.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

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
