//! Extra Docker hosts on this machine: each a `dockerd` of its own (with the containerd it
//! starts) with its own unix socket, `--data-root`, `--exec-root`, pidfile, cgroup parent and
//! one user-defined bridge network on its own subnet (`--bridge=hd…`, a default bridge of its own,
//! never `--bridge=none`, with which dockerd deletes the main daemon's `docker0`;
//! `--iptables=false`: it leaves the main daemon's iptables rules alone; ports published on loopback go
//! through the userland proxy) and `--live-restore` (containers outlive a daemon restart). Images are loaded with `docker save | docker -H … load`; nothing
//! is pulled.
//!
//! The daemon is tied to the test process (`PR_SET_PDEATHSIG`, and dockerd ties its containerd
//! to itself). What a killed run leaves behind — container shims, processes in the daemon's
//! cgroups, fuse-overlayfs and netns mounts, the bridge interface, the state directory — is
//! swept by the next run: every state directory lives under [`STATE_ROOT`] and is named after
//! the owning process's PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use common::{DockerHost, DockerSettings};

use crate::process::spawn_tied;

/// Where every extra daemon keeps its state: `<STATE_ROOT>/<owner pid>-<n>/`.
pub const STATE_ROOT: &str = "/tmp/harness-dockerd";

/// How long a daemon may take to answer its first ping.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The dockerd binary; `HARNESS_DOCKERD` overrides it.
pub fn dockerd_binary() -> String {
    std::env::var("HARNESS_DOCKERD").unwrap_or_else(|_| "/usr/sbin/dockerd".to_owned())
}

/// An extra Docker daemon with one bridge network; everything removed when dropped.
#[derive(Debug)]
pub struct DockerDaemon {
    dir: PathBuf,
    tag: String,
    child: Option<Child>,
    /// Connected (API version negotiated) once the daemon answered.
    docker: Option<Docker>,
    network: String,
    subnet: String,
    bridge: String,
}

impl DockerDaemon {
    /// Starts a daemon, waits until it answers, loads `images` from the main daemon into it and
    /// creates its network. Panics — the suite fails, it does not skip — if a daemon cannot run
    /// on this machine.
    pub async fn start(images: &[&str]) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        sweep_stale();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{n}", std::process::id());
        let dir = Path::new(STATE_ROOT).join(&tag);
        if dir.exists() {
            // A directory of an earlier process that had our PID.
            sweep_dir(&dir, &tag);
        }
        std::fs::create_dir_all(dir.join("data")).expect("create the daemon's data root");
        std::fs::create_dir_all(dir.join("exec")).expect("create the daemon's exec root");
        std::fs::write(dir.join("daemon.json"), "{}").expect("write an empty daemon.json");
        let mut daemon = Self {
            bridge: bridge_name(&tag),
            dir,
            tag,
            child: None,
            docker: None,
            network: String::new(),
            subnet: String::new(),
        };
        daemon.spawn();
        daemon.wait_ready().await;
        for image in images {
            daemon.load_image(image);
        }
        daemon.create_network().await;
        daemon
    }

    fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .expect("open the dockerd log");
        let log_err = log.try_clone().expect("clone the dockerd log handle");
        let mut command = Command::new(dockerd_binary());
        command
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .args(["--cgroup-parent", &cgroup_parent(&self.tag)])
            // Not `--bridge=none`: a daemon told that deletes the main daemon's `docker0`.
            .arg(format!("--bridge={}", create_default_bridge(&self.tag)))
            .args(["--iptables=false", "--ip-masq=false"])
            .args(["--storage-driver", "fuse-overlayfs"])
            .args(["--shutdown-timeout", "2"])
            // Containers keep running while the daemon restarts, as on a production host.
            .arg("--live-restore")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = spawn_tied(command).unwrap_or_else(|e| {
            panic!(
                "cannot start a second Docker daemon ({}): {e}",
                dockerd_binary()
            )
        });
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "a second Docker daemon cannot run on this machine: dockerd exited with \
                     {status}; its log ends with:\n{}",
                    self.log_tail()
                );
            }
            let settings = DockerSettings::new(DockerHost::Unix(self.socket()));
            if let Ok(docker) = settings.connect().await {
                self.docker = Some(docker);
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "a second Docker daemon did not answer within {READY_TIMEOUT:?}; its log ends \
                 with:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn load_image(&self, image: &str) {
        let output = Command::new("sh")
            .arg("-c")
            .arg(r#"docker save "$1" | docker -H "$2" load"#)
            .arg("sh")
            .arg(image)
            .arg(self.docker_host())
            .output()
            .expect("run docker save | docker load");
        assert!(
            output.status.success(),
            "loading {image} into the extra daemon failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn create_network(&mut self) {
        let name = "harness-host";
        let mut last_error = String::new();
        for subnet in free_subnets() {
            let options = bollard::models::NetworkCreateRequest {
                name: name.to_owned(),
                driver: Some("bridge".to_owned()),
                ipam: Some(bollard::models::Ipam {
                    config: Some(vec![bollard::models::IpamConfig {
                        subnet: Some(subnet.clone()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                options: Some(std::collections::HashMap::from([(
                    "com.docker.network.bridge.name".to_owned(),
                    self.bridge.clone(),
                )])),
                ..Default::default()
            };
            match self.docker().create_network(options).await {
                Ok(_) => {
                    self.network = name.to_owned();
                    self.subnet = subnet;
                    return;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        panic!("no free subnet for the extra daemon's network: {last_error}");
    }

    /// `unix:///…/docker.sock`, for `DOCKER_HOST` and `docker -H`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// A client of this daemon.
    pub fn docker(&self) -> &Docker {
        self.docker
            .as_ref()
            .expect("the daemon answered once (start waits for it)")
    }

    /// The bridge network containers of this host join.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// Its subnet, e.g. `10.213.7.0/24`.
    pub fn subnet(&self) -> &str {
        &self.subnet
    }

    /// Kills the daemon with SIGKILL (its containerd follows; the containers keep running and
    /// the next start restores them).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon with SIGTERM and waits for it; with `--live-restore` its containers keep
    /// running.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = crate::process::terminate(&child);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while tokio::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped daemon again on the same state and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the daemon is running");
        self.spawn();
        self.wait_ready().await;
    }

    fn remove_everything(&mut self) {
        // Synchronous on purpose: this also runs while a test panics, outside any runtime.
        if self.child.is_some() {
            let host = self.docker_host();
            let ids = Command::new("docker")
                .args(["-H", &host, "ps", "-aq"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["-H", &host, "rm", "-f", "-v"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            if !self.network.is_empty() {
                let _ = Command::new("docker")
                    .args(["-H", &host, "network", "rm", &self.network])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = crate::process::terminate(&child);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        sweep_dir(&self.dir, &self.tag);
    }

    /// Removes every container of this daemon (running or not).
    pub async fn remove_all_containers(&self) {
        let options = ListContainersOptionsBuilder::new().all(true).build();
        let Ok(containers) = self.docker().list_containers(Some(options)).await else {
            return;
        };
        for id in containers.into_iter().filter_map(|c| c.id) {
            let force = RemoveContainerOptionsBuilder::new().force(true).build();
            let _ = self.docker().remove_container(&id, Some(force)).await;
        }
    }
}

impl Drop for DockerDaemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- dockerd {} log (tail) ----\n{}",
                self.tag,
                self.log_tail()
            );
        }
        self.remove_everything();
    }
}

/// Interface names are at most 15 characters: `hb<pid>x<n>`.
fn bridge_name(tag: &str) -> String {
    let name = format!("hb{}", tag.replace('-', "x"));
    name.chars().take(15).collect()
}

/// The daemon's default bridge, `hd<pid>x<n>`: created here with an address of its own, so
/// that the daemon neither creates nor deletes `docker0`.
fn default_bridge_name(tag: &str) -> String {
    let name = format!("hd{}", tag.replace('-', "x"));
    name.chars().take(15).collect()
}

/// Creates [`default_bridge_name`] (unless it exists) with the first free `10.214.<k>.1/24`;
/// returns its name.
fn create_default_bridge(tag: &str) -> String {
    let name = default_bridge_name(tag);
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ip(&["link", "show", &name]) {
        // A restart of the same daemon keeps its bridge.
        return name;
    }
    assert!(
        ip(&["link", "add", &name, "type", "bridge"]),
        "cannot create the bridge {name} for an extra Docker daemon"
    );
    let address = free_subnets_in("10.214")
        .into_iter()
        .map(|subnet| subnet.replace(".0/24", ".1/24"))
        .find(|address| ip(&["addr", "add", address, "dev", &name]));
    assert!(address.is_some(), "no free subnet for {name}");
    assert!(ip(&["link", "set", &name, "up"]), "cannot bring {name} up");
    name
}

fn cgroup_parent(tag: &str) -> String {
    format!("/harness-dockerd-{tag}")
}

/// Candidate subnets `10.213.<k>.0/24` not already routed on this machine, starting at a place
/// that depends on the PID so that concurrent test processes rarely try the same ones.
fn free_subnets() -> Vec<String> {
    free_subnets_in("10.213")
}

/// Candidate subnets `<prefix>.<k>.0/24` not already routed on this machine.
fn free_subnets_in(prefix: &str) -> Vec<String> {
    let routes = Command::new("ip")
        .args(["-4", "route"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let start = (std::process::id() as usize * 7) % 250;
    (0..250)
        .map(|i| (start + i) % 250 + 1)
        .map(|k| format!("{prefix}.{k}.0/24"))
        .filter(|subnet| !routes.contains(subnet.as_str()))
        .take(20)
        .collect()
}

/// Sweeps the state of every extra daemon whose owning process is gone.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(STATE_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let tag = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = tag.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        sweep_dir(&entry.path(), &tag);
    }
}

/// Removes everything a daemon with state directory `dir` may have left: its processes
/// (dockerd, containerd, shims: their command lines name `dir`), every process in its cgroups,
/// the mounts under `dir`, its bridge interface, then `dir` itself.
fn sweep_dir(dir: &Path, tag: &str) {
    let dir_text = dir.to_string_lossy().into_owned();
    for pid in pids_whose_cmdline_contains(&dir_text) {
        kill_pid(pid);
    }
    let parent = cgroup_parent(tag);
    for _ in 0..3 {
        for pid in pids_in_cgroups(&parent) {
            kill_pid(pid);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    remove_cgroups(&parent);
    unmount_under(&dir_text);
    for bridge in [bridge_name(tag), default_bridge_name(tag)] {
        let _ = Command::new("ip")
            .args(["link", "delete", &bridge])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            eprintln!("harness: could not remove {}: {e}", dir.display());
        }
        _ => {}
    }
}

fn pids_whose_cmdline_contains(needle: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| u32::try_from(*pid).is_ok_and(|p| p != me))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Every cgroup directory below `/sys/fs/cgroup/<controller>/<parent>` (v1) or
/// `/sys/fs/cgroup/<parent>` (v2), deepest first.
fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from(format!("/sys/fs/cgroup{parent}"))];
    if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
        for controller in controllers.flatten() {
            roots.push(controller.path().join(parent.trim_start_matches('/')));
        }
    }
    let mut dirs = Vec::new();
    for root in roots {
        collect_dirs(&root, &mut dirs);
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    dirs
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.join("cgroup.procs").exists() {
        return;
    }
    out.push(dir.to_owned());
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&child.path(), out);
            }
        }
    }
}

fn pids_in_cgroups(parent: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroup_dirs(parent)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn remove_cgroups(parent: &str) {
    for dir in cgroup_dirs(parent) {
        let _ = std::fs::remove_dir(&dir);
    }
}

#[allow(unsafe_code)]
fn kill_pid(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Unmounts (lazily) every mount point under `dir`, deepest first.
#[allow(unsafe_code)]
fn unmount_under(dir: &str) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .filter(|p| p.starts_with(&prefix) || p == dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for point in points {
        let Ok(path) = std::ffi::CString::new(point) else {
            continue;
        };
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
        unsafe {
            libc::umount2(path.as_ptr(), libc::MNT_DETACH);
        }
    }
}
