//! Child processes that die with the test process, and free loopback ports.
//!
//! A test that is killed (timeout, SIGKILL) must not leave etcd or a component binary running.
//! `PR_SET_PDEATHSIG` kills a child when the *thread* that spawned it exits, so every child is
//! spawned from one thread that lives as long as the process.

use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

type SpawnRequest = (Command, Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawn the harness spawner thread");
        Mutex::new(tx)
    })
}

/// Spawns `command` so that the child gets SIGKILL when this process dies.
#[allow(unsafe_code)]
pub fn spawn_tied(mut command: Command) -> io::Result<Child> {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = channel();
    spawner()
        .lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral TCP port on 127.0.0.1")
}

/// A port on 127.0.0.1 free for both TCP and UDP a moment ago (DNS and syslog listen on both).
pub fn free_tcp_udp_port() -> u16 {
    for _ in 0..100 {
        let port = free_tcp_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on 127.0.0.1 after 100 tries");
}

/// Sends SIGTERM to a child (a graceful stop request).
#[allow(unsafe_code)]
pub fn terminate(child: &Child) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
pub async fn bind_udp_tcp() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    for _ in 0..20 {
        let port = free_tcp_udp_port();
        if let Some(pair) = bind_udp_tcp_on(port).await {
            return pair;
        }
    }
    panic!("could not bind one loopback port for both UDP and TCP");
}

/// A UDP socket and a TCP listener on 127.0.0.1:`port`, if both are free.
pub async fn bind_udp_tcp_on(
    port: u16,
) -> Option<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let udp = tokio::net::UdpSocket::bind(("127.0.0.1", port))
        .await
        .ok()?;
    let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .ok()?;
    Some((udp, tcp))
}

/// Path of a binary of another workspace crate (`registrator`, `skydns`, `logspout`), built
/// into the same target directory as the running test (`cargo test --workspace` builds them).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("path of the running test binary");
    // target/<profile>/deps/<test binary> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p {name}` (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// A workspace binary running as a child process; stopped with SIGTERM (then SIGKILL after
/// 10 s) and reaped when dropped. Its output goes to a log file, printed if a test panics.
#[derive(Debug)]
pub struct RunningBinary {
    name: String,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl RunningBinary {
    /// Starts [`workspace_binary`]`(name)` with `args` and extra environment variables.
    pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_without(name, args, env, &[])
    }

    /// As [`start`](Self::start), with the variables in `remove` taken out of the inherited
    /// environment (say `RUST_LOG`, when a test looks at what is logged by default).
    pub fn start_without(name: &str, args: &[&str], env: &[(&str, &str)], remove: &[&str]) -> Self {
        let log = tempfile::NamedTempFile::new().expect("create a log file");
        let mut command = Command::new(workspace_binary(name));
        for variable in remove {
            command.env_remove(variable);
        }
        command
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(log.reopen().expect("reopen the log file"))
            .stderr(log.reopen().expect("reopen the log file"));
        let child = spawn_tied(command).unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// What the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Panics (showing its log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early with {status}:\n{}", self.name, self.log());
        }
    }

    /// Sends SIGTERM and waits up to 10 s for the exit; panics (showing the log) if the
    /// process is still running then.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = terminate(&self.child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not exit within 10 s of SIGTERM:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = terminate(&self.child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.name, self.log());
        }
    }
}
