//! No outbound step waits forever: a TLS destination that accepts TCP and never answers the
//! handshake, a TCP connect that never completes (a listener whose accept backlog is full, so
//! further SYNs are dropped), a peer that stops reading, and a destination that refuses for a
//! while. Each time the route stalls once (one warning, `logspout_route_stalled`), keeps every
//! queued line, and delivers it once the destination accepts again. The binary with a real
//! container for TLS; the library's sender with real loopback sockets for the others.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use harness::tls::make_certificates;
use harness::{ContainerSpec, TestDocker, wait_until};
use logspout::config::Config;
use logspout::metrics::Metrics;
use logspout::queue::RouteQueue;
use logspout::route::Transport;
use logspout::sender::{Sender, Timeouts};
use support::{Logspout, WAIT, unique};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Short timeouts, so that each test runs in seconds.
const SHORT: Timeouts = Timeouts {
    connect: Duration::from_secs(1),
    handshake: Duration::from_secs(1),
    write: Duration::from_secs(1),
    keepalive: Some(Duration::from_secs(1)),
};

type Store = Arc<Mutex<Vec<String>>>;

/// Reads lines from `stream` into `store` until the peer closes.
async fn collect<S: tokio::io::AsyncRead + Unpin>(stream: S, store: Store) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        store.lock().unwrap().push(line);
    }
}

/// Line `i` as the tests queue it: a fixed width, so a line cut short is recognisable.
fn line(i: usize) -> String {
    format!("line-{i:06} {}", "x".repeat(80))
}

/// How often each line number arrived, and how many lines arrived cut short or garbled.
fn tally(received: &[String]) -> (BTreeMap<usize, usize>, usize) {
    let mut counts = BTreeMap::new();
    let mut partial = 0;
    for text in received {
        let number = text
            .strip_prefix("line-")
            .and_then(|rest| rest.get(..6))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *text == line(*n));
        match number {
            Some(n) => *counts.entry(n).or_insert(0) += 1,
            None => partial += 1,
        }
    }
    (counts, partial)
}

/// A route's sender running in-process against `address`, with logspout's configured
/// reconnect policy and [`SHORT`] timeouts.
struct Route {
    queue: Arc<RouteQueue>,
    metrics: Metrics,
    cancel: CancellationToken,
}

const ROUTE: &str = "stalltest";

impl Route {
    fn start(address: SocketAddr, queue_bytes: usize) -> Self {
        let config = Config::from_lookup(None, |_| None, None).unwrap();
        let queue = Arc::new(RouteQueue::new(queue_bytes));
        let metrics = Metrics::new().unwrap();
        let cancel = CancellationToken::new();
        let sender = Sender {
            route_id: ROUTE.into(),
            address: address.to_string(),
            transport: Transport::Tcp,
            tls: None,
            queue: queue.clone(),
            metrics: metrics.clone(),
            backoff: config.sender_backoff,
            timeouts: SHORT,
            retry_count: config.retry_count,
            datagram_chunks: None,
        };
        tokio::spawn(sender.run(cancel.clone()));
        Self {
            queue,
            metrics,
            cancel,
        }
    }

    fn push(&self, lines: std::ops::RangeInclusive<usize>) {
        for i in lines {
            self.queue
                .push_quietly(Bytes::from(format!("{}\n", line(i))));
        }
        self.queue.wake();
    }

    fn stalled(&self) -> i64 {
        self.metrics.route_stalled.with_label_values(&[ROUTE]).get()
    }

    fn stalls(&self) -> u64 {
        self.metrics.route_stalls.with_label_values(&[ROUTE]).get()
    }

    fn reconnects(&self) -> u64 {
        self.metrics.reconnects.with_label_values(&[ROUTE]).get()
    }

    fn dropped(&self) -> u64 {
        self.metrics.lines_dropped.with_label_values(&[ROUTE]).get()
    }

    /// Waits until the route reports a stall and has retried at least `attempts` times.
    async fn wait_stalled(&self, attempts: u64) {
        wait_until("the route reported as stalled, retrying", WAIT, || async {
            (self.stalled() == 1 && self.reconnects() >= attempts).then_some(())
        })
        .await;
    }

    /// Waits until the stall is over (the gauge is set right after the first write).
    async fn wait_recovered(&self) {
        wait_until("the route no longer stalled", WAIT, || async {
            (self.stalled() == 0).then_some(())
        })
        .await;
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Waits until `store` holds `count` complete, distinct lines.
async fn wait_lines(store: &Store, count: usize) {
    wait_until(&format!("{count} distinct lines"), WAIT, || async {
        (tally(&store.lock().unwrap()).0.len() >= count).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_tls_handshake_stalls_the_route_once_and_every_line_arrives_once() {
    const LINES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());

    // A destination that accepts TCP and never says a word of TLS.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hung.local_addr().unwrap().port();
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let accepted = Arc::new(AtomicUsize::new(0));
    let hung_task = tokio::spawn({
        let (held, accepted) = (held.clone(), accepted.clone());
        async move {
            while let Ok((stream, _)) = hung.accept().await {
                accepted.fetch_add(1, Ordering::Relaxed);
                held.lock().unwrap().push(stream);
            }
        }
    });

    let docker = TestDocker::connect().await;
    let name = unique("ls-hung-tls");
    let routes = format!("syslog+tls://localhost:{port}?filter.name={name}");
    let ca = dir.path().join("ca.pem").display().to_string();
    let env = [
        ("LOGSPOUT_TLS_CA_CERTS", ca.as_str()),
        ("LOGSPOUT_TLS_DISABLE_SYSTEM_ROOTS", "true"),
        ("LOGSPOUT_CONNECT_TIMEOUT", "1s"),
        ("LOGSPOUT_TLS_HANDSHAKE_TIMEOUT", "1s"),
        ("LOGSPOUT_WRITE_TIMEOUT", "1s"),
    ];
    let logspout = Logspout::start(Some(&routes), &env).await;
    let script =
        format!("i=1; while [ $i -le {LINES} ]; do echo line-$i; i=$((i+1)); done; sleep 60");
    let _container = docker.run(ContainerSpec::shell(&script).name(&name)).await;

    // The handshake times out again and again; the route shows as stalled.
    wait_until("handshakes given up and retried", WAIT, || async {
        (accepted.load(Ordering::Relaxed) >= 3
            && logspout.metric("logspout_route_stalled{").await == 1.0)
            .then_some(())
    })
    .await;

    // The hung destination goes away (its connections with it); a real one takes the port.
    hung_task.abort();
    let _ = hung_task.await;
    held.lock().unwrap().clear();
    let config = harness::tls::server_config(dir.path(), false);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let store: Store = Arc::default();
    tokio::spawn({
        let store = store.clone();
        async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, store) = (acceptor.clone(), store.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        collect(tls, store).await;
                    }
                });
            }
        }
    });

    let numbers = || -> Vec<usize> {
        store
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.rsplit_once(" line-"))
            .filter_map(|(_, n)| n.parse().ok())
            .collect()
    };
    wait_until(&format!("{LINES} lines over TLS"), WAIT, || async {
        (numbers().len() >= LINES).then_some(())
    })
    .await;
    wait_until("the stall gauge back to 0", WAIT, || async {
        (logspout.metric("logspout_route_stalled{").await == 0.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // room for a stray duplicate
    assert_eq!(
        numbers(),
        (1..=LINES).collect::<Vec<_>>(),
        "every line once, in order"
    );
    let log = logspout.log();
    let warnings = log.lines().filter(|l| l.contains("route stalled,")).count();
    assert_eq!(warnings, 1, "one stall warning:\n{log}");
    assert!(log.contains("TLS handshake with 127.0.0.1"), "{log}");
    assert_eq!(log.matches("route recovered after").count(), 1, "{log}");
    assert_eq!(logspout.metric("logspout_route_stalls_total").await, 1.0);
    assert_eq!(
        logspout.metric("logspout_route_lines_dropped_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_that_never_completes_times_out_and_delivers_once_accepted() {
    // A listener with a backlog of 0 whose queue is filled by connections nobody accepts: the
    // kernel drops further SYNs, so a connect neither succeeds nor fails.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    let full = loop {
        assert!(fillers.len() < 64, "the accept backlog never filled");
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(stream) => fillers.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break true,
            Err(e) => panic!("filling the backlog: {e}"),
        }
    };
    assert!(full);

    let route = Route::start(addr, 1 << 20);
    route.push(1..=300);
    // Each attempt is given up after the connect timeout and retried.
    route.wait_stalled(2).await;

    // The destination accepts again.
    socket.set_nonblocking(true).unwrap();
    let listener = TcpListener::from_std(socket.into()).unwrap();
    let store: Store = Arc::default();
    tokio::spawn({
        let store = store.clone();
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(collect(stream, store.clone()));
            }
        }
    });
    wait_lines(&store, 300).await;
    route.wait_recovered().await;
    drop(fillers);
    let (counts, partial) = tally(&store.lock().unwrap());
    assert_eq!(partial, 0);
    assert!(
        counts.iter().all(|(_, c)| *c == 1),
        "nothing was written before the connect: no line twice"
    );
    assert_eq!(route.stalls(), 1);
    assert_eq!(route.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_left_after_the_write_timeout() {
    // More than the kernel buffers of one connection take (up to 4 MiB of send buffer).
    const LINES: usize = 200_000;
    // Accepts and does not read (small receive buffers fill quickly) until told to read again;
    // then it reads every connection, also those it held.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(16).unwrap();
    socket.set_nonblocking(true).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let listener = TcpListener::from_std(socket.into()).unwrap();
    let store: Store = Arc::default();
    let reading = Arc::new(AtomicBool::new(false));
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let (store, reading, held, connections) = (
            store.clone(),
            reading.clone(),
            held.clone(),
            connections.clone(),
        );
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, Ordering::Relaxed);
                let mut held = held.lock().unwrap();
                if reading.load(Ordering::Relaxed) {
                    tokio::spawn(collect(stream, store.clone()));
                } else {
                    held.push(stream);
                }
            }
        }
    });

    let route = Route::start(addr, 64 << 20);
    route.push(1..=LINES);
    // The write times out, the sender reconnects (and stalls on the next connection too).
    route.wait_stalled(1).await;
    wait_until("a second connection", WAIT, || async {
        (connections.load(Ordering::Relaxed) >= 2).then_some(())
    })
    .await;

    // The reader returns.
    {
        let mut held = held.lock().unwrap();
        reading.store(true, Ordering::Relaxed);
        for stream in held.drain(..) {
            tokio::spawn(collect(stream, store.clone()));
        }
    }
    wait_lines(&store, LINES).await;
    route.wait_recovered().await;
    let (counts, partial) = tally(&store.lock().unwrap());
    assert_eq!(counts.len(), LINES);
    // At least once: at most the batch being written when a connection was given up comes twice
    // (and its first copy may be cut short).
    let losses = connections.load(Ordering::Relaxed) - 1;
    let doubled: usize = counts.values().map(|c| c - 1).sum();
    let per_batch = 64 * 1024 / (line(0).len() + 1) + 1;
    assert!(
        doubled <= losses * per_batch,
        "{doubled} doubled lines over {losses} lost connections"
    );
    assert!(partial <= losses, "{partial} cut lines, {losses} losses");
    // Reported as one stall, or as one per connection given up when a held connection took
    // writes (into its kernel buffers) for longer than the write timeout before filling up,
    // which counts as a recovery: that happens on a loaded machine.
    let stalls = route.stalls();
    assert!(
        (1..=losses as u64).contains(&stalls),
        "{stalls} stalls over {losses} lost connections"
    );
    assert_eq!(route.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_destination_is_reported_once_and_gets_every_line_when_back() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe); // Nothing listens: every connect is refused.

    let route = Route::start(addr, 1 << 20);
    route.push(1..=150);
    route.wait_stalled(5).await;
    route.push(151..=300);

    let listener = TcpListener::bind(addr).await.unwrap();
    let store: Store = Arc::default();
    tokio::spawn({
        let store = store.clone();
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(collect(stream, store.clone()));
            }
        }
    });
    wait_lines(&store, 300).await;
    route.wait_recovered().await;
    let (counts, partial) = tally(&store.lock().unwrap());
    assert_eq!(partial, 0);
    assert!(counts.values().all(|c| *c == 1), "a line came twice");
    assert_eq!(route.stalls(), 1, "many refused attempts, one stall");
    assert_eq!(route.dropped(), 0);
}
