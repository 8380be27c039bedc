//! A real etcd (Debian's `etcd-server`) on free loopback ports with a temporary data directory:
//! one member, or a cluster of several that a test can stop and restart member by member; a
//! single member can also serve clients only over TLS with client certificates.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{EtcdSettings, EtcdTls};
use etcd_client::Client;
use tempfile::TempDir;

use crate::process::{free_tcp_port, spawn_tied};
use crate::tls::make_certificates;

/// The etcd binary; `HARNESS_ETCD` overrides it.
pub fn etcd_binary() -> String {
    std::env::var("HARNESS_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".to_owned())
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Certificates from [`make_certificates`]: clients only over TLS, with a certificate.
    tls: Option<PathBuf>,
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn spawn(&mut self, initial_cluster: &str, token: &str) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the etcd log file");
        let log_err = log.try_clone().expect("clone the etcd log file handle");
        let mut command = Command::new(etcd_binary());
        command
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &self.client_url()])
            .args(["--advertise-client-urls", &self.client_url()])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        if let Some(dir) = &self.tls {
            command
                .arg("--cert-file")
                .arg(dir.join("server.pem"))
                .arg("--key-file")
                .arg(dir.join("server.key"))
                .arg("--trusted-ca-file")
                .arg(dir.join("ca.pem"))
                .arg("--client-cert-auth");
        }
        command.stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = spawn_tied(command).unwrap_or_else(|e| {
            panic!(
                "cannot start {} (install Debian's etcd-server: tests/setup.sh): {e}",
                etcd_binary()
            )
        });
        self.child = Some(child);
    }

    fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running etcd cluster of one or more members; dropped → every member killed, data removed.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    tls: Option<PathBuf>,
    _dir: TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until the cluster serves linearizable reads.
    pub async fn start(size: usize) -> Self {
        assert!(size > 0, "an etcd cluster needs at least one member");
        Self::start_with(size, false).await
    }

    async fn start_with(size: usize, tls: bool) -> Self {
        let mut last_error = String::new();
        // A port picked as free can be taken by another test before etcd binds it: retry.
        for _ in 0..3 {
            let mut cluster = Self::spawn(size, tls);
            match cluster.wait_ready().await {
                Ok(()) => return cluster,
                Err(err) => last_error = err,
            }
        }
        panic!("etcd did not start: {last_error}");
    }

    fn spawn(size: usize, tls: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("harness-etcd-")
            .tempdir()
            .expect("create a temporary directory for etcd");
        let tls = tls.then(|| {
            let certs = dir.path().join("tls");
            std::fs::create_dir(&certs).expect("create the certificate directory");
            make_certificates(&certs);
            certs
        });
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_tcp_port(),
                peer_port: free_tcp_port(),
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log_path: dir.path().join(format!("m{i}.log")),
                tls: tls.clone(),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("harness-{}-{}", std::process::id(), members[0].client_port);
        let mut cluster = Self {
            members,
            initial_cluster,
            token,
            tls,
            _dir: dir,
        };
        for i in 0..size {
            cluster.spawn_member(i);
        }
        cluster
    }

    fn spawn_member(&mut self, index: usize) {
        let (initial, token) = (self.initial_cluster.clone(), self.token.clone());
        self.members[index].spawn(&initial, &token);
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        for index in 0..self.members.len() {
            if self.members[index].child.is_none() {
                continue;
            }
            loop {
                if self.members[index].exited() {
                    let member = &self.members[index];
                    return Err(format!(
                        "member {} exited; its log ends with:\n{}",
                        member.name,
                        member.log_tail()
                    ));
                }
                if self.member_answers(index).await {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    let member = &self.members[index];
                    return Err(format!(
                        "member {} not ready after {READY_TIMEOUT:?}; its log ends with:\n{}",
                        member.name,
                        member.log_tail()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    async fn member_answers(&self, index: usize) -> bool {
        let mut settings = self.settings_for(&self.members[index].client_url());
        settings.connect_timeout = Duration::from_secs(1);
        settings.request_timeout = Duration::from_secs(2);
        match settings.connect().await {
            // A linearizable read succeeds only once the cluster has a leader.
            Ok(mut client) => client.get("/harness/ready", None).await.is_ok(),
            Err(_) => false,
        }
    }

    /// Number of members (running or stopped).
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Comma-separated client URLs of every member, as `ETCD_MACHINES` takes them.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Member::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client URL of one member.
    pub fn member_endpoint(&self, index: usize) -> String {
        self.members[index].client_url()
    }

    /// Connection settings for the whole cluster (with the client certificate under TLS).
    pub fn settings(&self) -> EtcdSettings {
        self.settings_for(&self.endpoints())
    }

    fn settings_for(&self, endpoints: &str) -> EtcdSettings {
        let settings = EtcdSettings::new(endpoints).expect("harness endpoints are valid");
        match &self.tls {
            None => settings,
            Some(dir) => settings
                .with_tls(client_tls(dir))
                .expect("the harness TLS files are complete"),
        }
    }

    /// A connected client for the whole cluster.
    pub async fn client(&self) -> Client {
        self.settings()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to the harness etcd: {e}"))
    }

    /// A connected client for one member only.
    pub async fn member_client(&self, index: usize) -> Client {
        self.settings_for(&self.member_endpoint(index))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to etcd member {index}: {e}"))
    }

    /// Kills one member (as a crashed host would).
    pub fn stop_member(&mut self, index: usize) {
        self.members[index].kill();
    }

    /// Starts a stopped member again on the same ports and data, and waits until it serves.
    pub async fn restart_member(&mut self, index: usize) {
        assert!(
            self.members[index].child.is_none(),
            "member {index} is running"
        );
        self.spawn_member(index);
        if let Err(err) = self.wait_ready().await {
            panic!("etcd member {index} did not come back: {err}");
        }
    }
}

impl EtcdCluster {
    /// Kills one member with SIGKILL (a crash); same as [`stop_member`](Self::stop_member).
    pub fn kill_member(&mut self, index: usize) {
        self.members[index].kill();
    }

    /// Starts a killed member again without waiting for it to serve (it cannot while the
    /// cluster has no quorum); [`wait_serving`](Self::wait_serving) waits.
    pub fn start_member(&mut self, index: usize) {
        assert!(
            self.members[index].child.is_none(),
            "member {index} is running"
        );
        self.spawn_member(index);
    }

    /// Waits until every started member serves linearizable reads (the cluster has quorum).
    pub async fn wait_serving(&mut self) {
        if let Err(err) = self.wait_ready().await {
            panic!("etcd cluster not serving: {err}");
        }
    }

    /// Whether the member's process is running (paused counts as running).
    pub fn member_running(&mut self, index: usize) -> bool {
        !self.members[index].exited()
    }

    /// Freezes a member with SIGSTOP: its sockets stay open but it answers nothing, as a hung
    /// host would.
    pub fn pause_member(&self, index: usize) {
        self.signal_member(index, libc::SIGSTOP);
    }

    /// Resumes a member frozen by [`pause_member`](Self::pause_member) with SIGCONT.
    pub fn resume_member(&self, index: usize) {
        self.signal_member(index, libc::SIGCONT);
    }

    #[allow(unsafe_code)]
    fn signal_member(&self, index: usize, signal: libc::c_int) {
        let child = self.members[index]
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("etcd member {index} is not running"));
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: kill has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "signal {signal} to etcd member {index} failed");
    }

    /// The index of the current leader, asked of each member that answers within 2 s.
    pub async fn leader(&self) -> Option<usize> {
        for index in 0..self.members.len() {
            if self.members[index].child.is_none() {
                continue;
            }
            let mut settings = self.settings_for(&self.members[index].client_url());
            settings.connect_timeout = Duration::from_secs(1);
            settings.request_timeout = Duration::from_secs(2);
            let Ok(mut client) = settings.connect().await else {
                continue;
            };
            let Ok(status) = client.status().await else {
                continue;
            };
            let Some(id) = status.header().map(|h| h.member_id()) else {
                continue;
            };
            if status.leader() != id {
                continue;
            }
            return Some(index);
        }
        None
    }

    /// `127.0.0.1:<client port>` of one member.
    pub fn member_addr(&self, index: usize) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.members[index].client_port))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }
}

/// A single-member etcd.
#[derive(Debug)]
pub struct EtcdServer {
    cluster: EtcdCluster,
}

impl EtcdServer {
    /// Starts one member on free loopback ports and waits until it serves.
    pub async fn start() -> Self {
        Self {
            cluster: EtcdCluster::start(1).await,
        }
    }

    /// Starts one member that serves clients only over TLS (`https://` endpoint) and only
    /// those presenting a certificate from its CA; the files are in
    /// [`tls_dir`](Self::tls_dir). [`settings`](Self::settings) and
    /// [`client`](Self::client) use them.
    pub async fn start_tls() -> Self {
        Self {
            cluster: EtcdCluster::start_with(1, true).await,
        }
    }

    /// The certificates of a [`start_tls`](Self::start_tls) server, as [`make_certificates`]
    /// writes them (`ca.pem`, `server.pem`/`.key`, `client.pem`/`.key`); `None` without TLS.
    pub fn tls_dir(&self) -> Option<&Path> {
        self.cluster.tls.as_deref()
    }

    /// Its client URL, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> String {
        self.cluster.member_endpoint(0)
    }

    /// `127.0.0.1:<port>`, as registry URIs take it (`skydns2://127.0.0.1:41234/domain`).
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.cluster.members[0].client_port)
    }

    /// Connection settings.
    pub fn settings(&self) -> EtcdSettings {
        self.cluster.settings()
    }

    /// A connected client.
    pub async fn client(&self) -> Client {
        self.cluster.client().await
    }

    /// Kills the server (data is kept for `restart`).
    pub fn stop(&mut self) {
        self.cluster.stop_member(0);
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.cluster.restart_member(0).await;
    }

    /// Freezes it with SIGSTOP: connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.cluster.pause_member(0);
    }

    /// Resumes it after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.cluster.resume_member(0);
    }
}

/// The client files in a certificate directory from [`make_certificates`].
pub fn client_tls(dir: &Path) -> EtcdTls {
    EtcdTls {
        ca: Some(dir.join("ca.pem")),
        cert: Some(dir.join("client.pem")),
        key: Some(dir.join("client.key")),
    }
}

/// The events of the next watch response that has any (etcd first sends an empty "created"
/// response); panics if none arrives within `timeout` or the stream ends.
pub async fn next_watch_events(
    stream: &mut etcd_client::WatchStream,
    timeout: Duration,
) -> Vec<etcd_client::Event> {
    let next = async {
        loop {
            match stream.message().await {
                Ok(Some(response)) if !response.events().is_empty() => {
                    return response.events().to_vec();
                }
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the etcd watch stream ended"),
                Err(e) => panic!("the etcd watch failed: {e}"),
            }
        }
    };
    tokio::time::timeout(timeout, next)
        .await
        .unwrap_or_else(|_| panic!("no etcd watch event within {timeout:?}"))
}
