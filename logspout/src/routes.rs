//! The set of active routes: adding (from URIs, the API or persisted files), removing,
//! persisting under `ROUTESPATH`, and handing each message to the routes that take it.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use common::Backoff;
use common::ratelimit::{RateLimitedLog, Report};
use prometheus::IntCounter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::filter::{route_matches_container, route_matches_source};
use crate::lines::MAX_DATAGRAM;
use crate::message::{ContainerInfo, Message};
use crate::metrics::Metrics;
use crate::multiline::Merger;
use crate::queue::RouteQueue;
use crate::render::{AdapterSettings, Renderer};
use crate::route::{Route, RouteError, Transport};
use crate::sender::Sender;
use crate::structured::{GELF_CHUNK_BYTES, GELF_MAX_CHUNKS, gelf_chunks};
use crate::tls::TlsSettings;

/// Everything a route needs besides its own definition.
#[derive(Debug, Clone)]
pub struct RouteContext {
    pub adapters: AdapterSettings,
    pub tls: TlsSettings,
    /// Bound of each route's queue, in bytes.
    pub queue_bytes: usize,
    /// Reconnect policy of the senders.
    pub backoff: Backoff,
    /// Connect, TLS handshake and write timeouts and keepalive of the senders.
    pub timeouts: crate::sender::Timeouts,
    /// `RETRY_COUNT`: failed retries after which a stalled route is reported at error level.
    pub retry_count: u32,
    pub metrics: Metrics,
}

/// Why a persisted route could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("route file {path}: {source}")]
pub struct PersistError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Renders messages of one route into its queue.
#[derive(Debug)]
struct RouteSink {
    id: String,
    address: String,
    renderer: Renderer,
    /// One message is one datagram: at most [`MAX_DATAGRAM`] bytes each.
    udp: bool,
    queue: Arc<RouteQueue>,
    /// This route's series of `lines_queued` and `lines_dropped` (looked up once).
    queued: IntCounter,
    dropped: IntCounter,
    /// This route's series of `udp_oversize`.
    udp_oversize: IntCounter,
    /// At most one "queue full" warning per route and interval, not one per dropped line.
    drop_log: RateLimitedLog,
}

/// A UDP message whose header leaves less room than this for the line is cut, not split.
const MIN_DATAGRAM_ROOM: usize = 1024;

impl RouteSink {
    /// Renders and queues a message (never waits); with `quietly`, the sender is woken later
    /// (see [`RouteSelection::wake`]). On UDP, a message that renders larger than a datagram
    /// is sent as several, each with its own header (counted).
    fn push(&self, message: &Message, quietly: bool) {
        let rendered = self.renderer.render(message);
        if self.udp && self.renderer.is_gelf_datagram() {
            self.push_gelf(rendered, quietly);
            return;
        }
        if self.udp && rendered.len() > MAX_DATAGRAM {
            self.udp_oversize.inc();
            for datagram in self.datagrams(message, rendered) {
                self.enqueue(Bytes::from(datagram), quietly);
            }
            return;
        }
        self.enqueue(Bytes::from(rendered), quietly);
    }

    /// A GELF message over UDP: one datagram, or GELF chunks (counted as oversize) queued as
    /// one entry the sender writes chunk by chunk; a message needing more than
    /// [`GELF_MAX_CHUNKS`] chunks is dropped (counted).
    fn push_gelf(&self, rendered: Vec<u8>, quietly: bool) {
        if rendered.len() <= GELF_CHUNK_BYTES {
            self.enqueue(Bytes::from(rendered), quietly);
            return;
        }
        self.udp_oversize.inc();
        match gelf_chunks(&rendered, rand::random()) {
            Some(chunks) => self.enqueue(Bytes::from(chunks), quietly),
            None => {
                self.dropped.inc();
                if self.drop_log.event(Instant::now()) != Report::Quiet {
                    tracing::warn!(route = %self.id, address = %self.address, bytes = rendered.len(),
                        "GELF message needs more than {GELF_MAX_CHUNKS} chunks, dropped");
                }
            }
        }
    }

    /// `message` (whose rendering is `rendered`, too large) as datagrams of at most
    /// [`MAX_DATAGRAM`] bytes: the line split (at a UTF-8 character boundary where there is
    /// one) into pieces that fit with the header, or the rendering cut when the header alone
    /// leaves no room.
    fn datagrams(&self, message: &Message, rendered: Vec<u8>) -> Vec<Vec<u8>> {
        let overhead = if self.renderer.is_structured() {
            // The line is escaped: measure what the object takes without it.
            let empty = Message {
                data: Bytes::new(),
                ..message.clone()
            };
            self.renderer.render(&empty).len()
        } else {
            rendered.len().saturating_sub(message.data.len())
        };
        let room = MAX_DATAGRAM.saturating_sub(overhead);
        if room < MIN_DATAGRAM_ROOM {
            return vec![cut_to_datagram(rendered)];
        }
        let mut out = Vec::new();
        let mut rest = message.data.clone();
        while !rest.is_empty() {
            let piece = rest.split_to(char_boundary_at_most(&rest, room));
            let part = Message {
                data: piece,
                ..message.clone()
            };
            self.push_piece(part, &mut out);
        }
        out
    }

    /// Renders one piece of a split line. A template that escapes the line (`toJSON`) can
    /// still make a piece too large: cut, except for structured adapters, whose piece is
    /// halved until it fits (a cut JSON document would be useless).
    fn push_piece(&self, part: Message, out: &mut Vec<Vec<u8>>) {
        let rendered = self.renderer.render(&part);
        if rendered.len() <= MAX_DATAGRAM || !self.renderer.is_structured() {
            out.push(cut_to_datagram(rendered));
            return;
        }
        let half = char_boundary_at_most(&part.data, part.data.len() / 2);
        if half == 0 || half >= part.data.len() {
            out.push(cut_to_datagram(rendered));
            return;
        }
        let mut first = part.data.clone();
        let second = first.split_off(half);
        for data in [first, second] {
            self.push_piece(
                Message {
                    data,
                    ..part.clone()
                },
                out,
            );
        }
    }

    /// Queues one rendered message, counting it and what the queue dropped for it.
    fn enqueue(&self, bytes: Bytes, quietly: bool) {
        let pushed = if quietly {
            self.queue.push_quietly(bytes)
        } else {
            self.queue.push(bytes)
        };
        self.queued.inc();
        if pushed.dropped > 0 {
            self.dropped.inc_by(pushed.dropped as u64);
            if self.drop_log.event(Instant::now()) != Report::Quiet {
                tracing::warn!(route = %self.id, address = %self.address, dropped_total = self.dropped.get(), "route queue full, dropped the oldest messages");
            }
        }
    }
}

/// A running route: its definition, renderer, queue and sender.
#[derive(Debug)]
pub struct ActiveRoute {
    pub route: Route,
    sink: Arc<RouteSink>,
    merger: Option<Arc<Merger>>,
    cancel: CancellationToken,
}

impl ActiveRoute {
    /// Hands a message to this route (never waits); the sender is woken by
    /// [`RouteSelection::wake`].
    fn offer(&self, message: &Message) {
        if !route_matches_source(&self.route, message.source) {
            return;
        }
        match &self.merger {
            Some(merger) => merger.feed(message, |m| self.sink.push(m, true)),
            None => self.sink.push(message, true),
        }
    }
}

/// Emits idle multiline groups of a route until it is removed.
async fn flush_idle_groups(merger: Arc<Merger>, sink: Arc<RouteSink>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(merger.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => merger.flush_idle(false, |m| sink.push(m, false)),
        }
    }
}

/// The routes of this process.
#[derive(Debug)]
pub struct RouteTable {
    ctx: RouteContext,
    routes: ArcSwap<Vec<Arc<ActiveRoute>>>,
    /// Serialises changes (readers use the `ArcSwap` snapshot without locking).
    changes: Mutex<()>,
    persist_dir: Option<PathBuf>,
    senders: TaskTracker,
}

/// The routes that take one container's lines, recomputed when the route set changes.
#[derive(Debug, Default)]
pub struct RouteSelection {
    snapshot: Option<Arc<Vec<Arc<ActiveRoute>>>>,
    matched: Vec<Arc<ActiveRoute>>,
}

impl RouteSelection {
    /// Wakes the senders of these routes for what [`RouteTable::dispatch`] queued: a pump calls
    /// this whenever it has no more lines at hand (and before it waits), so a sender writes a
    /// whole read's worth of lines at once.
    pub fn wake(&self) {
        for route in &self.matched {
            route.sink.queue.wake();
        }
    }
}

impl RouteTable {
    /// An empty table; routes are persisted in `persist_dir` if given.
    pub fn new(ctx: RouteContext, persist_dir: Option<PathBuf>) -> Self {
        Self {
            ctx,
            routes: ArcSwap::from_pointee(Vec::new()),
            changes: Mutex::new(()),
            persist_dir,
            senders: TaskTracker::new(),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }

    /// Sender tasks still running (those of removed or replaced routes end soon after).
    pub fn running_senders(&self) -> usize {
        self.senders.len()
    }

    /// Validates and starts a route. Its destination need not be reachable: the sender retries.
    pub fn add(&self, route: Route, persist: bool) -> Result<Route, AddRouteError> {
        let (route, spec) = route.validate()?;
        let options: HashMap<String, String> = route.options.clone().into_iter().collect();
        let renderer = Renderer::new(spec, &self.ctx.adapters, &options)?;
        let tls = if spec.transport.is_tls() {
            Some(
                self.ctx
                    .tls
                    .connector(&route.address)
                    .map_err(RouteError::from)?,
            )
        } else {
            None
        };
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        if persist {
            self.persist(&route)?;
        }
        let queue = Arc::new(RouteQueue::new(self.ctx.queue_bytes));
        let cancel = CancellationToken::new();
        let sink = Arc::new(RouteSink {
            id: route.id.clone(),
            address: route.address.clone(),
            renderer,
            udp: spec.transport == Transport::Udp,
            queue: queue.clone(),
            queued: self
                .ctx
                .metrics
                .lines_queued
                .with_label_values(&[&route.id]),
            dropped: self
                .ctx
                .metrics
                .lines_dropped
                .with_label_values(&[&route.id]),
            udp_oversize: self
                .ctx
                .metrics
                .udp_oversize
                .with_label_values(&[&route.id]),
            drop_log: RateLimitedLog::default(),
        });
        let merger = spec.multiline.then(|| {
            let capped = self
                .ctx
                .metrics
                .multiline_capped
                .with_label_values(&[&route.id]);
            Arc::new(Merger::new(self.ctx.adapters.multiline.clone()).counting(capped))
        });
        if let Some(merger) = &merger {
            tokio::spawn(flush_idle_groups(
                merger.clone(),
                sink.clone(),
                cancel.clone(),
            ));
        }
        let sender = Sender {
            route_id: route.id.clone(),
            address: route.address.clone(),
            transport: spec.transport,
            tls,
            queue: queue.clone(),
            metrics: self.ctx.metrics.clone(),
            backoff: self.ctx.backoff,
            timeouts: self.ctx.timeouts,
            retry_count: self.ctx.retry_count,
            datagram_chunks: (spec.transport == Transport::Udp
                && spec.kind == crate::route::AdapterKind::Gelf)
                .then_some(GELF_CHUNK_BYTES),
        };
        if spec.transport.is_relp() {
            self.senders.spawn(crate::relp::run(sender, cancel.clone()));
        } else {
            self.senders.spawn(sender.run(cancel.clone()));
        }
        let active = Arc::new(ActiveRoute {
            route: route.clone(),
            sink,
            merger,
            cancel,
        });
        let current = self.routes.load();
        // A route with this ID already (a persisted file naming an ID in use): the new one
        // replaces it, and the old one's sender and flush task stop.
        for old in current.iter().filter(|r| r.route.id == route.id) {
            old.cancel.cancel();
            tracing::info!(route = %route.id, "route replaced");
        }
        let mut routes: Vec<Arc<ActiveRoute>> = current
            .iter()
            .filter(|r| r.route.id != route.id)
            .cloned()
            .collect();
        routes.push(active);
        self.routes.store(Arc::new(routes));
        tracing::info!(route = %route.id, adapter = %route.adapter, address = %route.address, "route added");
        Ok(route)
    }

    /// Stops and forgets a route (and its file). False if there is no such route.
    pub fn remove(&self, id: &str) -> Result<bool, PersistError> {
        // Only IDs that `Route::validate` lets in can name a route, and so a file.
        if !crate::route::is_valid_route_id(id) {
            return Ok(false);
        }
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.routes.load_full();
        let Some(active) = current.iter().find(|r| r.route.id == id) else {
            return Ok(false);
        };
        active.cancel.cancel();
        let rest = current
            .iter()
            .filter(|r| r.route.id != id)
            .cloned()
            .collect();
        self.routes.store(Arc::new(rest));
        self.ctx.metrics.remove_route(id);
        if let Some(dir) = &self.persist_dir {
            let path = dir.join(format!("{id}.json"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(PersistError { path, source }),
            }
        }
        tracing::info!(route = %id, "route removed");
        Ok(true)
    }

    /// Every route, in the order they were added.
    pub fn list(&self) -> Vec<Route> {
        self.routes.load().iter().map(|r| r.route.clone()).collect()
    }

    pub fn get(&self, id: &str) -> Option<Route> {
        self.routes
            .load()
            .iter()
            .find(|r| r.route.id == id)
            .map(|r| r.route.clone())
    }

    /// Hands `message` to every route of `selection` (refreshed if the routes changed); the
    /// caller wakes their senders with [`RouteSelection::wake`].
    pub fn dispatch(&self, selection: &mut RouteSelection, message: &Message) {
        let current = self.routes.load();
        let stale = selection
            .snapshot
            .as_ref()
            .is_none_or(|s| !Arc::ptr_eq(s, &current));
        if stale {
            // What the routes being replaced got quietly must not wait for a wake.
            selection.wake();
            let snapshot = arc_swap::Guard::into_inner(current);
            selection.matched = snapshot
                .iter()
                .filter(|r| route_matches_container(&r.route, &message.container))
                .cloned()
                .collect();
            selection.snapshot = Some(snapshot);
        }
        for route in &selection.matched {
            route.offer(message);
        }
    }

    /// True when any route takes lines of `container` (used only for logging).
    pub fn any_route_for(&self, container: &ContainerInfo) -> bool {
        self.routes
            .load()
            .iter()
            .any(|r| route_matches_container(&r.route, container))
    }

    /// Loads the routes persisted in the routes directory (bad files are skipped with a warning).
    pub fn load_persisted(&self) -> usize {
        let Some(dir) = &self.persist_dir else {
            return 0;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut loaded = 0;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for path in paths {
            match load_route(&path) {
                Ok(route) => match self.add(route, false) {
                    Ok(_) => loaded += 1,
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "persisted route not usable, skipped")
                    }
                },
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "persisted route unreadable, skipped")
                }
            }
        }
        loaded
    }

    fn persist(&self, route: &Route) -> Result<(), PersistError> {
        let Some(dir) = &self.persist_dir else {
            return Ok(());
        };
        let path = dir.join(format!("{}.json", route.id));
        let error = |source| PersistError {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_string_pretty(route).map_err(|e| error(e.into()))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(error)?;
        file.write_all(json.as_bytes()).map_err(error)?;
        Ok(())
    }

    /// Closes every queue and waits (at most `timeout`) for the senders to deliver what is
    /// queued. Returns the number of messages left undelivered.
    pub async fn flush(&self, timeout: Duration) -> usize {
        let routes = self.routes.load_full();
        for route in routes.iter() {
            if let Some(merger) = &route.merger {
                merger.flush_idle(true, |m| route.sink.push(m, false));
            }
            route.sink.queue.close();
        }
        self.senders.close();
        if tokio::time::timeout(timeout, self.senders.wait())
            .await
            .is_err()
        {
            for route in routes.iter() {
                route.cancel.cancel();
            }
        }
        routes.iter().map(|r| r.sink.queue.len()).sum()
    }
}

fn load_route(path: &Path) -> Result<Route, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// Why a route could not be added.
#[derive(Debug, thiserror::Error)]
pub enum AddRouteError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Persist(#[from] PersistError),
}

/// The largest index `<= at` (and `> 0`) that is no UTF-8 continuation byte of `data`, so that
/// a split there keeps characters whole; `at` itself when there is none nearby (not UTF-8).
fn char_boundary_at_most(data: &[u8], at: usize) -> usize {
    if at >= data.len() {
        return data.len();
    }
    (at.saturating_sub(3)..=at)
        .rev()
        .find(|&i| i > 0 && data[i] & 0xC0 != 0x80)
        .unwrap_or(at)
}

/// Cuts a rendered message to [`MAX_DATAGRAM`] bytes, keeping its final LF.
fn cut_to_datagram(mut rendered: Vec<u8>) -> Vec<u8> {
    if rendered.len() > MAX_DATAGRAM {
        let newline = rendered.last() == Some(&b'\n');
        rendered.truncate(MAX_DATAGRAM);
        if newline {
            rendered[MAX_DATAGRAM - 1] = b'\n';
        }
    }
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Source;
    use crate::render::AdapterSettings;
    use crate::route::AdapterSpec;
    use chrono::Utc;

    fn context() -> RouteContext {
        RouteContext {
            adapters: AdapterSettings::default(),
            tls: TlsSettings::default(),
            queue_bytes: 1 << 20,
            backoff: Backoff::default(),
            timeouts: crate::sender::Timeouts::DEFAULT,
            retry_count: 10,
            metrics: Metrics::new().unwrap(),
        }
    }

    fn message(data: Vec<u8>) -> Message {
        Message {
            container: Arc::new(ContainerInfo {
                id: "c".repeat(64),
                name: "/web".into(),
                ..ContainerInfo::default()
            }),
            source: Source::Stdout,
            data: Bytes::from(data),
            time: Utc::now(),
        }
    }

    /// A sink of `adapter` whose queue the test reads (no sender).
    fn sink(adapter: &str) -> RouteSink {
        let (spec, _) = AdapterSpec::resolve(adapter).unwrap();
        let counter = |name: &str| IntCounter::new(name, "test").unwrap();
        RouteSink {
            id: "r".into(),
            address: "127.0.0.1:9".into(),
            renderer: Renderer::new(spec, &AdapterSettings::default(), &HashMap::new()).unwrap(),
            udp: spec.transport == Transport::Udp,
            queue: Arc::new(RouteQueue::new(1 << 22)),
            queued: counter("queued"),
            dropped: counter("dropped"),
            udp_oversize: counter("oversize"),
            drop_log: RateLimitedLog::default(),
        }
    }

    async fn queued(sink: &RouteSink) -> Vec<Bytes> {
        sink.queue.close();
        sink.queue
            .batch(0, usize::MAX)
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn json_over_udp_splits_a_line_into_whole_objects() {
        // Quotes double in JSON: a MAX_LINE piece of them renders far above a datagram.
        let data = vec![b'"'; crate::lines::MAX_LINE];
        for adapter in ["json", "logstash"] {
            let json = sink(adapter);
            json.push(&message(data.clone()), false);
            let datagrams = queued(&json).await;
            assert!(
                datagrams.len() > 2,
                "{adapter}: {} datagrams",
                datagrams.len()
            );
            let mut joined = String::new();
            for d in &datagrams {
                assert!(d.len() <= MAX_DATAGRAM, "datagram of {} bytes", d.len());
                let v: serde_json::Value = serde_json::from_slice(d).unwrap();
                joined.push_str(v["message"].as_str().unwrap());
            }
            assert_eq!(
                joined.as_bytes(),
                data,
                "{adapter}: the pieces are the line"
            );
            assert_eq!(json.udp_oversize.get(), 1);
        }
    }

    #[tokio::test]
    async fn gelf_over_udp_is_chunked_as_one_message_or_dropped() {
        let gelf = sink("gelf");
        gelf.push(&message(b"small".to_vec()), false);
        gelf.push(&message(vec![b'x'; 20_000]), false);
        // 128 chunks of 8,180 bytes cannot hold 200,000 NULs escaped as \u0000 each (a
        // merged multiline group can be that long).
        gelf.push(&message(vec![0; 200_000]), false);
        let queued = queued(&gelf).await;
        assert_eq!(queued.len(), 2, "the third was dropped");
        assert!(queued[0].starts_with(b"{"));
        let chunks: Vec<&[u8]> = queued[1].chunks(GELF_CHUNK_BYTES).collect();
        assert_eq!(chunks.len(), 3);
        let mut joined = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk[..2], [0x1e, 0x0f]);
            assert_eq!(chunk[2..10], chunks[0][2..10], "one message ID");
            assert_eq!((usize::from(chunk[10]), chunk[11]), (i, 3));
            joined.extend_from_slice(&chunk[12..]);
        }
        let v: serde_json::Value = serde_json::from_slice(&joined).unwrap();
        assert_eq!(v["short_message"].as_str().map(str::len), Some(20_000));
        assert_eq!(gelf.udp_oversize.get(), 2);
        assert_eq!(gelf.dropped.get(), 1);
        assert_eq!(gelf.queued.get(), 2);
    }

    #[tokio::test]
    async fn udp_messages_larger_than_a_datagram_are_split_into_datagrams() {
        // A full-size piece (MAX_LINE bytes) of ASCII, and one of 2-byte characters.
        for data in [
            vec![b'x'; crate::lines::MAX_LINE],
            "é".repeat(40_000).into_bytes(),
        ] {
            let raw = sink("raw");
            raw.push(&message(data.clone()), false);
            let datagrams = queued(&raw).await;
            assert!(
                datagrams.len() > 1,
                "one datagram of {}",
                datagrams[0].len()
            );
            let mut joined = Vec::new();
            for d in &datagrams {
                assert!(d.len() <= MAX_DATAGRAM, "datagram of {} bytes", d.len());
                let line = d.strip_suffix(b"\n").unwrap();
                assert!(std::str::from_utf8(line).is_ok(), "a character was cut");
                joined.extend_from_slice(line);
            }
            assert_eq!(joined, data, "the pieces are the line, in order");
            assert_eq!(raw.udp_oversize.get(), 1);

            let syslog = sink("syslog");
            syslog.push(&message(data.clone()), false);
            let datagrams = queued(&syslog).await;
            assert!(datagrams.len() > 1);
            assert!(datagrams.iter().all(|d| d.len() <= MAX_DATAGRAM));
            assert!(datagrams.iter().all(|d| d.starts_with(b"<14>1 ")));
        }
        // TCP has no such bound; a message that fits is untouched.
        let tcp = sink("raw+tcp");
        tcp.push(&message(vec![b'y'; crate::lines::MAX_LINE]), false);
        assert_eq!(queued(&tcp).await.len(), 1);
        let small = sink("syslog");
        small.push(&message(b"hello".to_vec()), false);
        assert_eq!(queued(&small).await.len(), 1);
        assert_eq!(small.udp_oversize.get(), 0);
    }

    #[test]
    fn datagrams_are_cut_at_character_boundaries_and_keep_their_newline() {
        assert_eq!(char_boundary_at_most("aé".as_bytes(), 2), 1);
        assert_eq!(char_boundary_at_most("aé".as_bytes(), 1), 1);
        assert_eq!(char_boundary_at_most(b"abc", 5), 3);
        assert_eq!(
            char_boundary_at_most(&[0x80; 8], 4),
            4,
            "not UTF-8: cut anyway"
        );
        let mut long = vec![b'z'; MAX_DATAGRAM + 10];
        long.push(b'\n');
        let cut = cut_to_datagram(long);
        assert_eq!((cut.len(), cut.last()), (MAX_DATAGRAM, Some(&b'\n')));
    }

    #[tokio::test]
    async fn a_route_added_with_an_existing_id_replaces_the_old_one_and_its_sender() {
        // A listener that never accepts: each sender connects and waits for lines.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let table = RouteTable::new(context(), None);
        let route = Route {
            id: "dup".into(),
            adapter: "raw+tcp".into(),
            address,
            ..Route::default()
        };
        table.add(route.clone(), false).unwrap();
        table.add(route.clone(), false).unwrap();
        table.add(route, false).unwrap();
        assert_eq!(table.list().len(), 1);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while table.running_senders() > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} senders still run for one route",
                table.running_senders()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(table.running_senders(), 1);
        assert!(table.remove("dup").unwrap());
    }
}
