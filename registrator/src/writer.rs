//! The registry writer: the only task that writes to etcd. It keeps the records every known
//! container should have, writes the difference, retries failed writes until they land, keeps
//! one lease per instance alive with `-ttl`, re-registers everything on a fresh lease when the
//! lease is lost, and removes this instance's records on shutdown.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::options::Ttl;
use crate::short;

/// Bound on removing this instance's records at shutdown.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on each etcd request of a flush (and on one lease renewal). A healthy cluster answers
/// in milliseconds (a loaded one in tens). A follower whose leader just died holds a proposal
/// until it notices (etcd's election timeout, 1 s by default) and one that lost quorum until
/// etcd's own request timeout (about 7 s): a retry through another member after a probe finds
/// etcd answering lands sooner. Requests are idempotent puts and deletes of this host's keys,
/// so a retry of one that did land is harmless.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// How one lease renewal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renewal {
    /// Renewed, or there is no lease to renew.
    Renewed,
    /// etcd no longer knows the lease: every record must be written again.
    Lost,
    /// etcd did not answer (or the keep-alive stream ended): retried.
    Failed,
}

/// One record: where, what, and which service it stands for (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub service_id: String,
}

/// What the container watcher asks of the writer.
#[derive(Debug, Clone)]
pub enum Command {
    /// The records a container should have now (replacing what it had).
    Set {
        container: String,
        entries: Vec<Entry>,
    },
    /// The container is gone: remove its records.
    Remove { container: String },
    /// Stop renewing the container's records: they expire with the TTL (or stay, without one).
    Abandon { container: String },
    /// Rewrite every record (after a resync), in case someone removed one by hand.
    Rewrite,
    /// `-cleanup`: records a previous run of this host may have left for containers that are
    /// not running; each is removed unless a running container wants it.
    Purge { entries: Vec<Entry> },
}

/// Why a flush stopped.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("etcd {what} {key}: {source}")]
    Request {
        what: &'static str,
        key: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("etcd {what} {key}: no answer within {REQUEST_TIMEOUT:?}")]
    Timeout { what: &'static str, key: String },
    #[error("the lease expired; registering everything on a new lease")]
    LeaseLost,
}

/// One etcd request of a flush, bounded by [`REQUEST_TIMEOUT`], its error naming what and which key.
async fn request<T>(
    what: &'static str,
    key: &str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, WriteError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(WriteError::Request {
            what,
            key: key.to_owned(),
            source,
        }),
        Err(_) => Err(WriteError::Timeout {
            what,
            key: key.to_owned(),
        }),
    }
}

#[derive(Debug, Clone)]
struct Owned {
    /// Order of the last `Set`: when two containers claim one key, the latest wins.
    seq: u64,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    value: String,
    container: String,
    service_id: String,
}

/// The writer's state; run it with [`RegistryWriter::run`].
pub struct RegistryWriter {
    client: Client,
    ttl: Option<Ttl>,
    keep_on_exit: bool,
    metrics: Metrics,
    lease: Option<i64>,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    /// The last renewal failed (etcd did not answer): logged once, retried after each probe.
    renewal_failing: bool,
    containers: HashMap<String, Owned>,
    /// What this instance believes is in etcd.
    written: BTreeMap<String, Written>,
    /// Records to move to a lease that is not renewed.
    abandoned: Vec<Entry>,
    rewrite_all: bool,
    /// Keys to remove unless wanted (`-cleanup`), with their service IDs.
    purge: BTreeMap<String, String>,
    seq: u64,
}

impl std::fmt::Debug for RegistryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryWriter")
            .field("lease", &self.lease)
            .field("records", &self.written.len())
            .finish_non_exhaustive()
    }
}

/// gRPC's `NOT_FOUND` status code (fixed by the gRPC specification).
const GRPC_NOT_FOUND: i32 = 5;

/// Whether etcd refused a lease operation (a put with the lease, a keep-alive) because the lease
/// no longer exists: etcd answers `NOT_FOUND` ("etcdserver: requested lease not found") then.
fn lease_not_found(err: &etcd_client::Error) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(status) if i32::from(status.code()) == GRPC_NOT_FOUND)
}

impl RegistryWriter {
    pub fn new(client: Client, ttl: Option<Ttl>, keep_on_exit: bool, metrics: Metrics) -> Self {
        Self {
            client,
            ttl,
            keep_on_exit,
            metrics,
            lease: None,
            keeper: None,
            renewal_failing: false,
            containers: HashMap::new(),
            written: BTreeMap::new(),
            abandoned: Vec::new(),
            rewrite_all: false,
            purge: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Applies commands and writes them until `commands` closes or `shutdown` is cancelled, then
    /// removes this instance's records (unless told to keep them).
    ///
    /// A failed flush is retried after a backoff step, or as soon as a probe finds etcd answering
    /// again, whichever comes first; a lost lease is replaced and everything written at once.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let retry_policy = common::etcd::retry_policy();
        let mut delays = retry_policy.delays();
        let mut retry_at: Option<Instant> = None;
        let mut dirty = false;
        // Consecutive lost leases: the first is replaced at once, a second waits a backoff step.
        let mut leases_lost = 0u32;
        let mut failures = 0u64;
        let refresh_every = self.ttl.map_or(Duration::from_secs(3600), |t| t.refresh);
        let mut refresh = tokio::time::interval_at(Instant::now() + refresh_every, refresh_every);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // While writes wait for their retry, etcd is asked whether it answers again, so pending
        // records land right after an outage instead of after the backoff step.
        // The same probe runs while a lease renewal has failed, so that the lease is renewed (or
        // found lost) right after the outage rather than at the next refresh.
        let mut probe = tokio::time::interval(common::etcd::PROBE_INTERVAL);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if dirty && retry_at.is_none() {
                let flushed = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    result = self.flush() => result,
                };
                match flushed {
                    Ok(()) => {
                        if failures > 0 {
                            tracing::info!(failed_attempts = failures, "etcd writes landed again");
                        }
                        dirty = false;
                        failures = 0;
                        leases_lost = 0;
                        delays = retry_policy.delays();
                    }
                    Err(WriteError::LeaseLost) if leases_lost == 0 => {
                        leases_lost += 1;
                        continue;
                    }
                    Err(err) => {
                        if !matches!(err, WriteError::LeaseLost) {
                            self.metrics.etcd_errors.inc();
                        }
                        failures += 1;
                        let delay = delays.next().unwrap_or(retry_policy.max_delay);
                        if failures == 1 {
                            tracing::warn!(error = %err, retry_in = ?delay, "etcd write failed, will retry");
                        } else {
                            tracing::debug!(error = %err, retry_in = ?delay, attempt = failures, "etcd write failed again");
                        }
                        retry_at = Some(Instant::now() + delay);
                        probe.reset();
                    }
                }
            }
            let retry_sleep = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => {
                        self.apply(command);
                        dirty = true;
                    }
                    None => break,
                },
                () = retry_sleep => retry_at = None,
                _ = probe.tick(), if retry_at.is_some() || self.renewal_failing => {
                    if common::etcd::answers(&mut self.client).await {
                        if retry_at.is_some() {
                            tracing::info!(failed_attempts = failures, "etcd answers again; writing the pending records now");
                            retry_at = None;
                        }
                        // Renew now rather than at the next refresh: a lease that expired
                        // meanwhile is found out (and everything written again) at once.
                        if self.renewal_failing && self.keep_alive().await == Renewal::Lost {
                            dirty = true;
                        }
                    }
                }
                _ = refresh.tick(), if self.ttl.is_some() => {
                    let was_failing = self.renewal_failing;
                    match self.keep_alive().await {
                        Renewal::Renewed => {}
                        Renewal::Lost => dirty = true,
                        Renewal::Failed if !was_failing => probe.reset(),
                        Renewal::Failed => {}
                    }
                }
            }
        }
        if !self.keep_on_exit {
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, self.remove_all())
                .await
                .is_err()
            {
                tracing::warn!(
                    "could not remove every record within {SHUTDOWN_TIMEOUT:?}; the rest expire with the TTL"
                );
            }
        } else {
            tracing::info!(records = self.written.len(), "keeping records on exit");
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Set { container, entries } => {
                self.seq += 1;
                self.containers.insert(
                    container,
                    Owned {
                        seq: self.seq,
                        entries,
                    },
                );
            }
            Command::Remove { container } => {
                self.containers.remove(&container);
            }
            Command::Abandon { container } => {
                let Some(owned) = self.containers.remove(&container) else {
                    return;
                };
                let wanted = self.wanted();
                for entry in owned.entries {
                    if wanted.contains_key(&entry.key) {
                        continue;
                    }
                    if let Some(written) = self.written.remove(&entry.key) {
                        tracing::info!(
                            container = %short(&container), service = %written.service_id,
                            "no longer renewed (failed container, -deregister on-success)"
                        );
                        if self.ttl.is_some() {
                            self.abandoned.push(entry);
                        }
                    }
                }
            }
            Command::Rewrite => self.rewrite_all = true,
            Command::Purge { entries } => {
                self.purge
                    .extend(entries.into_iter().map(|e| (e.key, e.service_id)));
            }
        }
    }

    /// Every key some container wants, with the value of the latest claim.
    fn wanted(&self) -> BTreeMap<String, Written> {
        let mut owners: Vec<(&String, &Owned)> = self.containers.iter().collect();
        owners.sort_by_key(|(_, owned)| owned.seq);
        let mut wanted = BTreeMap::new();
        for (container, owned) in owners {
            for entry in &owned.entries {
                wanted.insert(
                    entry.key.clone(),
                    Written {
                        value: entry.value.clone(),
                        container: container.clone(),
                        service_id: entry.service_id.clone(),
                    },
                );
            }
        }
        wanted
    }

    /// Writes the difference between what is wanted and what is written. Every request is
    /// bounded by [`REQUEST_TIMEOUT`]; what landed before a failure stays noted as written.
    async fn flush(&mut self) -> Result<(), WriteError> {
        if let Some(ttl) = self.ttl {
            if self.lease.is_none() {
                let granted = request(
                    "lease grant",
                    "",
                    self.client.lease_grant(ttl.ttl.as_secs() as i64, None),
                )
                .await?;
                tracing::debug!(lease = granted.id(), ttl = granted.ttl(), "lease granted");
                self.lease = Some(granted.id());
                self.keeper = None;
            }
        }
        self.flush_abandoned().await?;
        let wanted = self.wanted();
        let stale: Vec<String> = self
            .written
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in stale {
            request("delete", &key, self.client.delete(key.as_str(), None)).await?;
            if let Some(gone) = self.written.remove(&key) {
                tracing::info!(container = %short(&gone.container), service = %gone.service_id, %key, "removed");
            }
        }
        let purge: Vec<(String, String)> = std::mem::take(&mut self.purge).into_iter().collect();
        for (index, (key, service_id)) in purge.iter().enumerate() {
            if wanted.contains_key(key) || self.written.contains_key(key) {
                continue;
            }
            match request("delete", key, self.client.delete(key.as_str(), None)).await {
                Ok(response) if response.deleted() > 0 => {
                    tracing::info!(service = %service_id, %key, "dangling: removed")
                }
                Ok(_) => {}
                Err(err) => {
                    // Keep the rest for the retry.
                    self.purge.extend(purge[index..].iter().cloned());
                    return Err(err);
                }
            }
        }
        let options = self.lease.map(|id| PutOptions::new().with_lease(id));
        for (key, record) in wanted {
            let previous = self.written.get(&key);
            if !self.rewrite_all && previous == Some(&record) {
                continue;
            }
            let added = previous.is_none_or(|p| p.container != record.container);
            let put = self
                .client
                .put(key.as_str(), record.value.as_str(), options.clone());
            match request("put", &key, put).await {
                Ok(_) => {}
                Err(WriteError::Request { source, .. }) if lease_not_found(&source) => {
                    self.lease_lost();
                    return Err(WriteError::LeaseLost);
                }
                Err(err) => return Err(err),
            }
            if added {
                tracing::info!(container = %short(&record.container), service = %record.service_id, %key, "added");
            } else {
                tracing::debug!(container = %short(&record.container), service = %record.service_id, %key, "rewritten");
            }
            self.written.insert(key, record);
            self.metrics.services.set(self.written.len() as i64);
        }
        self.rewrite_all = false;
        self.metrics.services.set(self.written.len() as i64);
        Ok(())
    }

    /// Moves abandoned records to a lease of their own that nobody renews.
    async fn flush_abandoned(&mut self) -> Result<(), WriteError> {
        let Some(ttl) = self.ttl.filter(|_| !self.abandoned.is_empty()) else {
            return Ok(());
        };
        let lease = request(
            "lease grant",
            "",
            self.client.lease_grant(ttl.ttl.as_secs() as i64, None),
        )
        .await?
        .id();
        while let Some(entry) = self.abandoned.last() {
            let options = PutOptions::new().with_lease(lease);
            let put = self
                .client
                .put(entry.key.as_str(), entry.value.as_str(), Some(options));
            request("put", &entry.key, put).await?;
            self.abandoned.pop();
        }
        Ok(())
    }

    fn lease_lost(&mut self) {
        tracing::warn!(
            records = self.written.len(),
            "the etcd lease expired (etcd unreachable for longer than -ttl?); registering everything again"
        );
        self.lease = None;
        self.keeper = None;
        self.written.clear();
    }

    /// Renews the lease: renewed (or no lease), lost (everything must be written again), or
    /// failed (etcd did not answer; retried).
    async fn keep_alive(&mut self) -> Renewal {
        let Some(lease) = self.lease else {
            return Renewal::Renewed;
        };
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            if self.keeper.is_none() {
                self.keeper = Some(self.client.lease_keep_alive(lease).await?);
            }
            let Some((keeper, stream)) = self.keeper.as_mut() else {
                return Ok(None);
            };
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        let renewal = match result {
            Ok(Ok(Some(response))) if response.ttl() > 0 => Renewal::Renewed,
            Ok(Ok(Some(_))) => {
                self.lease_lost();
                Renewal::Lost
            }
            Ok(Err(err)) if lease_not_found(&err) => {
                // The lease expired while etcd was unreachable: nothing renews it any more.
                self.lease_lost();
                Renewal::Lost
            }
            Ok(Ok(None)) => {
                self.renewal_failed(lease, "the keep-alive stream ended".into());
                Renewal::Failed
            }
            Ok(Err(err)) => {
                self.renewal_failed(lease, err.to_string());
                Renewal::Failed
            }
            Err(_) => {
                self.renewal_failed(lease, format!("no answer within {REQUEST_TIMEOUT:?}"));
                Renewal::Failed
            }
        };
        if renewal != Renewal::Failed {
            if self.renewal_failing && renewal == Renewal::Renewed {
                tracing::info!(lease, "the etcd lease is renewed again");
            }
            self.renewal_failing = false;
        }
        renewal
    }

    /// A renewal that etcd did not answer: counted, logged once per outage, retried.
    fn renewal_failed(&mut self, lease: i64, error: String) {
        self.metrics.etcd_errors.inc();
        self.keeper = None;
        if self.renewal_failing {
            tracing::debug!(lease, %error, "could not renew the etcd lease yet");
        } else {
            tracing::warn!(lease, %error, "could not renew the etcd lease, will retry as soon as etcd answers");
        }
        self.renewal_failing = true;
    }

    /// Removes every record this instance wrote and revokes its lease. Wanted records are
    /// included: a put cut short by the shutdown may have landed without being noted.
    async fn remove_all(&mut self) {
        let mut keys = self.wanted();
        keys.append(&mut self.written);
        for (key, written) in keys {
            match self.client.delete(key.as_str(), None).await {
                Ok(response) if response.deleted() > 0 => {
                    tracing::info!(container = %short(&written.container), service = %written.service_id, %key, "removed")
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(%key, error = %err, "could not remove record at shutdown")
                }
            }
        }
        self.metrics.services.set(0);
        if let Some(lease) = self.lease.take() {
            if let Err(err) = self.client.lease_revoke(lease).await {
                tracing::debug!(lease, error = %err, "could not revoke the lease");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use etcd_client::PutOptions;
    use harness::etcd::EtcdServer;

    use super::lease_not_found;

    #[tokio::test]
    async fn a_missing_lease_is_told_by_its_status_code_and_nothing_else_is() {
        let etcd = EtcdServer::start().await;
        let mut client = etcd.client().await;
        let missing = client
            .put("k", "v", Some(PutOptions::new().with_lease(0x7e57)))
            .await
            .expect_err("a put with a lease etcd never granted is refused");
        assert!(lease_not_found(&missing), "{missing}");
        let other = client
            .put("", "v", None)
            .await
            .expect_err("etcd refuses an empty key");
        assert!(!lease_not_found(&other), "{other}");
    }
}
