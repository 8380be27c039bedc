//! The container watcher: follows Docker's event stream (subscribed before the running
//! containers are listed), turns `start`/`die`/`health_status` events and resyncs into commands
//! for the registry writer, and reconnects to Docker with backoff (then resyncs) when the stream
//! ends.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, EventMessage, HealthStatusEnum};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, ListContainersOptionsBuilder,
};
use common::DockerSettings;
use common::backoff::Backoff;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::derive::{DeriveOptions, derive_services, network_container_id};
use crate::metrics::Metrics;
use crate::options::DeregisterPolicy;
use crate::registry_uri::Backend;
use crate::short;
use crate::writer::{Command, Entry};

/// After a reconnect to Docker, the second sync comes this long after the first.
const SETTLE_RESYNC: Duration = Duration::from_secs(3);

/// What the watcher needs besides the Docker connection.
#[derive(Debug, Clone)]
pub struct WatcherSettings {
    pub docker: DockerSettings,
    pub derive: DeriveOptions,
    pub backend: Backend,
    pub deregister: DeregisterPolicy,
    pub resync: Option<Duration>,
    pub require_healthy: bool,
    /// `-cleanup`
    pub cleanup: bool,
}

/// Follows one Docker Engine and keeps the writer told what every container should have.
#[derive(Debug)]
pub struct ContainerWatcher {
    settings: WatcherSettings,
    commands: mpsc::Sender<Command>,
    metrics: Metrics,
    /// Containers whose services were handed to the writer.
    known: HashSet<String>,
}

/// Why one connection's life ended (logged, then the watcher reconnects with backoff).
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error(transparent)]
    Connect(#[from] common::docker::DockerError),
    #[error("listing containers: {0}")]
    Listing(#[source] DockerError),
    #[error("resync: {0}")]
    Resync(#[source] DockerError),
    #[error("Docker event stream failed: {0}")]
    Stream(#[source] DockerError),
    #[error("Docker event stream ended")]
    Ended,
}

fn is_not_found(err: &DockerError) -> bool {
    matches!(
        err,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl ContainerWatcher {
    pub fn new(
        settings: WatcherSettings,
        commands: mpsc::Sender<Command>,
        metrics: Metrics,
    ) -> Self {
        Self {
            settings,
            commands,
            metrics,
            known: HashSet::new(),
        }
    }

    /// Runs until `shutdown`: connect, subscribe, sync, follow events; on any failure of the
    /// Docker connection wait (with backoff) and start over.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let policy = Backoff {
            max_delay: Duration::from_secs(10),
            ..Backoff::default()
        };
        let mut delays = policy.delays();
        // An outage was reported (warned once; later attempts until Docker answers at debug).
        let mut away = false;
        loop {
            let connects = self.metrics.docker_connects.get();
            let Err(reason) = self.follow(&shutdown).await else {
                return;
            };
            let was_connected = self.metrics.docker_connects.get() > connects;
            if was_connected {
                // It was connected: start the backoff again from the shortest pause.
                delays = policy.delays();
            }
            let delay = delays.next().unwrap_or(policy.max_delay);
            if was_connected || !away {
                away = true;
                tracing::warn!(%reason, retry_in = ?delay, "lost Docker, will reconnect");
            } else {
                // Once per outage at warn level; the attempts until Docker is back at debug.
                tracing::debug!(%reason, retry_in = ?delay, "Docker still away");
            }
            // A ping every 250 ms cuts the pause short: a restarted daemon is followed (and
            // resynced) within a probe interval of its return.
            if !self
                .settings
                .docker
                .pause_unless_answering(delay, &shutdown)
                .await
            {
                return;
            }
        }
    }

    /// One connection's life. `Ok` means shutdown; `Err` says why Docker was lost.
    async fn follow(&mut self, shutdown: &CancellationToken) -> Result<(), Lost> {
        let docker = self.settings.docker.connect().await?;
        // Events since the daemon's "now" are replayed even if the subscription completes after
        // the listing below, so no start between the two is missed.
        let since = server_time(&docker).await;
        let filters = HashMap::from([("type".to_owned(), vec!["container".to_owned()])]);
        let options = EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(filters),
        };
        let mut events = Box::pin(docker.events(Some(options)));
        self.metrics.docker_connects.inc();
        tracing::info!(docker = %self.settings.docker.host, "listening for Docker events");
        self.sync(&docker).await.map_err(Lost::Listing)?;
        // After a reconnect (a restarted daemon, often restoring live containers) the first
        // listing can still show a container whose exit the daemon dropped while restoring
        // ("ignoring event"): no `die` follows, so one more sync a few seconds later catches it.
        let reconnected = self.metrics.docker_connects.get() > 1;
        let settle = tokio::time::sleep(SETTLE_RESYNC);
        tokio::pin!(settle);
        let mut settled = !reconnected;

        let resync_every = self.settings.resync.unwrap_or(Duration::from_secs(86_400));
        let mut resync =
            tokio::time::interval_at(tokio::time::Instant::now() + resync_every, resync_every);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = resync.tick(), if self.settings.resync.is_some() => {
                    self.sync(&docker).await.map_err(Lost::Resync)?;
                }
                () = &mut settle, if !settled => {
                    settled = true;
                    self.sync(&docker).await.map_err(Lost::Resync)?;
                }
                event = events.next() => match event {
                    Some(Ok(event)) => self.handle(&docker, event).await,
                    Some(Err(e)) => return Err(Lost::Stream(e)),
                    None => return Err(Lost::Ended),
                },
            }
        }
    }

    async fn handle(&mut self, docker: &Docker, event: EventMessage) {
        let action = event.action.unwrap_or_default();
        let Some(id) = event.actor.and_then(|a| a.id) else {
            return;
        };
        self.metrics.event(&action);
        tracing::debug!(container = short(&id), %action, "event");
        match action.as_str() {
            "start" => self.add(docker, &id, false).await,
            "die" => self.die(docker, &id).await,
            a if a.starts_with("health_status") && self.settings.require_healthy => {
                self.add(docker, &id, true).await;
            }
            _ => {}
        }
    }

    /// Re-lists the running containers: registers new ones, re-derives known ones, and treats
    /// known ones that are no longer running as dead (their `die` was missed).
    async fn sync(&mut self, docker: &Docker) -> Result<(), DockerError> {
        let options = ListContainersOptionsBuilder::new().all(false).build();
        let listed = docker.list_containers(Some(options)).await?;
        let running: HashSet<String> = listed.into_iter().filter_map(|c| c.id).collect();
        tracing::info!(containers = running.len(), "syncing services");
        for id in &running {
            self.add(docker, id, true).await;
        }
        let gone: Vec<String> = self
            .known
            .iter()
            .filter(|id| !running.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            tracing::info!(
                container = short(&id),
                "stale: container is no longer running"
            );
            self.die(docker, &id).await;
        }
        if self.settings.cleanup {
            self.purge_stopped(docker, &running).await?;
        }
        self.send(Command::Rewrite).await;
        tracing::info!(
            containers = running.len(),
            registered = self.known.len(),
            "synced"
        );
        Ok(())
    }

    /// `-cleanup`: the records this host would have written for containers that exist but do
    /// not run (a reboot without `-ttl` leaves them behind) are removed. Only default IDs
    /// (`<this host>:<container>:<port>`) are considered: an explicit `SERVICE_ID` may be shared
    /// by other hosts' containers.
    async fn purge_stopped(
        &mut self,
        docker: &Docker,
        running: &HashSet<String>,
    ) -> Result<(), DockerError> {
        let options = ListContainersOptionsBuilder::new().all(true).build();
        let all = docker.list_containers(Some(options)).await?;
        let own_prefix = format!("{}:", self.settings.derive.hostname);
        let mut entries = Vec::new();
        for id in all.into_iter().filter_map(|c| c.id) {
            if running.contains(&id) || self.known.contains(&id) {
                continue;
            }
            let Ok(container) = docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
            else {
                continue;
            };
            let derivation = derive_services(&container, None, &self.settings.derive);
            for service in derivation.services {
                if !service.id.starts_with(&own_prefix) {
                    continue;
                }
                if let Ok((key, value)) = self.settings.backend.entry(&service) {
                    entries.push(Entry {
                        key,
                        value,
                        service_id: service.id,
                    });
                }
            }
        }
        if !entries.is_empty() {
            self.send(Command::Purge { entries }).await;
        }
        Ok(())
    }

    /// Registers a container. A known one is left alone unless `refresh` is set.
    async fn add(&mut self, docker: &Docker, id: &str, refresh: bool) {
        if self.known.contains(id) && !refresh {
            tracing::debug!(container = short(id), "already registered, ignoring");
            return;
        }
        let container = match docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(container) => container,
            Err(err) if is_not_found(&err) => {
                tracing::debug!(container = short(id), "container is gone");
                return;
            }
            Err(err) => {
                tracing::warn!(container = short(id), error = %err, "unable to inspect container");
                return;
            }
        };
        let state = container.state.clone().unwrap_or_default();
        if !state.running.unwrap_or(false) {
            tracing::debug!(container = short(id), "not running, ignoring");
            return;
        }
        if self.settings.require_healthy && !is_healthy(&container) {
            if self.known.contains(id) {
                tracing::info!(container = short(id), "not healthy, deregistering");
                self.remove(id).await;
            } else {
                tracing::info!(container = short(id), "ignored: not healthy yet");
            }
            return;
        }
        let network_container = match network_container_id(&container) {
            Some(other) => docker
                .inspect_container(other, None::<InspectContainerOptions>)
                .await
                .inspect_err(|err| {
                    tracing::warn!(container = short(id), network_container = short(other), error = %err, "unable to inspect network container")
                })
                .ok(),
            None => None,
        };
        let derivation = derive_services(
            &container,
            network_container.as_ref(),
            &self.settings.derive,
        );
        for warning in &derivation.warnings {
            tracing::warn!(container = short(id), "{warning}");
        }
        for reason in &derivation.skipped {
            tracing::info!(container = short(id), "ignored: {reason}");
        }
        let mut entries = Vec::with_capacity(derivation.services.len());
        for service in derivation.services {
            match self.settings.backend.entry(&service) {
                Ok((key, value)) => entries.push(Entry {
                    key,
                    value,
                    service_id: service.id,
                }),
                Err(err) => {
                    tracing::warn!(container = short(id), service = %service.id, name = %service.name, error = %err, "skipped")
                }
            }
        }
        self.known.insert(id.to_owned());
        self.send(Command::Set {
            container: id.to_owned(),
            entries,
        })
        .await;
    }

    /// A container died: deregister per `-deregister`.
    async fn die(&mut self, docker: &Docker, id: &str) {
        if !self.known.contains(id) {
            return;
        }
        match self.settings.deregister {
            DeregisterPolicy::Always => self.remove(id).await,
            DeregisterPolicy::OnSuccess => {
                match docker
                    .inspect_container(id, None::<InspectContainerOptions>)
                    .await
                {
                    Err(err) if is_not_found(&err) => {
                        tracing::info!(
                            container = short(id),
                            "container was removed, could not fetch exit code"
                        );
                        self.remove(id).await;
                    }
                    Err(err) => {
                        tracing::warn!(container = short(id), error = %err, "error fetching status on \"die\"");
                        self.abandon(id).await;
                    }
                    Ok(container) => {
                        let state = container.state.unwrap_or_default();
                        let code = state.exit_code.unwrap_or(0);
                        if state.running.unwrap_or(false) {
                            tracing::info!(container = short(id), "not removing, still running");
                        } else if code == 0 || code & 0x80 == 0x80 {
                            self.remove(id).await;
                        } else {
                            tracing::info!(
                                container = short(id),
                                exit_code = code,
                                "failed: keeping its records (-deregister on-success)"
                            );
                            self.abandon(id).await;
                        }
                    }
                }
            }
        }
    }

    async fn remove(&mut self, id: &str) {
        self.known.remove(id);
        self.send(Command::Remove {
            container: id.to_owned(),
        })
        .await;
    }

    async fn abandon(&mut self, id: &str) {
        self.known.remove(id);
        self.send(Command::Abandon {
            container: id.to_owned(),
        })
        .await;
    }

    async fn send(&self, command: Command) {
        if self.commands.send(command).await.is_err() {
            tracing::debug!("the registry writer has stopped");
        }
    }
}

/// True when the container has no health check, or its check reports healthy.
fn is_healthy(container: &ContainerInspectResponse) -> bool {
    let status = container
        .state
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.status);
    match status {
        None | Some(HealthStatusEnum::EMPTY) | Some(HealthStatusEnum::NONE) => true,
        Some(status) => status == HealthStatusEnum::HEALTHY,
    }
}

/// The daemon's clock as `seconds.nanoseconds` (for `since`), or ours if it does not say.
async fn server_time(docker: &Docker) -> String {
    let server = match docker.info().await {
        Ok(info) => info
            .system_time
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&chrono::Utc)),
        Err(_) => None,
    };
    let now = server.unwrap_or_else(chrono::Utc::now);
    format!("{}.{:09}", now.timestamp(), now.timestamp_subsec_nanos())
}
