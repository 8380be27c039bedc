//! Real containers on the real Docker Engine, logspout as a process, real syslog sockets: the
//! bytes that arrive are exactly the original's.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use harness::syslog::Framing;
use harness::{ContainerSpec, SyslogReceiver, TestDocker};
use support::{Logspout, WAIT, unique};

/// `2021-12-06T15:04:05Z`: RFC 3339, whole seconds, UTC.
fn is_timestamp(ts: &str) -> bool {
    let b = ts.as_bytes();
    b.len() == 20
        && ts.chars().enumerate().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            19 => c == 'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Replaces the timestamp at `field` (space-separated) after checking its format.
fn without_timestamp(raw: &str, field: usize, prefix_len: usize) -> String {
    let mut parts: Vec<String> = raw.split(' ').map(str::to_owned).collect();
    let ts = &parts[field][prefix_len..];
    assert!(is_timestamp(ts), "timestamp {ts:?} in {raw:?}");
    let head = parts[field][..prefix_len].to_owned();
    parts[field] = format!("{head}TS");
    parts.join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_lines_arrive_with_exact_bytes_over_udp_and_tcp() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let name = unique("ls-exact");
    let port = receiver.port();
    let routes = format!(
        "syslog://127.0.0.1:{port}?filter.name={name},syslog+tcp://127.0.0.1:{port}?filter.name={name}"
    );
    let _logspout = Logspout::start(Some(&routes), &[]).await;
    // No sleep before printing: lines written right at start are not lost.
    let container = docker
        .run(
            ContainerSpec::shell("echo hello; echo oops >&2; echo; sleep 30")
                .name(&name)
                .hostname("abc123"),
        )
        .await;
    let pid = container.inspect().await.state.and_then(|s| s.pid).unwrap();

    let messages = receiver.wait_for_count(6, WAIT).await;
    let mut udp: Vec<String> = Vec::new();
    let mut tcp: Vec<String> = Vec::new();
    for m in &messages {
        let text = without_timestamp(&m.raw_text(), 1, 0);
        match m.framing {
            Framing::Datagram => udp.push(text),
            Framing::NewlineTerminated => tcp.push(format!("{text}\n")),
            Framing::OctetCounted => panic!("unexpected octet counting: {m:?}"),
        }
    }
    let expected = [
        format!("<14>1 TS abc123 {name} {pid} - - hello\n"),
        format!("<11>1 TS abc123 {name} {pid} - - oops\n"),
        format!("<14>1 TS abc123 {name} {pid} - - \n"),
    ];
    for got in [&mut udp, &mut tcp] {
        // stdout and stderr are independent streams: compare as a set, stdout in order.
        got.sort();
        let mut want = expected.to_vec();
        want.sort();
        assert_eq!(*got, want);
    }
    let hello = receiver.wait_for_msg("hello", WAIT).await;
    assert_eq!(hello.version, Some(1));
    assert_eq!(hello.hostname.as_deref(), Some("abc123"));
    assert_eq!(hello.appname.as_deref(), Some(name.as_str()));
    assert_eq!(hello.procid, Some(pid.to_string()));
    assert_eq!(hello.severity.as_deref(), Some("info"));
    assert_eq!(hello.facility.as_deref(), Some("user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc3164_with_octet_counting_and_templates() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let name = unique("ls-3164");
    let port = receiver.port();
    let routes = format!("syslog+tcp://127.0.0.1:{port}?filter.name={name}&append_tag=.app");
    let env = [
        ("SYSLOG_FORMAT", "rfc3164"),
        ("SYSLOG_TCP_FRAMING", "octet-counted"),
        ("SYSLOG_DATA", "{{.Source}}:{{.Data}}"),
        (
            "SYSLOG_HOSTNAME",
            "{{index .Container.Config.Labels \"node\"}}",
        ),
    ];
    let _logspout = Logspout::start(Some(&routes), &env).await;
    let container = docker
        .run(
            ContainerSpec::shell("echo hello; sleep 30")
                .name(&name)
                .label("node", "node1"),
        )
        .await;
    let pid = container.inspect().await.state.and_then(|s| s.pid).unwrap();
    let message = receiver.wait_for_msg("hello", WAIT).await;
    assert_eq!(message.framing, Framing::OctetCounted);
    let raw = message.raw_text();
    assert_eq!(
        without_timestamp(&raw, 0, 4),
        format!("<14>TS node1 {name}.app[{pid}]: stdout:hello\n")
    );
    assert_eq!(message.version, None, "parsed as RFC 3164");
    assert_eq!(message.hostname.as_deref(), Some("node1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_routes_use_raw_format_and_route_filters() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let prefix = unique("ls-raw");
    let port = receiver.port();
    let routes = format!("tcp://127.0.0.1:{port}?filter.name={prefix}_*&filter.sources=stderr");
    let env = [
        ("RAW_FORMAT", "{{.Container.Name}}|{{.Source}}|{{.Data}}\n"),
        ("EXCLUDE_LABEL", "logspout.exclude"),
    ];
    let _logspout = Logspout::start(Some(&routes), &env).await;
    let script = "echo out; echo err-$(hostname) >&2; sleep 30";
    let _shipped = docker
        .run(
            ContainerSpec::shell(script)
                .name(&format!("{prefix}_db"))
                .hostname("db"),
        )
        .await;
    let _ignored = docker
        .run(
            ContainerSpec::shell(script)
                .name(&format!("{prefix}_ig"))
                .hostname("ig")
                .env("LOGSPOUT", "IGNORE"),
        )
        .await;
    let _excluded = docker
        .run(
            ContainerSpec::shell(script)
                .name(&format!("{prefix}_ex"))
                .hostname("ex")
                .label("logspout.exclude", "TRUE"),
        )
        .await;
    let _other = docker
        .run(
            ContainerSpec::shell(script)
                .name(&format!("x{prefix}_db"))
                .hostname("other"),
        )
        .await;
    let _tty = docker
        .run(
            ContainerSpec::shell(script)
                .name(&format!("{prefix}_tty"))
                .hostname("tty")
                .tty(true),
        )
        .await;
    // A last container proves the others had their chance.
    let _marker = docker
        .run(
            ContainerSpec::shell(script)
                .name(&format!("{prefix}_zz"))
                .hostname("zz"),
        )
        .await;
    receiver
        .wait_for_all_raw(&format!("/{prefix}_zz|stderr|err-zz"), WAIT)
        .await;
    let mut got: Vec<String> = receiver.messages().iter().map(|m| m.raw_text()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            format!("/{prefix}_db|stderr|err-db"),
            format!("/{prefix}_zz|stderr|err-zz")
        ]
    );
}

/// `wait_for_msg` looks at the parsed syslog MSG; raw lines are not syslog.
trait RawWait {
    async fn wait_for_all_raw(&self, raw: &str, timeout: std::time::Duration);
}

impl RawWait for SyslogReceiver {
    async fn wait_for_all_raw(&self, raw: &str, timeout: std::time::Duration) {
        harness::wait_until(&format!("raw line {raw:?}"), timeout, || async {
            self.messages()
                .iter()
                .any(|m| m.raw_text() == raw)
                .then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_routes_merge_continuation_lines() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let name = unique("ls-multi");
    let routes = format!(
        "multiline+raw+tcp://127.0.0.1:{}?filter.name={name}",
        receiver.port()
    );
    let env = [("RAW_FORMAT", "{{toJSON .Data}}\n")];
    let logspout = Logspout::start(Some(&routes), &env).await;
    let script = "printf 'Exception\\n  at a\\n  at b\\nnext\\n'; sleep 30";
    let _c = docker.run(ContainerSpec::shell(script).name(&name)).await;
    receiver.wait_for_count(2, WAIT).await;
    let got: Vec<String> = receiver.messages().iter().map(|m| m.raw_text()).collect();
    assert_eq!(got, ["\"Exception\\n  at a\\n  at b\"", "\"next\""]);
    let (_, _, list) = logspout.get("/routes").await;
    assert!(
        list.contains("\"adapter\": \"multiline+raw+tcp\""),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_containers_are_shipped_with_allow_tty() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let name = unique("ls-tty");
    let routes = format!("tcp://127.0.0.1:{}?filter.name={name}", receiver.port());
    let env = [
        ("ALLOW_TTY", "true"),
        ("RAW_FORMAT", "{{.Source}} {{toJSON .Data}}\n"),
    ];
    let _logspout = Logspout::start(Some(&routes), &env).await;
    let _c = docker
        .run(
            ContainerSpec::shell("echo hello; echo world >&2; sleep 30")
                .name(&name)
                .tty(true),
        )
        .await;
    receiver.wait_for_count(2, WAIT).await;
    let got: Vec<String> = receiver.messages().iter().map(|m| m.raw_text()).collect();
    assert_eq!(got, ["stdout \"hello\\r\"", "stdout \"world\\r\""]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_split_and_bad_bytes_arrive_as_docker_stores_them() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let name = unique("ls-long");
    let routes = format!("tcp://127.0.0.1:{}?filter.name={name}", receiver.port());
    let logspout = Logspout::start(Some(&routes), &[]).await;
    // 100,000 bytes in one line (Docker hands it over in 16 KiB pieces), then a bad byte.
    let script =
        "head -c 100000 /dev/zero | tr '\\0' x; echo; printf 'bad \\377 byte\\n'; sleep 30";
    let _c = docker.run(ContainerSpec::shell(script).name(&name)).await;
    receiver.wait_for_count(3, WAIT).await;
    let got: Vec<Vec<u8>> = receiver.messages().iter().map(|m| m.raw.clone()).collect();
    assert_eq!(got[0], vec![b'x'; 64 * 1024]);
    assert_eq!(got[1], vec![b'x'; 100_000 - 64 * 1024]);
    // json-file stores lines as JSON strings: Docker itself hands the bad byte over as U+FFFD.
    assert_eq!(got[2], "bad \u{fffd} byte".as_bytes());
    // Process-wide (logspout reads every container on the host, other tests' too): at least
    // this container's cut.
    assert!(logspout.metric("logspout_lines_split_total").await >= 1.0);
}

/// Whole long lines: with `LOGSPOUT_MAX_LINE_BYTES` above the line's length, Docker's 16 KiB
/// pieces arrive as one message again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_arrive_whole_up_to_the_configured_maximum() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let name = unique("ls-whole");
    let routes = format!("tcp://127.0.0.1:{}?filter.name={name}", receiver.port());
    let env = [("LOGSPOUT_MAX_LINE_BYTES", "256KiB")];
    let logspout = Logspout::start(Some(&routes), &env).await;
    // 200,000 bytes, then 300,000 (cut once at 256 KiB), then a short line.
    let script = "head -c 200000 /dev/zero | tr '\\0' y; echo; \
                  head -c 300000 /dev/zero | tr '\\0' z; echo; echo end; sleep 30";
    let _c = docker.run(ContainerSpec::shell(script).name(&name)).await;
    receiver.wait_for_count(4, WAIT).await;
    let got: Vec<Vec<u8>> = receiver.messages().iter().map(|m| m.raw.clone()).collect();
    assert_eq!(got[0], vec![b'y'; 200_000]);
    assert_eq!(got[1], vec![b'z'; 256 * 1024]);
    assert_eq!(got[2], vec![b'z'; 300_000 - 256 * 1024]);
    assert_eq!(got[3], b"end");
    assert!(logspout.metric("logspout_lines_split_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_container_is_tagged_with_its_new_name() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let name = unique("ls-rename");
    let renamed = format!("{name}-new");
    // The route takes both names (filters are evaluated when a container is attached).
    let routes = format!(
        "syslog+tcp://127.0.0.1:{}?filter.name={name}*",
        receiver.port()
    );
    let logspout = Logspout::start(Some(&routes), &[]).await;
    let script = "echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after; sleep 30";
    let container = docker.run(ContainerSpec::shell(script).name(&name)).await;
    let before = receiver.wait_for_msg("before", WAIT).await;
    assert_eq!(before.appname.as_deref(), Some(name.as_str()));
    let options = bollard::query_parameters::RenameContainerOptionsBuilder::new()
        .name(&renamed)
        .build();
    docker
        .docker()
        .rename_container(container.id(), options)
        .await
        .unwrap();
    harness::wait_until("the rename to be seen", WAIT, || async {
        logspout.log().contains("container renamed").then_some(())
    })
    .await;
    container.touch("/tmp/go").await;
    let after = receiver.wait_for_msg("after", WAIT).await;
    assert_eq!(after.appname.as_deref(), Some(renamed.as_str()));
}
