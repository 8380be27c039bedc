//! Hostile clients against the real binary's HTTP side: generated paths (every `/logs/`
//! predicate, multi-byte and invalid UTF-8 at every offset, huge and deeply nested paths),
//! query strings, header floods and lying `Content-Length`s, `POST /routes` bodies, WebSocket
//! upgrades with bad keys or origins. After each case logspout must still answer `/health`
//! with 200, and no client error may be answered with a 5xx. Also the bounds: `/logs` streams
//! (`LOGSPOUT_MAX_TAPS`) and request bodies.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use support::{Logspout, WAIT, request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// No Docker: nothing is attached, so `/logs` streams wait for their first line forever, and
/// nothing but these requests reaches logspout.
const NO_DOCKER: (&str, &str) = ("DOCKER_HOST", "unix:///nonexistent/logspout-test.sock");

/// How long a case waits for a response head: `/logs` streams send none before their first
/// line, so a case that is still open after this is an accepted stream.
const ANSWER_WAIT: Duration = Duration::from_millis(300);

/// What the server did with one raw request.
#[derive(Debug)]
enum Outcome {
    /// It answered with this status.
    Status(u16),
    /// It closed the connection without a response although the request was written in full
    /// (what a panicking handler does).
    Closed,
    /// It closed the connection before the request was written (e.g. a head it refused).
    Refused,
    /// It holds the connection open without answering yet (a `/logs` stream, a body it waits
    /// for).
    Pending,
}

async fn exchange(addr: SocketAddr, raw: &[u8]) -> Outcome {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let written = stream.write_all(raw).await.is_ok();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(ANSWER_WAIT, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
            if seen.windows(2).any(|w| w == b"\r\n") {
                return;
            }
        }
    })
    .await;
    let status = String::from_utf8_lossy(&seen)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    match (status, read) {
        (Some(status), _) => Outcome::Status(status),
        (None, Err(_)) => Outcome::Pending,
        (None, Ok(())) if written => Outcome::Closed,
        (None, Ok(())) => Outcome::Refused,
    }
}

/// One case: the request is answered below 500 (or held open, or refused while being sent),
/// and `/health` answers 200 afterwards.
async fn check(addr: SocketAddr, raw: &[u8]) -> Result<Outcome, TestCaseError> {
    let outcome = exchange(addr, raw).await;
    let shown = || String::from_utf8_lossy(&raw[..raw.len().min(300)]).into_owned();
    match outcome {
        Outcome::Status(status) if status >= 500 => {
            return Err(TestCaseError::fail(format!("{status} for {:?}", shown())));
        }
        Outcome::Closed => {
            return Err(TestCaseError::fail(format!(
                "connection closed without a response for {:?}",
                shown()
            )));
        }
        _ => {}
    }
    let health = request(addr, "GET", "/health", &[], "").await;
    match health {
        Ok((200, _, _)) => Ok(outcome),
        other => Err(TestCaseError::fail(format!(
            "/health after {:?}: {other:?}",
            shown()
        ))),
    }
}

/// Runs `cases` generated cases of `strategy` through `case` and prints how many ran.
fn run_cases<S: Strategy>(
    name: &str,
    cases: u32,
    strategy: S,
    case: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let ran = AtomicUsize::new(0);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    };
    let result = TestRunner::new(config).run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        case(value)
    });
    println!("{name}: {} generated cases", ran.load(Ordering::Relaxed));
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

/// Percent-encodes every byte that is not unreserved (so any bytes make a valid request line).
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~:*[]!$'()+,;=@".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: logspout\r\n{extra}\r\n").into_bytes()
}

/// A WebSocket upgrade without `Origin`: answered at once (403) once the path was parsed, so
/// path cases need not wait for a stream's first line.
const WS_NO_ORIGIN: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The request, and every character class at every offset of an ID: multi-byte
/// characters and invalid UTF-8 in `/logs/id:`, `/logs/name:` and other predicates.
#[test]
fn logs_paths_with_any_bytes_at_any_offset_are_answered() {
    let rt = runtime();
    let logspout = rt.block_on(Logspout::start(None, &[NO_DOCKER]));
    let addr = logspout.http;
    let inserts: [&[u8]; 7] = [
        "é".as_bytes(),
        "€".as_bytes(),
        "😀".as_bytes(),
        b"\xff",
        b"\xc3",
        b"\xf0\x9f\x98",
        b"\x00",
    ];
    let mut ran = 0;
    rt.block_on(async {
        // The crash, verbatim.
        let outcome = check(addr, &get("/logs/id:123456789%F0%9F%98%80", ""))
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Status(404)), "{outcome:?}");
        for predicate in ["id:", "name:", "foo:", ""] {
            for offset in 0..=16 {
                for insert in inserts {
                    let mut value = b"0123456789abcdef"[..offset].to_vec();
                    value.extend_from_slice(insert);
                    value.extend_from_slice(b"0123");
                    let path = format!("/logs/{predicate}{}", encode(&value));
                    check(addr, &get(&path, WS_NO_ORIGIN)).await.unwrap();
                    ran += 1;
                }
            }
        }
    });
    println!("every offset: {ran} cases");

    // Generated: a prefix, any bytes, maybe deep nesting and a query string.
    let prefixes = prop::sample::select(vec![
        "/logs/id:",
        "/logs/name:",
        "/logs/",
        "/logs",
        "/routes/",
        "/health/",
        "/",
        "/logs/id:123456789",
    ]);
    let strategy = (
        prefixes,
        prop::collection::vec(any::<u8>(), 0..48),
        0usize..3000,
        prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        any::<bool>(),
    );
    run_cases(
        "generated paths",
        400,
        strategy,
        |(prefix, bytes, depth, query, ws)| {
            let mut path = format!("{prefix}{}", encode(&bytes));
            if depth > 2500 {
                path.push_str(&"/a".repeat(depth * 20));
            } else if depth > 2000 {
                path.push_str(&"/..".repeat(depth - 2000));
            }
            if let Some(query) = query {
                path.push('?');
                // `&` and `=` kept raw so that keys and values are generated too.
                for b in query {
                    match b {
                        b'&' | b'=' => path.push(char::from(b)),
                        _ => path.push_str(&encode(&[b])),
                    }
                }
            }
            // Without the upgrade, an accepted `/logs` stream is held open: that is fine too.
            let extra = if ws { WS_NO_ORIGIN } else { "" };
            rt.block_on(check(addr, &get(&path, extra))).map(drop)
        },
    );
}

/// Header floods, huge headers, lying and malformed `Content-Length`, chunked garbage, bad
/// bearer tokens.
#[test]
fn hostile_headers_are_answered_with_4xx() {
    let rt = runtime();
    let logspout = rt.block_on(Logspout::start(
        None,
        &[NO_DOCKER, ("LOGSPOUT_HTTP_TOKEN", "s3cret")],
    ));
    let addr = logspout.http;
    let header = (
        "[A-Za-z0-9-]{1,20}",
        prop::collection::vec(32u8..127, 0..64),
    );
    let content_length = prop::sample::select(vec![
        "Content-Length: 5\r\n",
        "Content-Length: 100000\r\n",
        "Content-Length: 18446744073709551616\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: abc\r\n",
        "Content-Length: 1\r\nContent-Length: 2\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        "",
    ]);
    let strategy = (
        prop::sample::select(vec!["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "X"]),
        prop::sample::select(vec![
            "/routes",
            "/routes/abc",
            "/logs",
            "/health",
            "/metrics",
        ]),
        prop::collection::vec(header, 0..150),
        0usize..3,
        content_length,
        prop::collection::vec(any::<u8>(), 0..64),
        prop::option::of(prop::collection::vec(32u8..127, 0..40)),
    );
    run_cases(
        "generated headers",
        300,
        strategy,
        |(method, path, headers, flood, length, body, auth)| {
            let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: logspout\r\n");
            for (name, value) in &headers {
                raw.push_str(&format!("{name}: {}\r\n", String::from_utf8_lossy(value)));
            }
            match flood {
                // More headers than hyper takes, and one larger than its head buffer.
                1 => (0..200).for_each(|i| raw.push_str(&format!("X-Flood-{i}: {i}\r\n"))),
                2 => raw.push_str(&format!("X-Huge: {}\r\n", "h".repeat(500_000))),
                _ => {}
            }
            if let Some(auth) = auth {
                raw.push_str(&format!(
                    "Authorization: Bearer {}\r\n",
                    String::from_utf8_lossy(&auth)
                ));
            }
            raw.push_str(length);
            raw.push_str("\r\n");
            let mut raw = raw.into_bytes();
            raw.extend_from_slice(&body);
            let outcome = rt.block_on(check(addr, &raw))?;
            // Every request reaching /routes or /logs without the token is refused.
            if let Outcome::Status(status) = outcome {
                let guarded = path.starts_with("/routes") || path.starts_with("/logs");
                prop_assert!(
                    !(guarded && (200..300).contains(&status)),
                    "{status} without the token: {method} {path}"
                );
            }
            Ok(())
        },
    );
    // The limits are 4xx: 431 for the flood and the huge header, 413 for a large body.
    rt.block_on(async {
        let flood: String = (0..200).map(|i| format!("X-F{i}: {i}\r\n")).collect();
        let outcome = exchange(addr, &get("/health", &flood)).await;
        assert!(matches!(outcome, Outcome::Status(431)), "{outcome:?}");
        let auth = [("Authorization", "Bearer s3cret")];
        let big = format!(
            "{{\"adapter\":\"raw\",\"address\":\"{}\"}}",
            "a".repeat(70_000)
        );
        let (status, _, _) = request(addr, "POST", "/routes", &auth, &big).await.unwrap();
        assert_eq!(status, 413);
    });
}

/// `POST /routes` with generated bodies: garbage, deep nesting, huge strings, bad adapters,
/// bad addresses and ports. A created route is deleted again.
#[test]
fn hostile_route_bodies_are_answered_with_4xx() {
    let rt = runtime();
    // Routes that are created point here (and nowhere else): a port this test holds.
    let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let _udp_sink = std::net::UdpSocket::bind(sink.local_addr().unwrap()).ok();
    let port = sink.local_addr().unwrap().port();
    let logspout = rt.block_on(Logspout::start(None, &[NO_DOCKER]));
    let addr = logspout.http;
    let adapter = prop_oneof![
        3 => prop::sample::select(vec![
            "syslog",
            "syslog+tcp",
            "syslog+tls",
            "raw",
            "tcp",
            "tls",
            "udp",
            "multiline+raw+tcp",
            "multiline",
            "multiline+multiline+raw",
            "tcp+tls",
            "syslog+",
            "",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,30}",
    ];
    let address = prop_oneof![
        2 => Just(format!("127.0.0.1:{port}")),
        2 => (
            ".{0,20}",
            prop_oneof![
                Just(String::new()),
                Just(":".to_owned()),
                Just(":0".to_owned()),
                Just(":65536".to_owned()),
                Just(":99999999999999999999".to_owned()),
                Just(":-1".to_owned()),
                ":[^0-9]{0,5}",
            ]
        )
            .prop_map(|(host, port)| format!("{host}{port}")),
        1 => ".{0,40}",
    ]
    .prop_map(move |a: String| {
        // Anything that could be dialled is our own sink: no lookups of generated names.
        let dialable = a
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok_and(|p| p > 0));
        if dialable {
            format!("127.0.0.1:{port}")
        } else {
            a
        }
    });
    let text = prop_oneof![
        ".{0,40}",
        Just("x".repeat(60_000)),
        Just("y".repeat(70_000))
    ];
    let route = (
        adapter,
        address,
        text.clone(),
        prop::collection::vec(".{0,20}", 0..4),
        prop::collection::btree_map(".{0,10}", text, 0..3),
    )
        .prop_map(|(adapter, address, name, labels, options)| {
            serde_json::json!({
                "adapter": adapter,
                "address": address,
                "filter_name": name,
                "filter_labels": labels,
                "options": options,
            })
            .to_string()
        });
    let body = prop_oneof![
        4 => route,
        1 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => (1usize..20_000).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d))),
        1 => (1usize..5_000).prop_map(|d| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d))),
        1 => Just("{\"adapter\":\"raw\",\"address\":\"127.0.0.1:1\",\"id\":5}".to_owned()),
        1 => Just("{\"adapter\":[],\"address\":{}}".to_owned()),
    ];
    let created = AtomicUsize::new(0);
    run_cases("generated route bodies", 300, body, |body| {
        rt.block_on(async {
            let head = format!(
                "POST /routes HTTP/1.1\r\nHost: logspout\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            let raw = [head.as_bytes(), body.as_bytes()].concat();
            let outcome = check(addr, &raw).await?;
            let Outcome::Status(status) = outcome else {
                return Err(TestCaseError::fail(format!("{outcome:?}")));
            };
            prop_assert!([201, 400, 413].contains(&status), "{status}");
            if body.len() > 64 * 1024 {
                prop_assert_eq!(status, 413, "a body of {} bytes", body.len());
            }
            if status == 201 {
                created.fetch_add(1, Ordering::Relaxed);
                let (_, _, list) = request(addr, "GET", "/routes", &[], "").await.unwrap();
                let routes: serde_json::Value = serde_json::from_str(&list).unwrap();
                for route in routes.as_array().unwrap() {
                    let id = route["id"].as_str().unwrap();
                    let address = route["address"].as_str().unwrap();
                    prop_assert_eq!(address, format!("127.0.0.1:{port}"), "created");
                    let path = format!("/routes/{id}");
                    let (status, _, _) = request(addr, "DELETE", &path, &[], "").await.unwrap();
                    prop_assert_eq!(status, 200);
                }
            }
            Ok(())
        })
    });
    println!(
        "routes created (and deleted): {}",
        created.load(Ordering::Relaxed)
    );
    assert_eq!(rt.block_on(logspout_routes(addr)), "[]\n");
}

async fn logspout_routes(addr: SocketAddr) -> String {
    request(addr, "GET", "/routes", &[], "").await.unwrap().2
}

/// WebSocket upgrades with generated keys, versions, origins and connection headers.
#[test]
fn hostile_websocket_upgrades_are_answered() {
    let rt = runtime();
    let logspout = rt.block_on(Logspout::start(None, &[NO_DOCKER]));
    let addr = logspout.http;
    let upgraded = AtomicUsize::new(0);
    let strategy = (
        prop::option::of(prop_oneof![
            Just(b"dGhlIHNhbXBsZSBub25jZQ==".to_vec()),
            prop::collection::vec(32u8..127, 0..40)
        ]),
        prop::option::of(prop_oneof![Just("13".to_owned()), "[0-9a-z]{0,4}"]),
        prop::option::of(prop::collection::vec(32u8..127, 0..80)),
        prop::sample::select(vec!["Upgrade", "upgrade, keep-alive", "close", ""]),
        prop::sample::select(vec!["websocket", "WebSocket", "h2c", ""]),
        prop::sample::select(vec![
            "/logs",
            "/logs/name:x*",
            "/logs/id:0123456789ab",
            "/health",
        ]),
    );
    run_cases(
        "generated websocket upgrades",
        200,
        strategy,
        |(key, version, origin, connection, upgrade, path)| {
            let mut extra = format!("Upgrade: {upgrade}\r\nConnection: {connection}\r\n");
            if let Some(key) = key {
                extra.push_str(&format!(
                    "Sec-WebSocket-Key: {}\r\n",
                    String::from_utf8_lossy(&key)
                ));
            }
            if let Some(version) = version {
                extra.push_str(&format!("Sec-WebSocket-Version: {version}\r\n"));
            }
            if let Some(origin) = origin {
                extra.push_str(&format!("Origin: {}\r\n", String::from_utf8_lossy(&origin)));
            }
            if let Outcome::Status(101) = rt.block_on(check(addr, &get(path, &extra)))? {
                upgraded.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        },
    );
    let upgraded = upgraded.load(Ordering::Relaxed);
    println!("upgraded: {upgraded}");
    // And one that is valid for sure, whose client leaves at once.
    let (outcome, stream) = rt.block_on(open_stream(addr, true));
    assert!(matches!(outcome, Outcome::Status(101)), "{outcome:?}");
    drop(stream);
    // Every stream those upgrades opened was closed by its client: no tap is left open.
    rt.block_on(wait_taps(&logspout, 0));
}

/// Waits until `logspout_http_taps` is `n`.
async fn wait_taps(logspout: &Logspout, n: u32) {
    harness::wait_until(&format!("{n} open /logs streams"), WAIT, || async {
        (logspout.metric("logspout_http_taps ").await == f64::from(n)).then_some(())
    })
    .await;
}

/// Opens a `/logs` stream (plain or WebSocket) and keeps the connection.
async fn open_stream(addr: SocketAddr, websocket: bool) -> (Outcome, TcpStream) {
    let extra = if websocket {
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nOrigin: http://localhost\r\n"
    } else {
        ""
    };
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&get("/logs", extra)).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(ANSWER_WAIT, async {
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&head);
    let outcome = match text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)) {
        Some(code) => Outcome::Status(code.parse().unwrap()),
        None if read.is_err() => Outcome::Pending,
        None => Outcome::Closed,
    };
    (outcome, stream)
}

/// At most `LOGSPOUT_MAX_TAPS` streams: beyond, 429 (counted); a stream whose client went away
/// (plain or WebSocket, before any line) frees its place.
#[test]
fn logs_streams_are_bounded_and_freed_when_clients_leave() {
    let rt = runtime();
    let logspout = rt.block_on(Logspout::start(
        None,
        &[NO_DOCKER, ("LOGSPOUT_MAX_TAPS", "3")],
    ));
    let addr = logspout.http;
    rt.block_on(async {
        let (plain, plain_stream) = open_stream(addr, false).await;
        assert!(matches!(plain, Outcome::Pending), "{plain:?}");
        let (ws, ws_stream) = open_stream(addr, true).await;
        assert!(matches!(ws, Outcome::Status(101)), "{ws:?}");
        let (third, _third) = open_stream(addr, false).await;
        assert!(matches!(third, Outcome::Pending), "{third:?}");
        wait_taps(&logspout, 3).await;
        let (refused, _) = open_stream(addr, false).await;
        assert!(matches!(refused, Outcome::Status(429)), "{refused:?}");
        let (refused, _) = open_stream(addr, true).await;
        assert!(matches!(refused, Outcome::Status(429)), "{refused:?}");
        assert_eq!(
            logspout.metric("logspout_http_taps_refused_total").await,
            2.0
        );
        // Both clients go away without a line having been sent.
        drop(plain_stream);
        drop(ws_stream);
        wait_taps(&logspout, 1).await;
        let (again, _again) = open_stream(addr, true).await;
        assert!(matches!(again, Outcome::Status(101)), "{again:?}");
        assert_eq!(logspout.get("/health").await.0, 200);
    });
}

/// A container with a 100 KB label, a 100 KB environment variable and an odd name is attached
/// and shipped (also through a template reading them), and `/logs` shows it.
#[test]
fn huge_docker_metadata_is_shipped() {
    let rt = runtime();
    rt.block_on(async {
        let docker = harness::TestDocker::connect().await;
        let receiver = harness::SyslogReceiver::start().await;
        let name = support::unique("ls-huge.meta_");
        let route = format!("raw+tcp://127.0.0.1:{}?filter.name={name}", receiver.port());
        let logspout = Logspout::start(
            Some(&route),
            &[(
                "RAW_FORMAT",
                "{{.Data}} {{index .Container.Config.Labels \"big\"}}\n",
            )],
        )
        .await;
        let big = "L".repeat(100_000);
        let _c = docker
            .run(
                harness::ContainerSpec::shell("echo huge-meta; sleep 30")
                    .name(&name)
                    .network_mode("none")
                    .label("big", &big)
                    .env("HUGE", &"E".repeat(100_000)),
            )
            .await;
        let message = receiver.wait_for_msg("huge-meta", WAIT).await;
        let text = message.raw_text();
        assert!(
            text.starts_with("huge-meta L"),
            "{}",
            text.chars().take(200).collect::<String>()
        );
        assert_eq!(logspout.get("/health").await.0, 200);
    });
}
