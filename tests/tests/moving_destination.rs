//! A route's destination moves and logspout follows it through DNS: the `logspout` image sends a
//! container's numbered lines to `syslog+tcp://rsyslog.movetest.local:<port>`, a name that the
//! `skydns` image answers from a test etcd. The record is moved to another receiver and the old
//! one goes away; logspout looks the name up again when it reconnects, the lines go on at the new
//! address, and none is lost or repeated across the move. Then the destination goes away first
//! and the record moves while logspout is retrying: the next attempt reaches the new address.
//! Everything listens on loopback: skydns on an address of its own (port 53, since the
//! container's resolver asks port 53), forwarding to a fake upstream, never to the machine's
//! resolver; the receivers on three loopback addresses with one port.

#![allow(clippy::unwrap_used)] // helpers of tests: a panic is a failed assertion

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{KeySchema, ServiceRecord};
use harness::dns::Transport;
use harness::docker::{HARNESS_LABEL, OWNER_LABEL};
use harness::images::{build_images, docker_cli as docker, docker_cli_ok as docker_ok};
use harness::syslog::Framing;
use harness::{
    ContainerSpec, DnsClient, EtcdServer, FakeUpstream, SyslogMessage, TestDocker, wait_until,
};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
const VERSION: &str = env!("CARGO_PKG_VERSION");
const DOMAIN: &str = "movetest.local.";
const NAME: &str = "rsyslog.movetest.local";
/// The three places the destination lives, one after the other.
const ADDR_A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const ADDR_C: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// How long a stopping receiver keeps reading after its FIN, waiting for the sender's.
const DRAIN: Duration = Duration::from_secs(30);

/// Containers started with the docker CLI (options `TestDocker` has no builder for: `--dns`,
/// volumes). They carry the harness labels, so a killed test's leftovers are swept, and are
/// removed on drop; their logs are printed if the test fails.
struct CliContainers(Vec<String>);

impl CliContainers {
    /// `docker run -d` with the harness labels; returns the name.
    async fn run(&mut self, name: &str, options: &[&str], image: &str, args: &[&str]) -> String {
        let _ = docker(&["rm", "-f", name]).await;
        let owner = format!("{OWNER_LABEL}={}", std::process::id());
        let harness = format!("{HARNESS_LABEL}=1");
        let mut command = vec![
            "run", "-d", "--pull", "never", "--name", name, "--label", &harness, "--label", &owner,
        ];
        command.extend_from_slice(options);
        command.push(image);
        command.extend_from_slice(args);
        self.0.push(name.to_owned());
        docker_ok(&command).await;
        name.to_owned()
    }
}

impl Drop for CliContainers {
    fn drop(&mut self) {
        for name in &self.0 {
            if std::thread::panicking()
                && let Ok(logs) = std::process::Command::new("docker")
                    .args(["logs", "--tail", "200", name])
                    .output()
            {
                eprintln!(
                    "---- {name} ----\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v", name])
                .output();
        }
    }
}

/// Messages a receiver got, and how many of its connections are still open.
#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<SyslogMessage>>,
    accepted: AtomicUsize,
    open: AtomicUsize,
}

/// A syslog-over-TCP receiver on one loopback address (newline-terminated frames, logspout's
/// default `traditional` framing).
/// Stopping it closes its listener, so a connect to its address is refused, and closes each
/// connection the way a server that shuts down cleanly does: it sends its FIN and reads on until
/// the sender closes too, so nothing the sender wrote before it noticed is lost.
struct Receiver {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Receiver {
    fn start(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let inbox = Arc::new(Inbox::default());
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(listener, inbox.clone(), stop.clone()));
        Self {
            addr,
            inbox,
            stop,
            tasks,
        }
    }

    fn ip(&self) -> Ipv4Addr {
        match self.addr.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => panic!("receivers listen on IPv4, not {ip}"),
        }
    }

    /// The numbers of the lines carrying `marker`, in arrival order.
    fn numbers(&self, marker: &str) -> Vec<u64> {
        self.inbox
            .messages
            .lock()
            .unwrap()
            .iter()
            .filter_map(|m| line_number(&m.msg, marker))
            .collect()
    }

    async fn wait_for_lines(&self, marker: &str, count: usize) -> Vec<u64> {
        wait_until(&format!("{count} lines at {}", self.addr), WAIT, || async {
            let numbers = self.numbers(marker);
            (numbers.len() >= count).then_some(numbers)
        })
        .await
    }

    /// Closes the listener and starts closing every connection; returns once the listener is
    /// closed.
    async fn stop(&mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until every connection of a stopped receiver has been closed by the sender too,
    /// then returns the numbers it got: its final list.
    async fn drained(&self, marker: &str) -> Vec<u64> {
        wait_until(
            &format!("the sender to close its connection to {}", self.addr),
            DRAIN + WAIT,
            || async { (self.inbox.open.load(Ordering::SeqCst) == 0).then_some(()) },
        )
        .await;
        self.numbers(marker)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept(listener: TcpListener, inbox: Arc<Inbox>, stop: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    inbox.accepted.fetch_add(1, Ordering::SeqCst);
                    inbox.open.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(read_frames(stream, inbox.clone(), stop.clone()));
                }
            }
        }
    }
}

async fn read_frames(mut stream: TcpStream, inbox: Arc<Inbox>, stop: CancellationToken) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut closing = false;
    loop {
        let read = if closing {
            tokio::time::timeout(DRAIN, stream.read(&mut chunk))
                .await
                .unwrap_or(Ok(0))
        } else {
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    let _ = stream.shutdown().await;
                    closing = true;
                    continue;
                }
                read = stream.read(&mut chunk) => read,
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let message = SyslogMessage::parse(
                        &buf[..end],
                        Transport::Tcp,
                        Framing::NewlineTerminated,
                    );
                    inbox.messages.lock().unwrap().push(message);
                    buf.drain(..=end);
                }
            }
        }
    }
    inbox.open.fetch_sub(1, Ordering::SeqCst);
}

/// `<marker> line <n>` → n.
fn line_number(msg: &str, marker: &str) -> Option<u64> {
    msg.trim_end()
        .strip_prefix(marker)?
        .strip_prefix(" line ")?
        .parse()
        .ok()
}

/// Three TCP listeners with one port, on [`ADDR_A`], [`ADDR_B`] and [`ADDR_C`].
async fn listeners() -> [TcpListener; 3] {
    for _ in 0..50 {
        let a = TcpListener::bind((ADDR_A, 0)).await.unwrap();
        let port = a.local_addr().unwrap().port();
        let (Ok(b), Ok(c)) = (
            TcpListener::bind((ADDR_B, port)).await,
            TcpListener::bind((ADDR_C, port)).await,
        ) else {
            continue;
        };
        return [a, b, c];
    }
    panic!("no port free on {ADDR_A}, {ADDR_B} and {ADDR_C} after 50 tries");
}

/// A loopback address of this test process's own for skydns, which must use port 53.
fn skydns_ip() -> Ipv4Addr {
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        53,
        u8::try_from(pid / 250 % 250).unwrap() + 1,
        u8::try_from(pid % 250).unwrap() + 1,
    )
}

/// The A answers skydns gives for [`NAME`]; empty if it does not answer (yet).
async fn answers(dns: &DnsClient) -> Vec<Ipv4Addr> {
    let Ok(reply) = dns.udp(&format!("{NAME}."), RecordType::A).await else {
        return Vec::new();
    };
    harness::dns::a_addrs(&reply)
}

/// Points [`NAME`] at `ip` in etcd and waits until skydns answers with it alone.
async fn move_record(etcd: &mut etcd_client::Client, dns: &DnsClient, ip: Ipv4Addr, port: u16) {
    let key = KeySchema::default().key_for(NAME).unwrap();
    let value = ServiceRecord::new(ip.to_string(), port).to_json().unwrap();
    etcd.put(key, value, None).await.unwrap();
    wait_until(
        &format!("skydns to answer {NAME} with {ip}"),
        WAIT,
        || async { (answers(dns).await == [ip]).then_some(()) },
    )
    .await;
}

/// `GET <path>` on 127.0.0.1:`port`: (status, body); `None` if nothing answers.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    harness::http::http_get(SocketAddr::from(([127, 0, 0, 1], port)), path)
        .await
        .ok()
}

/// `logspout_route_reconnects_total`, summed over the routes (there is one); 0 before any.
async fn reconnects(port: u16) -> u64 {
    let (status, body) = http_get(port, "/metrics").await.expect("logspout /metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    assert!(
        body.contains("logspout_attached_containers"),
        "not logspout's metrics:\n{body}"
    );
    // A route's series appears with its first reconnect.
    harness::http::metric_sum(&body, "logspout_route_reconnects_total{") as u64
}

/// `numbers` are `first, first + 1, …` (each line once, none missing, in order).
fn assert_consecutive(what: &str, numbers: &[u64], first: u64) {
    let expected: Vec<u64> = (first..first + numbers.len() as u64).collect();
    assert_eq!(
        numbers, expected,
        "{what}: expected every line once, in order, from line {first}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_follows_its_destination_when_the_dns_record_moves() {
    build_images();
    let pid = std::process::id();
    let marker = format!("movetest-{pid}");
    let emitter_name = format!("harness-movetest-{pid}-emitter");
    let mut containers = CliContainers(Vec::new());

    // The receivers, all on one port: A first, B after the first move, C after the second.
    let [listener_a, listener_b, listener_c] = listeners().await;
    let port = listener_a.local_addr().unwrap().port();
    let mut receiver_a = Receiver::start(listener_a);
    let mut receiver_b = Receiver::start(listener_b);
    let receiver_c = Receiver::start(listener_c);

    // etcd with the record pointing at A; skydns serving it on its own loopback address,
    // forwarding anything else to a fake upstream on loopback.
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    let upstream = FakeUpstream::start().await;
    let dns_ip = skydns_ip();
    let dns = DnsClient::new(SocketAddr::from((dns_ip, 53))).with_timeout(Duration::from_secs(1));
    let skydns = containers
        .run(
            &format!("harness-movetest-{pid}-skydns"),
            // The image runs as nobody; on the host's network port 53 needs root.
            &["--network", "host", "--user", "0"],
            &format!("skydns:{VERSION}"),
            &[
                "-addr",
                &format!("{dns_ip}:53"),
                "-domain",
                DOMAIN,
                "-machines",
                &etcd.endpoint(),
                "-nameservers",
                &upstream.addr().to_string(),
            ],
        )
        .await;
    move_record(&mut client, &dns, receiver_a.ip(), port).await;

    // logspout on the host's network, resolving through skydns alone.
    let http_port = harness::process::free_tcp_port();
    let logspout = containers
        .run(
            &format!("harness-movetest-{pid}-logspout"),
            &[
                "--network",
                "host",
                "--dns",
                &dns_ip.to_string(),
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-e",
                &format!("PORT={http_port}"),
                "-e",
                "HTTP_BIND_ADDRESS=127.0.0.1",
            ],
            &format!("logspout:{VERSION}"),
            &[&format!(
                "syslog+tcp://{NAME}:{port}?filter.name={emitter_name}"
            )],
        )
        .await;
    let resolv_conf = docker_ok(&["inspect", "-f", "{{.ResolvConfPath}}", &logspout]).await;
    let resolv_conf = std::fs::read_to_string(&resolv_conf).unwrap();
    let nameservers: Vec<&str> = resolv_conf
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .map(str::trim)
        .collect();
    assert_eq!(
        nameservers,
        [dns_ip.to_string()],
        "logspout must ask skydns only:\n{resolv_conf}"
    );
    wait_until("logspout to be healthy", WAIT, || async {
        (http_get(http_port, "/health").await?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(reconnects(http_port).await, 0);

    // A container printing numbered lines, five a second.
    let docker = TestDocker::connect().await;
    let _emitter = docker
        .run(
            ContainerSpec::shell(&format!(
                "i=0; while true; do i=$((i+1)); echo \"{marker} line $i\"; sleep 0.2; done"
            ))
            .name(&emitter_name),
        )
        .await;
    receiver_a.wait_for_lines(&marker, 5).await;

    // First move: the record goes to B while A still listens, then A shuts down. logspout
    // notices A's close before its next write, looks the name up again and connects to B at
    // its first attempt.
    move_record(&mut client, &dns, receiver_b.ip(), port).await;
    receiver_a.stop().await;
    let at_b = receiver_b.wait_for_lines(&marker, 5).await;
    let at_a = receiver_a.drained(&marker).await;
    assert_eq!(receiver_a.inbox.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(receiver_b.inbox.accepted.load(Ordering::SeqCst), 1);
    assert_consecutive("lines at A", &at_a, 1);
    let last_a = *at_a.last().unwrap();
    assert!(
        !at_b.iter().any(|n| at_a.contains(n)),
        "B got lines A already got: A {at_a:?}, B {at_b:?}"
    );
    assert_consecutive("lines at B after A", &at_b, last_a + 1);
    assert_eq!(
        reconnects(http_port).await,
        1,
        "one reconnect, straight to the new address"
    );

    // Second move: B goes away first, so logspout retries against B's address and is refused;
    // the record then moves to C and the next attempt, looking the name up again, reaches C.
    // Lines wait in the queue meanwhile.
    receiver_b.stop().await;
    let at_b = receiver_b.drained(&marker).await;
    wait_until("logspout to retry the vanished B", WAIT, || async {
        (reconnects(http_port).await >= 3).then_some(())
    })
    .await;
    move_record(&mut client, &dns, receiver_c.ip(), port).await;
    let at_c = receiver_c.wait_for_lines(&marker, 5).await;
    assert_eq!(receiver_c.inbox.accepted.load(Ordering::SeqCst), 1);
    assert_consecutive("lines at B after A", &at_b, last_a + 1);
    let last_b = *at_b.last().unwrap();
    assert!(
        !at_c.iter().any(|n| at_a.contains(n) || at_b.contains(n)),
        "C got lines A or B already got: B {at_b:?}, C {at_c:?}"
    );
    assert_consecutive("lines at C after B", &at_c, last_b + 1);

    // skydns answered the name itself: nothing about it went to the upstream.
    assert!(
        !upstream
            .queries()
            .iter()
            .any(|(name, _, _)| name.trim_end_matches('.') == NAME),
        "skydns forwarded {NAME}: {:?}",
        upstream.queries()
    );
    let running = docker_ok(&["inspect", "-f", "{{.State.Running}}", &skydns]).await;
    assert_eq!(running, "true", "skydns stopped");
}
