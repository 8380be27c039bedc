//! `relp://` against a real rsyslogd with imrelp (run in the foreground as this test's child,
//! with only its own configuration): numbered lines from a container arrive exactly once
//! although rsyslogd is restarted mid-stream, over plain TCP and over TLS with a client
//! certificate.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::process::{free_tcp_port, spawn_tied, terminate};
use harness::{ContainerSpec, TestDocker, wait_until};
use support::{Logspout, WAIT, unique};

/// rsyslogd receiving RELP on 127.0.0.1:`port`, writing each message's text to `out.log`;
/// with TLS, requiring a client certificate from the test CA.
struct Rsyslogd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Rsyslogd {
    fn start(tls: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_tcp_port();
        let tls = tls.map_or_else(String::new, |certs| {
            let certs = certs.display();
            format!(
                " tls=\"on\" tls.caCert=\"{certs}/ca.pem\" tls.myCert=\"{certs}/server.pem\" \
                 tls.myPrivKey=\"{certs}/server.key\" tls.authMode=\"certvalid\" tls.permittedPeer=[\"*\"]"
            )
        });
        let conf = format!(
            "global(workDirectory=\"{dir}\")\n\
             module(load=\"imrelp\")\n\
             input(type=\"imrelp\" port=\"{port}\" address=\"127.0.0.1\"{tls})\n\
             template(name=\"msgonly\" type=\"string\" string=\"%msg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{dir}/out.log\" template=\"msgonly\")\n",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
        let check = Command::new("rsyslogd")
            .args(["-N1", "-f"])
            .arg(dir.path().join("rsyslog.conf"))
            .output()
            .unwrap_or_else(|e| panic!("rsyslogd (apt-get install rsyslog rsyslog-relp): {e}"));
        assert!(
            check.status.success(),
            "rsyslogd -N1: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut rsyslogd = Self {
            child: None,
            dir,
            port,
        };
        rsyslogd.spawn();
        rsyslogd
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let mut command = Command::new("rsyslogd");
        command
            .arg("-n")
            .arg("-f")
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("rsyslogd.log"))
                    .unwrap(),
            );
        self.child = Some(spawn_tied(command).unwrap());
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.log")
    }

    /// SIGTERM, wait for the exit, start again on the same port.
    async fn restart(&mut self) {
        let mut child = self.child.take().unwrap();
        terminate(&child).unwrap();
        wait_until("rsyslogd exits after SIGTERM", WAIT, || {
            let exited = child.try_wait().unwrap().is_some();
            async move { exited.then_some(()) }
        })
        .await;
        let _ = std::fs::remove_file(self.dir.path().join("rsyslogd.pid"));
        self.spawn();
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("rsyslogd.log"));
            eprintln!("--- rsyslogd log ---\n{}", log.unwrap_or_default());
        }
    }
}

/// The numbers of the `line-<n>` messages in `path`, in file order.
fn numbers(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("line-")?.parse().ok())
        .collect()
}

/// Ships `lines` numbered lines over `scheme` (`relp` or `relp+tls`) to rsyslogd, restarting
/// it whenever `restart_at` lines have arrived, and asserts each arrived once, in order.
async fn ship_across_restarts(lines: u64, restart_at: &[usize], tls: Option<&Path>) {
    let docker = TestDocker::connect().await;
    let mut rsyslogd = Rsyslogd::start(tls);
    let name = unique("ls-relp");
    let (scheme, host) = if tls.is_some() {
        ("relp+tls", "localhost")
    } else {
        ("relp", "127.0.0.1")
    };
    let route = format!("{scheme}://{host}:{}?filter.name={name}", rsyslogd.port);
    let path = |file: &str| {
        tls.map(|d| d.join(file).display().to_string())
            .unwrap_or_default()
    };
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let env: Vec<(&str, &str)> = if tls.is_some() {
        vec![
            ("LOGSPOUT_TLS_CA_CERTS", ca.as_str()),
            ("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true"),
            ("LOGSPOUT_TLS_CLIENT_CERT", cert.as_str()),
            ("LOGSPOUT_TLS_CLIENT_KEY", key.as_str()),
        ]
    } else {
        Vec::new()
    };
    let logspout = Logspout::start(Some(&route), &env).await;
    // About 100 lines every 50 ms, so that the restarts fall mid-stream.
    let script = format!(
        "i=1; while [ $i -le {lines} ]; do echo line-$i; \
           if [ $((i % 100)) = 0 ]; then sleep 0.05; fi; i=$((i+1)); done; \
         trap 'exit 0' TERM; while true; do sleep 1; done"
    );
    let _container = docker.run(ContainerSpec::shell(&script).name(&name)).await;
    let out = rsyslogd.out();
    for &at in restart_at {
        wait_until(&format!("{at} lines in rsyslog's file"), WAIT, || async {
            (numbers(&out).len() >= at).then_some(())
        })
        .await;
        rsyslogd.restart().await;
    }
    wait_until("every line in rsyslog's file", WAIT, || async {
        (numbers(&out).len() as u64 >= lines).then_some(())
    })
    .await;
    // Give duplicates, if any, a moment to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = numbers(&out);
    let mut sorted = got.clone();
    sorted.sort_unstable();
    let mut unique_numbers = sorted.clone();
    unique_numbers.dedup();
    let missing: Vec<u64> = (1..=lines)
        .filter(|n| unique_numbers.binary_search(n).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} lines lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let doubled: Vec<u64> = sorted
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    assert!(
        doubled.is_empty(),
        "{} lines doubled: {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(20)]
    );
    assert_eq!(got, (1..=lines).collect::<Vec<u64>>(), "out of order");
    assert!(logspout.metric("logspout_route_reconnects_total").await >= restart_at.len() as f64);
    assert_eq!(
        logspout.metric("logspout_route_lines_out_total").await as u64,
        lines
    );
    assert_eq!(
        logspout.metric("logspout_route_lines_dropped_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_delivers_every_line_once_across_receiver_restarts() {
    ship_across_restarts(5000, &[1000, 2500], None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relp_over_tls_with_a_client_certificate_delivers_every_line_once_across_a_restart() {
    let certs = tempfile::tempdir().unwrap();
    harness::tls::make_certificates(certs.path());
    ship_across_restarts(2000, &[800], Some(certs.path())).await;
}
