//! The pump: finds containers (running ones at start, then `start` events — subscribed before
//! listing, so none slips through), runs one supervisor task per attached container that reads
//! its log stream with Docker's timestamps, and resumes after any interruption exactly after
//! the last line shipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, EventMessage};
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, LogsOptions,
};
use chrono::{DateTime, Utc};
use common::Backoff;
use common::backoff::sleep_unless_cancelled;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::filter::Exclusions;
use crate::lines::{Line, LineAssembler};
use crate::message::{ContainerInfo, Message, Source};
use crate::position::Position;
use crate::positions_file;
use crate::routes::{RouteSelection, RouteTable};
use crate::tap::Taps;

/// How the pump selects containers and where it starts reading.
#[derive(Debug, Clone)]
pub struct PumpSettings {
    /// `BACKLOG=true`: containers not seen before are read from the beginning of their log.
    pub backlog: bool,
    /// `TAIL`: Docker's `tail` for the first attach of a container.
    pub tail: String,
    pub exclusions: Exclusions,
    /// `INACTIVITY_TIMEOUT`: re-attach when a stream was silent this long.
    pub inactivity_timeout: Option<Duration>,
    /// Pause policy between re-attaches and event-stream reconnects.
    pub backoff: Backoff,
    /// Where resume points are kept across restarts of logspout (`None`: in memory only).
    pub positions_file: Option<PathBuf>,
    /// `LOGSPOUT_MAX_LINE_BYTES`: Docker's 16 KiB pieces are joined into lines of up to this
    /// size; longer lines are cut into messages of this size (counted).
    pub max_line: usize,
}

/// How often resume points are written to the positions file.
const SAVE_INTERVAL: Duration = Duration::from_secs(5);
/// How often a streaming supervisor publishes its resume point.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

impl Default for PumpSettings {
    fn default() -> Self {
        Self {
            backlog: false,
            tail: "all".into(),
            exclusions: Exclusions::default(),
            inactivity_timeout: None,
            positions_file: None,
            max_line: crate::lines::MAX_LINE,
            backoff: Backoff {
                min_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(5),
                ..Backoff::default()
            },
        }
    }
}

/// Why a container is being attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// Found running when logspout started (or when the event stream was re-established).
    Listed,
    /// A `start`/`restart` event.
    Started,
}

#[derive(Debug)]
struct Attached {
    /// Swapped on `rename` and on re-attach.
    info: Arc<ArcSwap<ContainerInfo>>,
    /// A `start` arrived while the supervisor was still running: if it ends, attach again.
    restarted: bool,
}

#[derive(Debug, Default)]
struct PumpState {
    /// Attached containers by full ID.
    attached: HashMap<String, Attached>,
    /// Resume points, kept after a container stops (it may start again).
    positions: HashMap<String, Position>,
}

/// Reads every eligible container's logs into the route table.
#[derive(Debug)]
pub struct Pump {
    docker: Docker,
    routes: Arc<RouteTable>,
    taps: Arc<Taps>,
    settings: PumpSettings,
    state: Mutex<PumpState>,
    supervisors: TaskTracker,
    /// When this pump was created: containers started since are read from their start.
    born: DateTime<Utc>,
}

impl Pump {
    pub fn new(
        docker: Docker,
        routes: Arc<RouteTable>,
        taps: Arc<Taps>,
        settings: PumpSettings,
    ) -> Arc<Self> {
        let positions = match &settings.positions_file {
            Some(path) => match positions_file::load(path) {
                Ok(positions) => {
                    tracing::info!(file = %path.display(), containers = positions.len(), "resume points loaded");
                    positions
                }
                Err(e) => {
                    tracing::warn!(error = %e, "resume points not loaded");
                    HashMap::new()
                }
            },
            None => HashMap::new(),
        };
        Arc::new(Self {
            docker,
            routes,
            taps,
            settings,
            state: Mutex::new(PumpState {
                attached: HashMap::new(),
                positions,
            }),
            supervisors: TaskTracker::new(),
            born: Utc::now(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PumpState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the container with this ID (or 12-character prefix) is attached.
    pub fn is_attached(&self, id: &str) -> bool {
        self.state()
            .attached
            .keys()
            .any(|full| full.starts_with(id) && id.len() >= 12.min(full.len()))
    }

    /// Runs until `shutdown`; then waits for every supervisor to stop reading.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let saver = self.settings.positions_file.clone().map(|path| {
            let pump = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                while sleep_unless_cancelled(SAVE_INTERVAL, &stop).await {
                    pump.save_positions(&path).await;
                }
            })
        });
        let mut delays = self.settings.backoff.delays();
        // When the last event stream was lost: the next one replays the events from then on,
        // so a container that started (and perhaps already exited) meanwhile is still read.
        let mut lost_at: Option<i64> = None;
        // An outage was reported (warned once; later attempts until Docker answers at debug).
        let mut away = false;
        while !shutdown.is_cancelled() {
            let mut listed = false;
            match self.clone().watch(&shutdown, &mut listed, lost_at).await {
                Ok(()) => break,
                Err(e) => {
                    if listed {
                        // Docker answered this time: the next outage starts from the shortest
                        // pause again instead of where the previous one left off.
                        delays = self.settings.backoff.delays();
                        lost_at = Some(Utc::now().timestamp());
                    }
                    let delay = delays.next().unwrap_or(self.settings.backoff.max_delay);
                    if listed || !away {
                        away = true;
                        tracing::warn!(error = %e, retry_in = ?delay, "Docker event stream interrupted, reconnecting");
                    } else {
                        // Once per outage at warn level; the attempts until Docker is back at debug.
                        tracing::debug!(error = %e, retry_in = ?delay, "Docker still away");
                    }
                    // Back within a ping (250 ms) of a restarted daemon's return.
                    if !common::docker::pause_unless_answering(&self.docker, delay, &shutdown).await
                    {
                        break;
                    }
                }
            }
        }
        self.supervisors.close();
        self.supervisors.wait().await;
        if let (Some(saver), Some(path)) = (saver, &self.settings.positions_file) {
            let _ = saver.await;
            self.save_positions(path).await;
        }
    }

    /// Writes the resume points on the blocking pool (file I/O stays off the async workers).
    async fn save_positions(&self, path: &Path) {
        let positions = self.state().positions.clone();
        let path = path.to_owned();
        match tokio::task::spawn_blocking(move || positions_file::save(&path, &positions)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "resume points not saved"),
            Err(e) => tracing::warn!(error = %e, "resume points not saved"),
        }
    }

    /// Lists running containers and follows events until shutdown (`Ok`) or a Docker error.
    /// `listed` is set once the listing succeeded (Docker was reachable). Events are requested
    /// from a moment before the listing, or before `lost_at` (when the previous event stream
    /// was lost) if that is earlier.
    async fn watch(
        self: Arc<Self>,
        shutdown: &CancellationToken,
        listed: &mut bool,
        lost_at: Option<i64>,
    ) -> Result<(), DockerError> {
        // Anything started in between is replayed by Docker; containers already attached are
        // ignored by `attach`, and one that already exited is read from its start and detached.
        let now = Utc::now().timestamp();
        let since = (lost_at.map_or(now, |lost| lost.min(now)) - 2).to_string();
        let options = ListContainersOptionsBuilder::new().build();
        let running = self.docker.list_containers(Some(options)).await?;
        *listed = true;
        tracing::info!(containers = running.len(), "following Docker events");
        for id in running.into_iter().filter_map(|c| c.id) {
            self.attach(id, Trigger::Listed, shutdown);
        }
        let filters = HashMap::from([
            ("type".to_owned(), vec!["container".to_owned()]),
            (
                "event".to_owned(),
                ["start", "restart", "rename", "destroy"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        ]);
        let options = EventsOptionsBuilder::new()
            .since(&since)
            .filters(&filters)
            .build();
        let mut events = self.docker.events(Some(options));
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => self.handle_event(event, shutdown),
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(DockerError::IOError {
                        err: std::io::Error::other("event stream closed"),
                    });
                }
            }
        }
    }

    fn handle_event(self: &Arc<Self>, event: EventMessage, shutdown: &CancellationToken) {
        let Some(actor) = event.actor else { return };
        let Some(id) = actor.id else { return };
        match event.action.as_deref() {
            Some("start" | "restart") => self.attach(id, Trigger::Started, shutdown),
            Some("rename") => {
                let name = actor
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get("name"))
                    .cloned();
                let cell = self.state().attached.get(&id).map(|a| a.info.clone());
                if let (Some(cell), Some(name)) = (cell, name) {
                    let info = cell
                        .load()
                        .renamed(format!("/{}", name.trim_start_matches('/')));
                    tracing::info!(container = %info.short_id(), name = %info.name, "container renamed");
                    cell.store(Arc::new(info));
                }
            }
            Some("destroy") => {
                self.state().positions.remove(&id);
            }
            _ => {}
        }
    }

    fn attach(self: &Arc<Self>, id: String, trigger: Trigger, shutdown: &CancellationToken) {
        let cell = {
            let mut state = self.state();
            if let Some(attached) = state.attached.get_mut(&id) {
                attached.restarted |= trigger == Trigger::Started;
                return;
            }
            let cell = Arc::new(ArcSwap::from_pointee(ContainerInfo {
                id: id.clone(),
                ..ContainerInfo::default()
            }));
            let attached = Attached {
                info: cell.clone(),
                restarted: false,
            };
            state.attached.insert(id.clone(), attached);
            cell
        };
        let pump = self.clone();
        let shutdown = shutdown.clone();
        self.supervisors.spawn(async move {
            pump.supervise(&id, cell, trigger, &shutdown).await;
            let restarted = pump
                .state()
                .attached
                .remove(&id)
                .is_some_and(|a| a.restarted);
            if restarted && !shutdown.is_cancelled() {
                pump.attach(id, Trigger::Started, &shutdown);
            }
        });
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInspectResponse, DockerError> {
        self.docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
    }

    /// The supervisor of one container: attach, stream, re-attach until it stops.
    async fn supervise(
        &self,
        id: &str,
        cell: Arc<ArcSwap<ContainerInfo>>,
        trigger: Trigger,
        shutdown: &CancellationToken,
    ) {
        let short = crate::message::short_id(id);
        let inspect = match self.inspect(id).await {
            Ok(inspect) => inspect,
            Err(e) => {
                tracing::debug!(container = %short, error = %e, "cannot inspect container, not attached");
                return;
            }
        };
        let info = container_info(&inspect);
        if let Some(reason) = self.settings.exclusions.reason(&info) {
            tracing::info!(container = %short, name = %info.name, %reason, "not attaching");
            return;
        }
        cell.store(Arc::new(info.clone()));
        let saved = self.state().positions.get(id).copied();
        let mut position = saved.unwrap_or_else(|| self.start_position(trigger, &inspect));
        tracing::info!(container = %short, name = %info.name, since = position.since_seconds(), routed = self.routes.any_route_for(&info), "attached");
        let metrics = self.routes.metrics().clone();
        metrics.attached_containers.inc();
        let mut delays = self.settings.backoff.delays();
        let mut first = saved.is_none();
        let mut selection = RouteSelection::default();
        // Set by `report_failure`; cleared once a line is shipped again.
        let mut failing = false;
        loop {
            let tail = if first {
                self.settings.tail.clone()
            } else {
                "all".to_owned()
            };
            first = false;
            let options = LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                since: position.since_seconds(),
                until: 0,
                timestamps: true,
                tail,
            };
            let stream = self.docker.logs(id, Some(options));
            let outcome = self
                .stream(id, stream, &cell, &mut position, &mut selection, shutdown)
                .await;
            selection.wake();
            self.state().positions.insert(id.to_owned(), position);
            let mut assembler = match outcome {
                StreamEnd::Shutdown => break,
                StreamEnd::Ended(assembler, shipped, error) => {
                    if shipped {
                        delays = self.settings.backoff.delays();
                        failing = false;
                    }
                    if let Some(e) = error {
                        report_failure(&mut failing, short, "log stream failed", &e);
                    }
                    assembler
                }
            };
            let running = match self.inspect(id).await {
                Ok(inspect) => {
                    let running = inspect
                        .state
                        .as_ref()
                        .and_then(|s| s.running)
                        .unwrap_or(false);
                    if running {
                        // Restarted under us: keep the new PID, keep a rename.
                        let fresh = container_info(&inspect);
                        let name = cell.load().name.clone();
                        let fresh = if fresh.name == name {
                            fresh
                        } else {
                            fresh.renamed(name)
                        };
                        cell.store(Arc::new(fresh));
                    }
                    running
                }
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => false,
                Err(e) => {
                    report_failure(
                        &mut failing,
                        short,
                        "cannot inspect container, will retry",
                        &e,
                    );
                    true
                }
            };
            if !running {
                // The container's last output may lack a final newline: ship it too.
                let mut rest = Vec::new();
                assembler.finish(&mut rest);
                for line in rest {
                    self.ship(&cell, line, &mut position, &mut selection);
                }
                selection.wake();
                self.state().positions.insert(id.to_owned(), position);
                tracing::info!(container = %short, "container stopped, detached");
                break;
            }
            let delay = delays.next().unwrap_or(self.settings.backoff.max_delay);
            tracing::debug!(container = %short, retry_in = ?delay, "log stream ended, re-attaching");
            if !common::docker::pause_unless_answering(&self.docker, delay, shutdown).await {
                break;
            }
        }
        metrics.attached_containers.dec();
    }

    fn start_position(&self, trigger: Trigger, inspect: &ContainerInspectResponse) -> Position {
        if self.settings.backlog {
            return Position::default();
        }
        let now = Utc::now();
        let started = inspect
            .state
            .as_ref()
            .and_then(|s| s.started_at.as_deref())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        match (trigger, started) {
            // Everything of this run (a little margin: output can precede StartedAt).
            (Trigger::Started, Some(started)) => {
                Position::from_time(started.min(now) - chrono::Duration::seconds(1))
            }
            // Started after logspout: nothing of this run is "old".
            (Trigger::Listed, Some(started)) if started >= self.born => {
                Position::from_time(started.min(now) - chrono::Duration::seconds(1))
            }
            // Like the original: lines from the current second on.
            _ => Position::from_time(floor_second(now)),
        }
    }

    async fn stream(
        &self,
        id: &str,
        stream: impl Stream<Item = Result<LogOutput, DockerError>>,
        cell: &Arc<ArcSwap<ContainerInfo>>,
        position: &mut Position,
        selection: &mut RouteSelection,
        shutdown: &CancellationToken,
    ) -> StreamEnd {
        let mut stream = std::pin::pin!(stream);
        let mut filter = position.filter();
        let mut assembler = LineAssembler::new(self.settings.max_line);
        let mut lines = Vec::new();
        let mut shipped = false;
        let mut last_stamped: [Option<(DateTime<Utc>, bytes::Bytes)>; 2] = [None, None];
        let mut published = Instant::now();
        loop {
            // Lines already read are handled without waiting; only when Docker has no more at
            // hand are the senders woken (once for the lot) and the stream awaited.
            let item = match stream.next().now_or_never() {
                Some(item) => Some(item),
                None => {
                    selection.wake();
                    let next = async {
                        match self.settings.inactivity_timeout {
                            Some(limit) => tokio::time::timeout(limit, stream.next()).await.ok(),
                            None => Some(stream.next().await),
                        }
                    };
                    tokio::select! {
                        _ = shutdown.cancelled() => return StreamEnd::Shutdown,
                        item = next => item,
                    }
                }
            };
            let (source, frame) = match item {
                None => {
                    tracing::debug!(container = %cell.load().short_id(), "log stream inactive, re-attaching");
                    return StreamEnd::Ended(assembler, shipped, None);
                }
                Some(None) => return StreamEnd::Ended(assembler, shipped, None),
                Some(Some(Err(e))) => return StreamEnd::Ended(assembler, shipped, Some(e)),
                Some(Some(Ok(output))) => match output {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (Source::Stdout, message)
                    }
                    LogOutput::StdErr { message } => (Source::Stderr, message),
                    LogOutput::StdIn { .. } => continue,
                },
            };
            assembler.push(source, frame, &mut lines);
            let splits = assembler.take_splits();
            if splits > 0 {
                self.routes.metrics().lines_split.inc_by(splits);
            }
            for line in lines.drain(..) {
                // Docker 20.10's json-file follower sometimes reads a stretch of the file twice
                // under heavy writing: a stamped line equal to the last one, with the same
                // nanosecond timestamp, is such a repeat (older repeats are caught by the filter).
                if line.stamped {
                    let i = usize::from(line.source == Source::Stderr);
                    let repeat = last_stamped[i]
                        .as_ref()
                        .is_some_and(|(t, d)| *t == line.time && *d == line.data);
                    if repeat {
                        continue;
                    }
                    last_stamped[i] = Some((line.time, line.data.clone()));
                }
                if filter.is_new(line.source, line.time, position) {
                    self.ship(cell, line, position, selection);
                    shipped = true;
                }
            }
            if self.settings.positions_file.is_some() && published.elapsed() >= PUBLISH_INTERVAL {
                self.state().positions.insert(id.to_owned(), *position);
                published = Instant::now();
            }
        }
    }

    fn ship(
        &self,
        cell: &Arc<ArcSwap<ContainerInfo>>,
        line: Line,
        position: &mut Position,
        selection: &mut RouteSelection,
    ) {
        let message = Message {
            container: cell.load_full(),
            source: line.source,
            data: line.data,
            time: line.time,
        };
        self.routes.metrics().lines_read.inc();
        self.routes.dispatch(selection, &message);
        self.taps.offer(&message);
        position.shipped(line.source, line.time);
    }
}

/// Logs a container's Docker failure: a warning for the first of a run of failures, debug for
/// the rest (while Docker is away every container fails on every retry).
fn report_failure(failing: &mut bool, container: &str, what: &str, error: &DockerError) {
    if *failing {
        tracing::debug!(container, %error, "{what}");
    } else {
        tracing::warn!(container, %error, "{what}");
    }
    *failing = true;
}

enum StreamEnd {
    Shutdown,
    /// The stream ended; whether any line was shipped during it, and the error if it failed.
    Ended(LineAssembler, bool, Option<DockerError>),
}

fn floor_second(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time)
}

/// The facts logspout keeps from an inspect.
pub fn container_info(inspect: &ContainerInspectResponse) -> ContainerInfo {
    let config = inspect.config.as_ref();
    ContainerInfo {
        id: inspect.id.clone().unwrap_or_default(),
        name: inspect.name.clone().unwrap_or_default(),
        hostname: config.and_then(|c| c.hostname.clone()).unwrap_or_default(),
        image: config.and_then(|c| c.image.clone()).unwrap_or_default(),
        labels: config.and_then(|c| c.labels.clone()).unwrap_or_default(),
        env: config.and_then(|c| c.env.clone()).unwrap_or_default(),
        pid: inspect
            .state
            .as_ref()
            .and_then(|s| s.pid)
            .unwrap_or_default(),
        tty: config.and_then(|c| c.tty).unwrap_or(false),
        log_driver: inspect
            .host_config
            .as_ref()
            .and_then(|h| h.log_config.as_ref())
            .and_then(|l| l.typ.clone())
            .unwrap_or_default(),
        inspect: Arc::new(inspect.clone()),
        inspect_value: Arc::new(serde_json::to_value(inspect).unwrap_or_default()),
        ..ContainerInfo::default()
    }
}
