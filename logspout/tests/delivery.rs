//! Nothing lost, nothing doubled: a TCP destination that goes away and comes back, Docker log
//! streams that end while the container runs, Docker daemon restarts (played by a socket proxy
//! that is cut and restored), container restarts, and SIGTERM with lines queued.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::time::Duration;

use harness::{ContainerSpec, DockerProxy, SyslogReceiver, TestDocker, wait_until};
use support::{Logspout, WAIT, unique};

/// The numbered lines received, in arrival order.
fn numbers(receiver: &SyslogReceiver) -> Vec<u64> {
    numbered(receiver, "line-")
}

/// The numbers of the lines `<prefix><n>` received, in arrival order.
fn numbered(receiver: &SyslogReceiver, prefix: &str) -> Vec<u64> {
    receiver
        .messages()
        .iter()
        .map(|m| {
            m.msg
                .trim()
                .strip_prefix(prefix)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected message {:?}", m.raw_text()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_receiver_outages_lose_and_double_nothing() {
    const BURST: u64 = 2000;
    const BURSTS: u64 = 5;
    let docker = TestDocker::connect().await;
    let mut receiver = SyslogReceiver::start().await;
    let name = unique("ls-outage");
    // A DNS name, looked up again on every reconnect.
    let route = format!(
        "syslog+tcp://localhost:{}?filter.name={name}",
        receiver.port()
    );
    let logspout = Logspout::start(Some(&route), &[]).await;
    // Burst b is written once /tmp/go<b-1> exists: the test decides when.
    let script = format!(
        "touch /tmp/go0; for b in $(seq 1 {BURSTS}); do \
           while [ ! -e /tmp/go$((b-1)) ]; do sleep 0.05; done; \
           seq $(( (b-1)*{BURST}+1 )) $(( b*{BURST} )) | sed 's/^/line-/'; \
         done; trap 'exit 0' TERM; while true; do sleep 1; done"
    );
    let container = docker.run(ContainerSpec::shell(&script).name(&name)).await;
    for burst in 1..=BURSTS {
        receiver
            .wait_for_count((burst * BURST) as usize, WAIT)
            .await;
        assert_eq!(
            receiver.messages().len() as u64,
            burst * BURST,
            "burst {burst} not yet released"
        );
        if burst == BURSTS {
            break;
        }
        // The destination goes away between bursts; the next burst is written meanwhile.
        receiver.stop().await;
        container.touch(&format!("/tmp/go{burst}")).await;
        let queued = (burst + 1) * BURST;
        wait_until(
            "the next burst read while the destination is down",
            WAIT,
            || async {
                (logspout.metric("logspout_route_lines_in_total").await >= queued as f64)
                    .then_some(())
            },
        )
        .await;
        receiver.resume().await;
    }
    let got = numbers(&receiver);
    let expected: Vec<u64> = (1..=BURSTS * BURST).collect();
    assert!(
        got == expected,
        "lines missing, doubled or out of order: {} received",
        got.len()
    );
    assert!(logspout.metric("logspout_route_reconnects_total").await >= (BURSTS - 1) as f64);
    assert_eq!(
        logspout.metric("logspout_route_lines_dropped_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_docker_streams_resume_without_gap_or_duplicate() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let name = unique("ls-reattach");
    let route = format!(
        "syslog+tcp://127.0.0.1:{}?filter.name={name}",
        receiver.port()
    );
    // A 1 s inactivity timeout ends the stream in every pause: each re-attach asks Docker for
    // the whole last second again, and what was shipped must be skipped.
    let logspout = Logspout::start(Some(&route), &[("INACTIVITY_TIMEOUT", "1s")]).await;
    let script = "for b in 1 2 3 4; do seq $(( (b-1)*500+1 )) $(( b*500 )) | sed 's/^/line-/'; sleep 2; done; \
                  trap 'exit 0' TERM; while true; do sleep 1; done";
    let _container = docker.run(ContainerSpec::shell(script).name(&name)).await;
    receiver.wait_for_count(2000, WAIT).await;
    wait_until("a re-attach after the last burst", WAIT, || async {
        (logspout.log().matches("re-attaching").count() >= 4).then_some(())
    })
    .await;
    let got = numbers(&receiver);
    assert_eq!(got, (1..=2000).collect::<Vec<u64>>());
}

/// The pause logspout chose after each lost event stream that had been connected (the first
/// `Docker event stream interrupted` after each `following Docker events`).
fn first_retries_after_connecting(log: &str) -> Vec<Duration> {
    let mut connected = false;
    let mut pauses = Vec::new();
    for line in log.lines() {
        if line.contains("following Docker events") {
            connected = true;
        } else if line.contains("Docker event stream interrupted") && connected {
            connected = false;
            let value = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("retry_in="))
                .unwrap_or_else(|| panic!("no retry_in in {line:?}"));
            pauses.push(parse_debug_duration(value));
        }
    }
    pauses
}

/// Parses a `Duration` as `{:?}` prints it (`140.2ms`, `1.5s`, `900µs`).
fn parse_debug_duration(value: &str) -> Duration {
    let (number, scale) = [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)]
        .into_iter()
        .find_map(|(unit, scale)| Some((value.strip_suffix(unit)?, scale)))
        .unwrap_or_else(|| panic!("not a duration: {value:?}"));
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("not a duration: {value:?}"));
    Duration::from_secs_f64(number * scale)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_daemon_restarts_lose_and_double_nothing() {
    const BURST: usize = 500;
    let docker = TestDocker::connect().await;
    let proxy = DockerProxy::start();
    let receiver = SyslogReceiver::start().await;
    let late_receiver = SyslogReceiver::start().await;
    let brief_receiver = SyslogReceiver::start().await;
    let name = unique("ls-dockerd");
    let late = unique("ls-dockerd-late");
    let brief = unique("ls-dockerd-brief");
    let route = |r: &SyslogReceiver, name: &str| {
        format!("syslog+tcp://127.0.0.1:{}?filter.name={name}", r.port())
    };
    let routes = format!(
        "{},{},{}",
        route(&receiver, &name),
        route(&late_receiver, &late),
        route(&brief_receiver, &brief)
    );
    let mut logspout =
        Logspout::start(Some(&routes), &[("DOCKER_HOST", &proxy.docker_host())]).await;
    // Burst b is written once /tmp/go<b> exists. Burst 3 is written slowly (about 2 s), so that
    // Docker can go away in the middle of it.
    let script = format!(
        "for b in 1 2 3 4; do \
           while [ ! -e /tmp/go$b ]; do sleep 0.05; done; \
           if [ $b = 3 ]; then \
             i=$(( 2*{BURST}+1 )); \
             while [ $i -le $(( 3*{BURST} )) ]; do \
               echo line-$i; if [ $((i % 25)) = 0 ]; then sleep 0.1; fi; i=$((i+1)); \
             done; \
           else \
             seq $(( (b-1)*{BURST}+1 )) $(( b*{BURST} )) | sed 's/^/line-/'; \
           fi; \
         done; trap 'exit 0' TERM; while true; do sleep 1; done"
    );
    let container = docker.run(ContainerSpec::shell(&script).name(&name)).await;
    logspout.wait_attached(&name).await;
    container.touch("/tmp/go1").await;
    receiver.wait_for_count(BURST, WAIT).await;

    // Docker goes away between bursts. While it is away the next burst is written and another
    // container starts; logspout can see neither.
    let before = proxy.accepted();
    proxy.cut();
    container.touch("/tmp/go2").await;
    container
        .wait_for_log(&format!("line-{}\n", 2 * BURST), WAIT)
        .await;
    let late_script =
        "seq 1 300 | sed 's/^/late-/'; trap 'exit 0' TERM; while true; do sleep 1; done";
    let late_container = docker
        .run(ContainerSpec::shell(late_script).name(&late))
        .await;
    late_container.wait_for_log("late-300\n", WAIT).await;
    // A container that starts and exits while Docker is away: only the replayed events tell.
    let brief_container = docker
        .run(ContainerSpec::shell("seq 1 50 | sed 's/^/brief-/'").name(&brief))
        .await;
    brief_container.wait_for_log("brief-50\n", WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.messages().len(),
        BURST,
        "lines arrived while the proxy was cut: logspout does not use DOCKER_HOST"
    );
    assert!(
        logspout.is_running(),
        "logspout exited when Docker went away"
    );
    proxy.restore();
    receiver.wait_for_count(2 * BURST, WAIT).await;
    late_receiver.wait_for_count(300, WAIT).await;
    brief_receiver.wait_for_count(50, WAIT).await;
    assert_eq!(
        numbered(&brief_receiver, "brief-"),
        (1..=50).collect::<Vec<u64>>(),
        "the container that started and exited while Docker was away"
    );
    assert!(proxy.accepted() > before, "no reconnect through the proxy");

    // Docker goes away in the middle of a burst, for 3 s.
    container.touch("/tmp/go3").await;
    receiver.wait_for_count(2 * BURST + 100, WAIT).await;
    let before = proxy.accepted();
    proxy.outage(Duration::from_secs(3)).await;
    receiver.wait_for_count(3 * BURST, WAIT).await;
    assert!(proxy.accepted() > before, "no reconnect through the proxy");

    // And everything works as before once it is back.
    container.touch("/tmp/go4").await;
    receiver.wait_for_count(4 * BURST, WAIT).await;

    let got = numbers(&receiver);
    let expected: Vec<u64> = (1..=4 * BURST as u64).collect();
    assert!(
        got == expected,
        "lines missing, doubled or out of order: {} received, first differences: {:?}",
        got.len(),
        got.iter()
            .zip(&expected)
            .filter(|(g, e)| g != e)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        numbered(&late_receiver, "late-"),
        (1..=300).collect::<Vec<u64>>(),
        "the container started while Docker was away"
    );
    assert!(logspout.is_running(), "logspout exited");
    // The start and a reconnect after each outage (the first one is implied by the container
    // that was found after it; the event stream may come back after the log streams).
    let log = wait_until(
        "the event stream back after the second outage",
        WAIT,
        || async {
            let log = logspout.log();
            (log.matches("following Docker events").count() >= 3).then_some(log)
        },
    )
    .await;
    // Each outage is met with the shortest pause first (100 ms with up to 100 % jitter), not
    // with the pause where the previous outage left off (seconds by then).
    let first_retries = first_retries_after_connecting(&log);
    assert!(first_retries.len() >= 2, "{first_retries:?}");
    assert!(
        first_retries.iter().all(|d| *d < Duration::from_secs(1)),
        "the backoff did not start again after reconnecting: {first_retries:?}"
    );
    // While Docker is away every retry fails: at most one warning per container and outage.
    let short = &container.id()[..12];
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains(short))
        .collect();
    assert!(warnings.len() <= 2, "{warnings:#?}");
    assert_eq!(
        logspout.metric("logspout_route_lines_dropped_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_container_is_not_replayed_even_with_backlog() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let name = unique("ls-restart");
    let route = format!(
        "syslog+tcp://127.0.0.1:{}?filter.name={name}",
        receiver.port()
    );
    let _logspout = Logspout::start(Some(&route), &[("BACKLOG", "true")]).await;
    let script = "if [ -e /tmp/ran ]; then echo run2; else touch /tmp/ran; echo run1; fi; \
                  trap 'exit 0' TERM; while true; do sleep 1; done";
    let container = docker.run(ContainerSpec::shell(script).name(&name)).await;
    receiver.wait_for_msg("run1", WAIT).await;
    container.stop(Duration::from_secs(10)).await;
    container.start().await;
    receiver.wait_for_msg("run2", WAIT).await;
    let msgs: Vec<String> = receiver.messages().iter().map(|m| m.msg.clone()).collect();
    assert_eq!(
        msgs,
        ["run1", "run2"],
        "the original replays run1 again after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_queued_lines_then_exits_0() {
    let docker = TestDocker::connect().await;
    let mut receiver = SyslogReceiver::start().await;
    let name = unique("ls-flush");
    let route = format!(
        "syslog+tcp://127.0.0.1:{}?filter.name={name}",
        receiver.port()
    );
    // Down from the start: an unreachable destination is retried, not fatal.
    receiver.stop().await;
    let mut logspout = Logspout::start(Some(&route), &[]).await;
    let script = "seq 1 1000 | sed 's/^/line-/'; trap 'exit 0' TERM; while true; do sleep 1; done";
    let _container = docker.run(ContainerSpec::shell(script).name(&name)).await;
    wait_until("1000 lines queued", WAIT, || async {
        (logspout.metric("logspout_route_lines_in_total").await >= 1000.0).then_some(())
    })
    .await;
    logspout.terminate();
    receiver.resume().await;
    let status = logspout.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "{}", logspout.log());
    assert_eq!(numbers(&receiver), (1..=1000).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_lines_and_counts_them() {
    let docker = TestDocker::connect().await;
    let mut receiver = SyslogReceiver::start().await;
    let name = unique("ls-overflow");
    let route = format!(
        "syslog+tcp://127.0.0.1:{}?filter.name={name}",
        receiver.port()
    );
    receiver.stop().await;
    let logspout = Logspout::start(Some(&route), &[("LOGSPOUT_QUEUE_SIZE", "64KiB")]).await;
    // About 80 bytes per rendered line: 5000 lines are far more than 64 KiB.
    let script = "seq 1 5000 | sed 's/^/line-/'; trap 'exit 0' TERM; while true; do sleep 1; done";
    let _container = docker.run(ContainerSpec::shell(script).name(&name)).await;
    wait_until("5000 lines read", WAIT, || async {
        (logspout.metric("logspout_route_lines_in_total").await >= 5000.0).then_some(())
    })
    .await;
    let dropped = logspout.metric("logspout_route_lines_dropped_total").await;
    assert!(dropped > 0.0, "nothing dropped");
    receiver.resume().await;
    let expected_kept = 5000 - dropped as u64;
    receiver.wait_for_count(expected_kept as usize, WAIT).await;
    let got = numbers(&receiver);
    // The newest lines survive, in order, each once.
    assert_eq!(got, ((dropped as u64 + 1)..=5000).collect::<Vec<u64>>());
    assert!(
        logspout
            .log()
            .contains("route queue full, dropped the oldest messages")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_decides_whether_lines_from_before_the_start_are_shipped() {
    let docker = TestDocker::connect().await;
    let name = unique("ls-backlog");
    let script = "echo old; while [ ! -e /tmp/go0 ]; do sleep 0.05; done; echo new; \
                  trap 'exit 0' TERM; while true; do sleep 1; done";
    let container = docker.run(ContainerSpec::shell(script).name(&name)).await;
    container.wait_for_log("old", WAIT).await;
    // `old` must lie in an earlier second than logspout's start (the original's granularity).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let default = SyslogReceiver::start().await;
    let backlog = SyslogReceiver::start().await;
    let route =
        |r: &SyslogReceiver| format!("syslog+tcp://127.0.0.1:{}?filter.name={name}", r.port());
    let plain = Logspout::start(Some(&route(&default)), &[("BACKLOG", "false")]).await;
    let replay = Logspout::start(Some(&route(&backlog)), &[("BACKLOG", "true")]).await;
    backlog.wait_for_msg("old", WAIT).await;
    plain.wait_attached(&name).await;
    replay.wait_attached(&name).await;
    container.touch("/tmp/go0").await;
    default.wait_for_msg("new", WAIT).await;
    backlog.wait_for_msg("new", WAIT).await;
    let msgs = |r: &SyslogReceiver| {
        r.messages()
            .iter()
            .map(|m| m.msg.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(msgs(&default), ["new"]);
    assert_eq!(msgs(&backlog), ["old", "new"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_logspout_resumes_where_it_stopped() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let state = tempfile::tempdir().unwrap();
    let positions = state.path().join("positions").display().to_string();
    let name = unique("ls-resume");
    let route = format!(
        "syslog+tcp://127.0.0.1:{}?filter.name={name}",
        receiver.port()
    );
    let env = [("LOGSPOUT_POSITIONS_FILE", positions.as_str())];
    let script = "for b in 1 2; do while [ ! -e /tmp/go$b ]; do sleep 0.05; done; \
                  seq $(( (b-1)*100+1 )) $(( b*100 )) | sed 's/^/line-/'; done; \
                  trap 'exit 0' TERM; while true; do sleep 1; done";
    let container = docker.run(ContainerSpec::shell(script).name(&name)).await;
    let mut first = Logspout::start(Some(&route), &env).await;
    first.wait_attached(&name).await;
    container.touch("/tmp/go1").await;
    receiver.wait_for_count(100, WAIT).await;
    first.terminate();
    assert_eq!(first.wait_exit(WAIT).await.code(), Some(0));
    // Written while logspout is down, in an earlier second than its next start.
    container.touch("/tmp/go2").await;
    container.wait_for_log("line-200", WAIT).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _second = Logspout::start(Some(&route), &env).await;
    receiver.wait_for_count(200, WAIT).await;
    assert_eq!(numbers(&receiver), (1..=200).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_cuts_the_first_attach_only_and_a_resume_ships_everything_since() {
    let docker = TestDocker::connect().await;
    let receiver = SyslogReceiver::start().await;
    let state = tempfile::tempdir().unwrap();
    let positions = state.path().join("positions").display().to_string();
    let name = unique("ls-tail");
    let route = format!(
        "syslog+tcp://127.0.0.1:{}?filter.name={name}",
        receiver.port()
    );
    let env = [
        ("LOGSPOUT_POSITIONS_FILE", positions.as_str()),
        ("BACKLOG", "true"),
        ("TAIL", "2"),
    ];
    let script = "seq 1 5 | sed 's/^/line-/'; while [ ! -e /tmp/go ]; do sleep 0.05; done; \
                  seq 6 105 | sed 's/^/line-/'; trap 'exit 0' TERM; while true; do sleep 1; done";
    let container = docker.run(ContainerSpec::shell(script).name(&name)).await;
    container.wait_for_log("line-5", WAIT).await;
    let mut first = Logspout::start(Some(&route), &env).await;
    receiver.wait_for_count(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(numbers(&receiver), [4, 5], "TAIL=2 on the first attach");
    first.terminate();
    assert_eq!(first.wait_exit(WAIT).await.code(), Some(0));
    // 100 lines while logspout is down: the resume is not cut to the last 2 (the original
    // passes TAIL on every attach).
    container.touch("/tmp/go").await;
    container.wait_for_log("line-105", WAIT).await;
    let _second = Logspout::start(Some(&route), &env).await;
    receiver.wait_for_count(102, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut expected = vec![4, 5];
    expected.extend(6..=105);
    assert_eq!(numbers(&receiver), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_count_failed_retries_are_reported_as_an_error_and_retrying_goes_on() {
    let docker = TestDocker::connect().await;
    let mut receiver = SyslogReceiver::start().await;
    let name = unique("ls-retries");
    let route = format!(
        "syslog+tcp://127.0.0.1:{}?filter.name={name}",
        receiver.port()
    );
    receiver.stop().await;
    let mut logspout = Logspout::start(Some(&route), &[("RETRY_COUNT", "3")]).await;
    let script = "seq 1 10 | sed 's/^/line-/'; trap 'exit 0' TERM; while true; do sleep 1; done";
    let _container = docker.run(ContainerSpec::shell(script).name(&name)).await;
    // The first failed connect and 3 failed retries, then a few more.
    wait_until("7 failed connects", WAIT, || async {
        (logspout.metric("logspout_route_reconnects_total").await >= 6.0).then_some(())
    })
    .await;
    let log = logspout.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("route still failing after RETRY_COUNT=3 retries")
            && errors[0].contains("failures=4"),
        "{log}"
    );
    assert!(logspout.is_running());
    receiver.resume().await;
    receiver.wait_for_count(10, WAIT).await;
    assert_eq!(numbers(&receiver), (1..=10).collect::<Vec<u64>>());
}
