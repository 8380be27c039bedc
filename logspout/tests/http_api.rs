//! The HTTP side against the real binary: `/health`, the `/routes` API with persistence, the
//! bearer token, `/logs` streaming and `/metrics`.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use harness::{ContainerSpec, SyslogReceiver, TestDocker};
use support::{Logspout, WAIT, request, unique};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_unknown_paths() {
    let logspout = Logspout::start(None, &[]).await;
    let (status, head, body) = logspout.get("/health").await;
    assert_eq!((status, body.as_str()), (200, "Healthy!\n"));
    assert!(head.contains("text/plain; charset=utf-8"), "{head}");
    let (status, _, _) = request(logspout.http, "HEAD", "/health", &[], "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _, body) = logspout.get("/").await;
    assert_eq!((status, body.as_str()), (404, "404 page not found\n"));
    let (status, _, body) = logspout.get("/routes").await;
    assert_eq!((status, body.as_str()), (200, "[]\n"));
    let (status, _, body) = request(logspout.http, "PUT", "/routes", &[], "")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (405, ""));
    let (status, _, body) = logspout.get("/metrics").await;
    assert_eq!(status, 200);
    for name in ["logspout_lines_read_total", "logspout_attached_containers"] {
        assert!(body.contains(name), "{name} missing from {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_api_creates_persists_and_deletes_routes() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let logspout = Logspout::start_persisting(dir.path(), &[]).await;
    let name = unique("ls-api");
    let body = format!(
        "{{\"adapter\":\"raw\",\"address\":\"127.0.0.1:{}\",\"filter_name\":\"{name}\"}}",
        receiver.port()
    );
    let (status, head, created) = request(logspout.http, "POST", "/routes", &[], &body)
        .await
        .unwrap();
    assert_eq!(status, 201, "{created}");
    assert!(head.contains("application/json"), "{head}");
    let id = created.split('"').nth(3).unwrap().to_owned();
    assert_eq!(id.len(), 12);
    assert_eq!(
        created,
        format!(
            "{{\n  \"id\": \"{id}\",\n  \"filter_name\": \"{name}\",\n  \"adapter\": \"raw\",\n  \"address\": \"127.0.0.1:{}\"\n}}\n",
            receiver.port()
        )
    );
    let file = dir.path().join(format!("{id}.json"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), created.trim_end());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The new route ships lines.
    let _c = docker
        .run(ContainerSpec::shell("echo via-api; sleep 30").name(&name))
        .await;
    harness::wait_until("the API route's line", WAIT, || async {
        receiver
            .messages()
            .iter()
            .any(|m| m.raw_text() == "via-api\n")
            .then_some(())
    })
    .await;

    let (status, head, one) = logspout.get(&format!("/routes/{id}")).await;
    assert_eq!((status, one.as_str()), (200, created.as_str()));
    assert!(head.contains("text/plain; charset=utf-8"), "{head}");
    let (_, _, list) = logspout.get("/routes").await;
    assert!(
        list.starts_with("[\n  {\n    \"id\": ") && list.contains(&id),
        "{list}"
    );
    assert_eq!(logspout.get("/routes/zzz").await.0, 404);

    // A restart with the same directory keeps the route and its id.
    drop(logspout);
    let logspout = Logspout::start_persisting(dir.path(), &[]).await;
    assert_eq!(logspout.get(&format!("/routes/{id}")).await.0, 200);

    let (status, _, body) = request(logspout.http, "DELETE", &format!("/routes/{id}"), &[], "")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(!file.exists());
    assert_eq!(
        request(logspout.http, "DELETE", &format!("/routes/{id}"), &[], "")
            .await
            .unwrap()
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_route_requests_are_400_with_a_message() {
    let logspout = Logspout::start(None, &[]).await;
    let cases = [
        (
            "{\"adapter\":\"nope\",\"address\":\"x:1\"}",
            "Bad route: bad adapter: nope\n",
        ),
        ("", "Bad request: EOF\n"),
        (
            "{\"source\":{\"filter\":\"db\"},\"target\":{\"type\":\"syslog\",\"addr\":\"h:514\"}}",
            "Bad route: bad adapter: \n",
        ),
    ];
    for (body, expected) in cases {
        let (status, _, got) = request(logspout.http, "POST", "/routes", &[], body)
            .await
            .unwrap();
        assert_eq!((status, got.as_str()), (400, expected), "{body}");
    }
    let (status, _, got) = request(logspout.http, "POST", "/routes", &[], "{not json")
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(got.starts_with("Bad request: "), "{got}");
    assert_eq!(logspout.get("/routes").await.2, "[]\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_guards_routes_and_logs_but_not_health() {
    let logspout = Logspout::start(None, &[("LOGSPOUT_HTTP_TOKEN", "s3cret")]).await;
    assert_eq!(logspout.get("/routes").await.0, 401);
    assert_eq!(logspout.get("/logs").await.0, 401);
    assert_eq!(logspout.get("/logs/name:x").await.0, 401);
    assert_eq!(logspout.get("/routes/abc").await.0, 401);
    for (method, path) in [("POST", "/routes"), ("DELETE", "/routes/abc")] {
        let status = request(logspout.http, method, path, &[], "{}")
            .await
            .unwrap()
            .0;
        assert_eq!(status, 401, "{method} {path}");
    }
    assert_eq!(logspout.get("/health").await.0, 200);
    let auth = [("Authorization", "Bearer s3cret")];
    assert_eq!(
        request(logspout.http, "GET", "/routes", &auth, "")
            .await
            .unwrap()
            .0,
        200
    );
    let wrong = [("Authorization", "Bearer nope")];
    assert_eq!(
        request(logspout.http, "GET", "/routes", &wrong, "")
            .await
            .unwrap()
            .0,
        401
    );
}

/// Reads a streaming response until `needle` shows up.
async fn read_stream_until(logspout: &Logspout, path: &str, needle: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(logspout.http).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: logspout\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no {needle:?} on {path}: {}",
            String::from_utf8_lossy(&seen)
        )
    });
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_stream_prints_lines_like_the_original() {
    let docker = TestDocker::connect().await;
    let logspout = Logspout::start(None, &[]).await;
    let name = unique("ls-tap");
    let single = tokio::spawn({
        let http = logspout.http;
        let path = format!("/logs/name:{name}");
        async move {
            let mut stream = tokio::net::TcpStream::connect(http).await.unwrap();
            stream
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: l\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("tick-3") {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                seen.extend_from_slice(&chunk[..n]);
            }
            String::from_utf8_lossy(&seen).into_owned()
        }
    });
    let _c = docker
        .run(
            ContainerSpec::shell(
                "for i in $(seq 1 60); do echo tick-$i; echo err-$i >&2; sleep 0.5; done",
            )
            .name(&name),
        )
        .await;
    let pattern = format!("/logs/name:{name}*?colors=off&sources=stderr");
    let multi = read_stream_until(&logspout, &pattern, "err-3\n").await;
    let padded = format!("{name:>16}|err-");
    assert!(multi.contains(&padded), "{multi}");
    assert!(!multi.contains("tick-"), "sources=stderr: {multi}");
    assert!(
        multi.contains("Content-Type: text/plain") || multi.contains("content-type: text/plain"),
        "{multi}"
    );
    let plain = tokio::time::timeout(WAIT, single).await.unwrap().unwrap();
    assert!(plain.contains("tick-3\n"), "{plain}");
    assert!(
        !plain.contains('|'),
        "single-container mode has no prefix: {plain}"
    );
}

/// Opens `/logs` as a WebSocket and returns the stream after the `101` response.
async fn websocket(
    logspout: &Logspout,
    path: &str,
    origin: bool,
) -> (String, tokio::net::TcpStream) {
    let mut stream = tokio::net::TcpStream::connect(logspout.http).await.unwrap();
    let origin = if origin {
        "Origin: http://localhost\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: logspout\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).into_owned(), stream)
}

/// Reads one unmasked server frame: (opcode, payload).
async fn read_frame(stream: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await.unwrap();
    let len = match header[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).await.unwrap();
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).await.unwrap();
            u64::from_be_bytes(ext)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    stream.read_exact(&mut payload).await.unwrap();
    (header[0] & 0x0f, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_websocket_sends_json_frames_and_needs_an_origin() {
    let docker = TestDocker::connect().await;
    let logspout = Logspout::start(None, &[]).await;
    let name = unique("ls-ws");
    let (head, _) = websocket(&logspout, &format!("/logs/name:{name}"), false).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let (head, mut stream) =
        websocket(&logspout, &format!("/logs/name:{name}?source=stderr"), true).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let _c = docker
        .run(
            ContainerSpec::shell(
                "for i in $(seq 1 60); do echo out-$i; echo err-$i >&2; sleep 0.5; done",
            )
            .name(&name),
        )
        .await;
    let (opcode, payload) = tokio::time::timeout(WAIT, read_frame(&mut stream))
        .await
        .unwrap();
    assert_eq!(opcode, 1, "a text frame");
    let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(json["Source"], "stderr");
    assert!(json["Data"].as_str().unwrap().starts_with("err-"), "{json}");
    assert_eq!(json["Container"]["Name"], format!("/{name}"));
    assert!(payload.ends_with(b"}\n"));
}

/// POSTs a route object; (status, body).
async fn post_route(logspout: &Logspout, body: &str) -> (u16, String) {
    let (status, _, got) = request(logspout.http, "POST", "/routes", &[], body)
        .await
        .unwrap();
    (status, got)
}

fn line_count(receiver: &SyslogReceiver) -> usize {
    receiver
        .messages()
        .iter()
        .filter(|m| m.raw_text().starts_with("line-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posting_a_route_with_an_existing_id_replaces_it() {
    let docker = TestDocker::connect().await;
    let (old, new) = (SyslogReceiver::start().await, SyslogReceiver::start().await);
    let dir = tempfile::tempdir().unwrap();
    let logspout = Logspout::start_persisting(dir.path(), &[]).await;
    let name = unique("ls-replace");
    let _c = docker
        .run(
            ContainerSpec::shell("i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.1; done")
                .name(&name),
        )
        .await;
    let route = |port: u16| {
        format!(
            "{{\"id\":\"web-logs\",\"adapter\":\"raw+tcp\",\"address\":\"127.0.0.1:{port}\",\"filter_name\":\"{name}\"}}"
        )
    };
    let (status, created) = post_route(&logspout, &route(old.port())).await;
    assert_eq!(status, 201, "{created}");
    assert!(created.contains("\"id\": \"web-logs\""), "{created}");
    harness::wait_until("lines at the first destination", WAIT, || async {
        (line_count(&old) >= 3).then_some(())
    })
    .await;

    let (status, replaced) = post_route(&logspout, &route(new.port())).await;
    assert_eq!(status, 201, "{replaced}");
    let expected = format!(
        "{{\n  \"id\": \"web-logs\",\n  \"filter_name\": \"{name}\",\n  \"adapter\": \"raw+tcp\",\n  \"address\": \"127.0.0.1:{}\"\n}}\n",
        new.port()
    );
    assert_eq!(replaced, expected);
    harness::wait_until("lines at the new destination", WAIT, || async {
        (line_count(&new) >= 1).then_some(())
    })
    .await;
    // What the old route had queued is gone with it: from now on it gets nothing.
    let old_total = line_count(&old);
    let new_before = line_count(&new);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        line_count(&old),
        old_total,
        "the replaced route still ships"
    );
    assert!(
        line_count(&new) >= new_before + 5,
        "the new route stopped: {} then {}",
        new_before,
        line_count(&new)
    );

    let (_, _, list) = logspout.get("/routes").await;
    assert_eq!(list, format!("[\n{}]\n", indent(&expected)), "{list}");
    let file = dir.path().join("web-logs.json");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), expected.trim_end());
    // The old sender has stopped (it held the only other connection).
    assert!(
        logspout.log().contains("route replaced"),
        "{}",
        logspout.log()
    );
}

/// A route object as it appears inside the `/routes` array.
fn indent(object: &str) -> String {
    object
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect::<String>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_route_ids_never_touch_files_outside_routespath() {
    let base = tempfile::tempdir().unwrap();
    let routes = base.path().join("routes");
    std::fs::create_dir(&routes).unwrap();
    let victim = base.path().join("victim.json");
    std::fs::write(&victim, "keep me").unwrap();
    // A route file that names a path as its ID: skipped at start-up, so DELETE cannot reach it.
    std::fs::write(
        routes.join("planted.json"),
        "{\"id\":\"../victim\",\"adapter\":\"raw\",\"address\":\"127.0.0.1:9\"}",
    )
    .unwrap();
    let mut logspout = Logspout::start_persisting(&routes, &[]).await;
    assert_eq!(logspout.get("/routes").await.2, "[]\n");
    for id in [
        "../victim",
        "..",
        "a/b",
        "/tmp/x",
        ".hidden",
        "a.b",
        "a b",
        "a\\\\b",
        &"x".repeat(65),
    ] {
        let body = format!("{{\"id\":\"{id}\",\"adapter\":\"raw\",\"address\":\"127.0.0.1:9\"}}");
        let (status, got) = post_route(&logspout, &body).await;
        assert_eq!(status, 400, "{id:?}: {got}");
        assert!(got.starts_with("Bad route: bad route id"), "{id:?}: {got}");
    }
    for path in [
        "/routes/..%2Fvictim",
        "/routes/..%2F..%2Fvictim",
        "/routes/%2E%2E%2Fvictim",
        "/routes/..",
    ] {
        let (status, _, _) = request(logspout.http, "DELETE", path, &[], "")
            .await
            .unwrap();
        assert_eq!(status, 404, "{path}");
        assert_eq!(logspout.get(path).await.0, 404, "{path}");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    let mut names: Vec<String> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["routes", "victim.json"]);
    assert_eq!(logspout.get("/routes").await.2, "[]\n");
    assert!(logspout.is_running());
}

/// Opens `path` with `Accept: application/json` and returns the JSON messages read until one
/// satisfies `done`.
async fn json_messages_until(
    logspout: &Logspout,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut stream = tokio::net::TcpStream::connect(logspout.http).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: l\r\nAccept: application/json\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut chunk = [0u8; 16384];
    let mut messages = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "stream closed: {seen}");
            seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
            // Each message is one chunk: `{` … `\n}\n`.
            while let (Some(start), Some(end)) = (seen.find("{\n"), seen.find("\n}\n")) {
                let json: serde_json::Value = serde_json::from_str(&seen[start..end + 3])
                    .unwrap_or_else(|e| panic!("{e}: {}", &seen[start..end + 3]));
                seen.drain(..end + 3);
                let stop = done(&json);
                messages.push(json);
                if stop {
                    return;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no such JSON message on {path}: {messages:?} {seen}"));
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_json_carries_the_whole_inspect_object_and_follows_renames() {
    let docker = TestDocker::connect().await;
    let logspout = Logspout::start(None, &[]).await;
    let name = unique("ls-json");
    let container = docker
        .run(
            ContainerSpec::shell("while true; do echo 'json <hello>'; sleep 0.2; done")
                .name(&name)
                .hostname("abc123")
                .env("FOO", "bar")
                .label("team", "a&b"),
        )
        .await;
    let inspect = container.inspect().await;
    let messages = json_messages_until(&logspout, &format!("/logs/name:{name}*"), |_| true).await;
    let m = &messages[0];
    let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["Container", "Data", "Source", "Time"], "{m}");
    assert_eq!(m["Data"], "json <hello>");
    assert_eq!(m["Source"], "stdout");
    let c = &m["Container"];
    assert_eq!(c["Id"], container.id());
    assert_eq!(c["Name"], format!("/{name}"));
    assert_eq!(c["Config"]["Hostname"], "abc123");
    assert_eq!(c["Config"]["Labels"]["team"], "a&b");
    assert!(
        c["Config"]["Env"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("FOO=bar")),
        "{c}"
    );
    assert_eq!(c["State"]["Pid"], inspect.state.unwrap().pid.unwrap());
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(c["HostConfig"]["LogConfig"]["Type"], "json-file");
    assert_eq!(c["Image"], inspect.image.unwrap());
    assert!(
        c["Created"].is_string() && c["NetworkSettings"].is_object(),
        "{c}"
    );

    let renamed = format!("{name}-2");
    let options = bollard::query_parameters::RenameContainerOptionsBuilder::new()
        .name(&renamed)
        .build();
    docker
        .docker()
        .rename_container(container.id(), options)
        .await
        .unwrap();
    let want = format!("/{renamed}");
    let messages = json_messages_until(&logspout, &format!("/logs/name:{name}*"), |m| {
        m["Container"]["Name"] == want.as_str()
    })
    .await;
    assert_eq!(messages.last().unwrap()["Container"]["Id"], container.id());
}
