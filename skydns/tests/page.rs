//! The zone page at `/` on the metrics port: what it lists (names, records, TTL as answered,
//! lease time left, index state), that hostile record data stays text, that it is read-only,
//! and how it looks in a real headless browser (Debian's chromium; the screenshot's path is
//! printed in the test output).

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::http::http_get;
use support::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOSTILE_TEXT: &str = r#"<script>alert("x")</script>&<b>"#;

async fn start() -> (Running, SocketAddr) {
    let hostile = serde_json::json!({ "host": "10.0.0.9", "text": HOSTILE_TEXT }).to_string();
    let entries = [
        (
            "/skydns/test/skydns/dev/server1",
            r#"{"host":"10.0.0.1","port":8080}"#,
        ),
        (
            "/skydns/test/skydns/dev/db",
            r#"{"host":"fd00::2","ttl":30}"#,
        ),
        ("/skydns/test/skydns/evil/x", hostile.as_str()),
    ];
    let (server, http) = Running::start_with_metrics(&entries).await;
    // One record on a lease, as registrator writes them.
    let mut client = server.etcd.client().await;
    let lease = client.lease_grant(120, None).await.unwrap().id();
    client
        .put(
            "/skydns/test/skydns/dev/server2",
            r#"{"host":"10.0.0.2","port":8081}"#,
            Some(etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .unwrap();
    server
        .wait_for(
            "the leased record",
            "server2.dev.skydns.test.",
            hickory_proto::rr::RecordType::A,
            |r| !r.answers.is_empty(),
        )
        .await;
    (server, http)
}

/// The page's table rows, as `(name, answers, target, port, ttl, lease)` of the HTML cells.
fn rows(html: &str) -> Vec<Vec<String>> {
    html.split("<tr>")
        .skip(2)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = cell.split_once('>').map_or("", |(_, rest)| rest);
                    let inner = inner.split("</td>").next().unwrap_or("");
                    inner.replace("<code>", "").replace("</code>", "")
                })
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_the_zone_as_answered_with_leases_and_state() {
    let (mut server, http) = start().await;
    let (status, html) = http_get(http, "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(html.contains("<h1>skydns.test.</h1>"), "{html}");
    assert!(
        html.contains("synced with etcd (live watch); 4 records"),
        "{html}"
    );
    let rows = rows(&html);
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    // Key order: dev/db, dev/server1, dev/server2, evil/x.
    assert_eq!(
        names,
        [
            "db.dev.skydns.test.",
            "server1.dev.skydns.test.",
            "server2.dev.skydns.test.",
            "x.evil.skydns.test."
        ]
    );
    assert_eq!(rows[0][1..3], ["AAAA", "fd00::2"]);
    assert_eq!(rows[0][7], "30", "the record's own ttl");
    assert_eq!(rows[1][1..4], ["A", "10.0.0.1", "8080"]);
    assert_eq!((rows[1][7].as_str(), rows[1][8].as_str()), ("3600", "none"));
    let lease: u32 = rows[2][8].trim_end_matches(" s").parse().unwrap();
    assert!((100..=120).contains(&lease), "lease left {lease}");
    assert_eq!(
        rows[2][7],
        lease.to_string(),
        "a leased record answers with the lease's time left"
    );
    // Record data is text, never markup.
    assert!(!html.contains("<script>") && !html.contains("<b>"));
    assert!(html.contains("&#60;script&#62;"), "{html}");

    // Filter and limit.
    let (_, html) = http_get(http, "/?q=DEV.sky").await.unwrap();
    assert_eq!(self::rows(&html).len(), 3);
    let (_, html) = http_get(http, "/?limit=1").await.unwrap();
    assert_eq!(self::rows(&html).len(), 1);
    assert!(html.contains("and 3 more"), "{html}");
    let (status, _) = http_get(http, "/?limit=lots").await.unwrap();
    assert_eq!(status, 400);
    let (_, html) = http_get(http, "/?q=%22%3E%3Cscript%3E").await.unwrap();
    assert!(
        !html.contains("\"><script>"),
        "the filter is echoed as text: {html}"
    );

    // Read-only: anything but GET is refused.
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(status_of(http, method, "/").await, 405, "{method}");
    }

    // etcd gone: the page says the index is stale, and keeps listing it.
    server.etcd.stop();
    let stale = harness::wait_until(
        "the page to say the index is stale",
        support::WAIT,
        || async move {
            let (_, html) = http_get(http, "/").await.ok()?;
            html.contains("not synced with etcd for").then_some(html)
        },
    )
    .await;
    assert!(stale.contains("class=\"state stale\""), "{stale}");
    assert_eq!(rows_of(&stale), 4);
    server.stop().await;
}

fn rows_of(html: &str) -> usize {
    rows(html).len()
}

/// The status code of a bodiless request with `method`.
async fn status_of(addr: SocketAddr, method: &str, path: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs headless chromium on `url` with `args`, kept on loopback: no background networking,
/// and every host name but 127.0.0.1 unresolvable.
fn chromium(profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("chromium (Debian chromium, tests/setup.sh): {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_renders_the_page_as_a_table_without_running_record_data() {
    let (server, http) = start().await;
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{http}/");

    // The DOM as the browser built it: the rows are table cells and the hostile TXT is text.
    let output = chromium(profile.path(), &["--dump-dom"], &url);
    assert!(output.status.success(), "{output:?}");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert_eq!(rows_of(&dom), 4, "{dom}");
    assert!(
        dom.contains("<td>&lt;script&gt;alert(\"x\")&lt;/script&gt;&amp;&lt;b&gt;</td>"),
        "{dom}"
    );
    assert!(!dom.contains("<script"), "no script element: {dom}");

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("skydns-zone-page.png");
    let _ = std::fs::remove_file(&shot);
    let output = chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,500",
        ],
        &url,
    );
    assert!(output.status.success(), "{output:?}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    println!("screenshot of the zone page: {}", shot.display());
    server.stop().await;
}
