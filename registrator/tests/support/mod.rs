//! Shared by the end-to-end tests: the real `registrator` binary against a real etcd and the
//! host's Docker Engine, and small etcd helpers.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use harness::process::spawn_tied;
use harness::wait_until;

/// Bound on every wait (a loaded 2-core CI machine is slow, never this slow).
pub const WAIT: Duration = Duration::from_secs(30);

/// The Docker endpoint the tests use (the host's engine).
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned())
}

/// Tags the test image as `name` (idempotent; no registry involved).
pub fn tag_test_image(name: &str) {
    let status = Command::new("docker")
        .args(["tag", harness::docker::TEST_IMAGE, name])
        .status()
        .expect("run docker tag");
    assert!(status.success(), "docker tag {name} failed");
}

/// Removes a tag made by [`tag_test_image`] (the image itself keeps its other tags).
pub fn untag_image(name: &str) {
    let _ = Command::new("docker")
        .args(["rmi", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A running `registrator` process; killed when dropped.
#[derive(Debug)]
pub struct Registrator {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registrator {
    /// Starts the binary with `args` (flags then the registry URI) against the host's Docker.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_docker(args, &docker_host())
    }

    /// Starts the binary with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(args, &docker_host(), env)
    }

    pub fn start_with_docker(args: &[&str], docker_host: &str) -> Self {
        Self::spawn(args, docker_host, &[])
    }

    fn spawn(args: &[&str], docker_host: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("registrator.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_registrator"));
        command
            .args(args)
            .env("DOCKER_HOST", docker_host)
            .env("RUST_LOG", "info,registrator=debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = spawn_tied(command).expect("spawn registrator");
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn terminate(&self) {
        harness::process::terminate(&self.child).unwrap();
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `signal` to the process.
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to exit and returns its status.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let log = self.log.clone();
        wait_until(
            &format!("registrator to exit (log: {})", log.display()),
            WAIT,
            || {
                let status = self.child.try_wait().unwrap();
                async move { status }
            },
        )
        .await
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str) {
        wait_until(
            &format!("{needle:?} in the registrator log"),
            WAIT,
            || async { self.log().contains(needle).then_some(()) },
        )
        .await;
    }
}

impl Drop for Registrator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- registrator log ---\n{}", self.log());
        }
    }
}

/// Every key under `prefix` with its value.
pub async fn records(client: &mut Client, prefix: &str) -> BTreeMap<String, String> {
    let response = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    response
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_owned(),
                kv.value_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until the records under `prefix` are exactly `expected`.
pub async fn wait_records(client: &mut Client, prefix: &str, expected: &BTreeMap<String, String>) {
    let mut last = BTreeMap::new();
    let result = tokio::time::timeout(WAIT, async {
        loop {
            last = records(client, prefix).await;
            if &last == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "records under {prefix} did not become {expected:#?}; last seen {last:#?}"
    );
}

/// Waits until `key` holds `expected` (`None`: until it is absent).
pub async fn wait_key(client: &mut Client, key: &str, expected: Option<&str>) {
    let expected: BTreeMap<String, String> = expected
        .map(|v| (key.to_owned(), v.to_owned()))
        .into_iter()
        .collect();
    let mut last = BTreeMap::new();
    let result = tokio::time::timeout(WAIT, async {
        loop {
            // An error (a leader election in a cluster test) just means "not yet".
            let Ok(response) = client.get(key, None).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            last = response
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        kv.key_str().unwrap().to_owned(),
                        kv.value_str().unwrap().to_owned(),
                    )
                })
                .collect();
            if last == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "{key} did not become {expected:?}; last seen {last:?}"
    );
}

/// The lease a key is attached to (0 = none).
pub async fn lease_of(client: &mut Client, key: &str) -> i64 {
    let response = client.get(key, None).await.unwrap();
    response.kvs().first().map(|kv| kv.lease()).unwrap_or(0)
}

/// The host name registrator uses in default IDs.
pub fn hostname() -> String {
    registrator::hostname()
}

/// The value of the metric lines starting with `prefix` at `addr` (summed; 0 when absent).
pub async fn metric(addr: &str, prefix: &str) -> f64 {
    let addr = addr.parse().expect("a metrics address");
    let (_, body) = harness::http::http_get(addr, "/metrics")
        .await
        .expect("GET /metrics");
    harness::http::metric_sum(&body, prefix)
}
