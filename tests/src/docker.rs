//! Containers for tests, on the real Docker Engine: a busybox image built offline (no registry
//! here), a builder for containers with published ports, env vars, labels and scripted output,
//! and handles that remove their container when dropped. Containers of test processes that were
//! killed are swept on the next start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HealthConfig, HostConfig, HostConfigLogConfig,
    PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use common::DockerSettings;
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::wait::wait_until;

/// The image every test container runs: Debian's static busybox.
pub const TEST_IMAGE: &str = "harness-busybox:latest";
/// Label on every container the harness starts.
pub const HARNESS_LABEL: &str = "io.harness";
/// Label holding the PID of the test process that owns the container.
pub const OWNER_LABEL: &str = "io.harness.owner-pid";

/// The script that builds [`TEST_IMAGE`].
pub fn test_image_script() -> String {
    format!("{}/../docker/test-image.sh", env!("CARGO_MANIFEST_DIR"))
}

/// A Docker connection for tests (the host's engine: `DOCKER_HOST` or `/var/run/docker.sock`).
#[derive(Debug, Clone)]
pub struct TestDocker {
    docker: Docker,
}

impl TestDocker {
    /// Connects, builds the test image if missing and removes containers of dead test processes.
    pub async fn connect() -> Self {
        let settings = DockerSettings::from_value(
            std::env::var("DOCKER_HOST").ok().as_deref(),
            &["unix:///var/run/docker.sock"],
        )
        .expect("DOCKER_HOST is valid");
        let docker = settings
            .connect()
            .await
            .unwrap_or_else(|e| panic!("the tests need a running Docker Engine: {e}"));
        static PREPARED: OnceCell<()> = OnceCell::const_new();
        PREPARED
            .get_or_init(|| async {
                build_test_image().await;
                sweep_stale_containers(&docker).await;
            })
            .await;
        Self { docker }
    }

    /// The underlying bollard client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Creates and starts a container; it is removed when the handle is dropped.
    pub async fn run(&self, spec: ContainerSpec) -> TestContainer {
        let name = spec.name.clone().unwrap_or_else(unique_name);
        let body = spec.into_body();
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .unwrap_or_else(|e| panic!("create container {name}: {e}"));
        let container = TestContainer {
            id: created.id,
            name,
            docker: self.docker.clone(),
        };
        self.docker
            .start_container(&container.id, None)
            .await
            .unwrap_or_else(|e| panic!("start container {}: {e}", container.name));
        container
    }
}

async fn build_test_image() {
    let output = tokio::process::Command::new("bash")
        .arg(test_image_script())
        .arg(TEST_IMAGE)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {}: {e}", test_image_script()));
    assert!(
        output.status.success(),
        "building {TEST_IMAGE} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Removes harness containers whose owning test process no longer exists.
async fn sweep_stale_containers(docker: &Docker) {
    let filters = HashMap::from([("label".to_owned(), vec![HARNESS_LABEL.to_owned()])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return;
    };
    for container in containers {
        let owner = container
            .labels
            .as_ref()
            .and_then(|l| l.get(OWNER_LABEL))
            .and_then(|pid| pid.parse::<u32>().ok());
        let alive = owner.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if let (false, Some(id)) = (alive, container.id) {
            let force = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            let _ = docker.remove_container(&id, Some(force)).await;
        }
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "harness-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A published or exposed port of a [`ContainerSpec`].
#[derive(Debug, Clone)]
struct PortSpec {
    /// `80/tcp`
    key: String,
    /// `None`: exposed only. `Some(0)`: published on a free host port.
    host_port: Option<u16>,
    host_ip: String,
}

/// What container to run. Ports are published on 127.0.0.1 only.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    name: Option<String>,
    image: String,
    cmd: Vec<String>,
    env: Vec<String>,
    labels: HashMap<String, String>,
    ports: Vec<PortSpec>,
    hostname: Option<String>,
    network_mode: Option<String>,
    tty: bool,
    healthcheck: Option<HealthConfig>,
    log_config: Option<(String, HashMap<String, String>)>,
}

impl ContainerSpec {
    /// A container running `sh -c <script>` in the test image.
    pub fn shell(script: &str) -> Self {
        Self {
            name: None,
            image: TEST_IMAGE.to_owned(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            env: Vec::new(),
            labels: HashMap::new(),
            ports: Vec::new(),
            hostname: None,
            network_mode: None,
            tty: false,
            healthcheck: None,
            log_config: None,
        }
    }

    /// A container that just stays up.
    pub fn idle() -> Self {
        Self::shell("trap 'exit 0' TERM; while true; do sleep 1; done")
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Image to run instead of the busybox test image (one built locally).
    pub fn image(mut self, image: &str) -> Self {
        self.image = image.to_owned();
        self
    }

    /// Replaces the command (instead of `sh -c`).
    pub fn cmd<I: IntoIterator<Item = S>, S: Into<String>>(mut self, cmd: I) -> Self {
        self.cmd = cmd.into_iter().map(Into::into).collect();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push(format!("{key}={value}"));
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Publishes `port/tcp` on a free port of 127.0.0.1 (`-p 127.0.0.1::port`).
    pub fn publish(self, port: u16) -> Self {
        self.publish_port(port, "tcp", 0)
    }

    /// Publishes `port/udp` on a free port of 127.0.0.1.
    pub fn publish_udp(self, port: u16) -> Self {
        self.publish_port(port, "udp", 0)
    }

    /// Publishes `port/proto` on 127.0.0.1:`host_port` (0 = any free port).
    pub fn publish_port(mut self, port: u16, proto: &str, host_port: u16) -> Self {
        self.ports.push(PortSpec {
            key: format!("{port}/{proto}"),
            host_port: Some(host_port),
            host_ip: "127.0.0.1".to_owned(),
        });
        self
    }

    /// Publishes `port/tcp` on a free port of `host_ip` (a loopback address such as 127.0.0.2).
    pub fn publish_on(mut self, host_ip: &str, port: u16) -> Self {
        self.ports.push(PortSpec {
            key: format!("{port}/tcp"),
            host_port: Some(0),
            host_ip: host_ip.to_owned(),
        });
        self
    }

    /// Exposes `port/tcp` without publishing it.
    pub fn expose(mut self, port: u16) -> Self {
        self.ports.push(PortSpec {
            key: format!("{port}/tcp"),
            host_port: None,
            host_ip: String::new(),
        });
        self
    }

    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = Some(hostname.to_owned());
        self
    }

    /// `host`, `none`, `container:<id>` or the name of a network the test created.
    /// Docker's log driver for the container and its options (`--log-driver`, `--log-opt`).
    pub fn log_driver(mut self, driver: &str, options: &[(&str, &str)]) -> Self {
        let options = options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.log_config = Some((driver.to_owned(), options));
        self
    }

    pub fn network_mode(mut self, mode: &str) -> Self {
        self.network_mode = Some(mode.to_owned());
        self
    }

    pub fn tty(mut self, tty: bool) -> Self {
        self.tty = tty;
        self
    }

    /// A Docker HEALTHCHECK running `sh -c <script>` every `interval`.
    pub fn healthcheck(mut self, script: &str, interval: Duration) -> Self {
        let nanos = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
        self.healthcheck = Some(HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), script.into()]),
            interval: Some(nanos),
            timeout: Some(nanos),
            retries: Some(1),
            ..HealthConfig::default()
        });
        self
    }

    fn into_body(mut self) -> ContainerCreateBody {
        self.labels.insert(HARNESS_LABEL.to_owned(), "1".to_owned());
        self.labels
            .insert(OWNER_LABEL.to_owned(), std::process::id().to_string());
        let exposed: Vec<String> = self.ports.iter().map(|p| p.key.clone()).collect();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for port in &self.ports {
            if let Some(host_port) = port.host_port {
                let host_port = if host_port == 0 {
                    String::new()
                } else {
                    host_port.to_string()
                };
                bindings
                    .entry(port.key.clone())
                    .or_default()
                    .get_or_insert_with(Vec::new)
                    .push(PortBinding {
                        host_ip: Some(port.host_ip.clone()),
                        host_port: Some(host_port),
                    });
            }
        }
        ContainerCreateBody {
            image: Some(self.image),
            cmd: Some(self.cmd),
            env: Some(self.env),
            labels: Some(self.labels),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            hostname: self.hostname,
            tty: Some(self.tty),
            healthcheck: self.healthcheck,
            host_config: Some(HostConfig {
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                network_mode: self.network_mode,
                log_config: self.log_config.map(|(typ, config)| HostConfigLogConfig {
                    typ: Some(typ),
                    config: Some(config),
                }),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        }
    }
}

/// Output of a container, split by stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerLogs {
    pub stdout: String,
    pub stderr: String,
}

/// A running test container; removed (forcefully, with its volumes) when dropped.
#[derive(Debug)]
pub struct TestContainer {
    id: String,
    name: String,
    docker: Docker,
}

impl TestContainer {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The first 12 characters of the ID, as `docker ps` shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub async fn inspect(&self) -> ContainerInspectResponse {
        self.docker
            .inspect_container(&self.id, None::<InspectContainerOptions>)
            .await
            .unwrap_or_else(|e| panic!("inspect container {}: {e}", self.name))
    }

    /// The host port that `port/proto` (e.g. `80/tcp`) is published on.
    pub async fn host_port(&self, key: &str) -> u16 {
        let inspect = self.inspect().await;
        inspect
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|ports| ports.get(key).cloned().flatten())
            .and_then(|bindings| bindings.into_iter().next())
            .and_then(|b| b.host_port)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("container {} does not publish {key}", self.name))
    }

    /// Everything the container has written so far.
    pub async fn logs(&self) -> ContainerLogs {
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let mut stream = self.docker.logs(&self.id, Some(options));
        let mut logs = ContainerLogs::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    logs.stdout.push_str(&String::from_utf8_lossy(&message));
                }
                Ok(LogOutput::StdErr { message }) => {
                    logs.stderr.push_str(&String::from_utf8_lossy(&message));
                }
                Ok(LogOutput::StdIn { .. }) => {}
                Err(e) => panic!("read logs of {}: {e}", self.name),
            }
        }
        logs
    }

    /// Waits until the container's stdout or stderr contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> ContainerLogs {
        wait_until(
            &format!("{needle:?} in the logs of {}", self.name),
            timeout,
            || async {
                let logs = self.logs().await;
                (logs.stdout.contains(needle) || logs.stderr.contains(needle)).then_some(logs)
            },
        )
        .await
    }

    /// `docker stop` with a grace period.
    pub async fn stop(&self, grace: Duration) {
        let secs = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(secs).build();
        self.docker
            .stop_container(&self.id, Some(options))
            .await
            .unwrap_or_else(|e| panic!("stop container {}: {e}", self.name));
    }

    /// `docker kill -s <signal>`.
    pub async fn kill(&self, signal: &str) {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        self.docker
            .kill_container(&self.id, Some(options))
            .await
            .unwrap_or_else(|e| panic!("kill container {}: {e}", self.name));
    }

    /// `docker exec -d <container> touch <file>`: the containers' scripts wait for such files.
    pub async fn touch(&self, file: &str) {
        let config = bollard::models::ExecConfig {
            cmd: Some(vec!["touch".into(), file.into()]),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(&self.id, config)
            .await
            .unwrap_or_else(|e| panic!("exec in container {}: {e}", self.name));
        let detached = bollard::exec::StartExecOptions {
            detach: true,
            ..Default::default()
        };
        self.docker
            .start_exec(&exec.id, Some(detached))
            .await
            .unwrap_or_else(|e| panic!("exec in container {}: {e}", self.name));
    }

    /// `docker start` after a stop.
    pub async fn start(&self) {
        self.docker
            .start_container(&self.id, None)
            .await
            .unwrap_or_else(|e| panic!("start container {}: {e}", self.name));
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        // Synchronous on purpose: this also runs while a test panics, outside any runtime.
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", "-v", &self.id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
