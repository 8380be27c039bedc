//! The index's only writer: one prefix `get` of etcd, then a `watch` from the next revision.
//! Each watch response becomes a new snapshot, swapped in atomically. A lost watch, a
//! compaction or a lost connection leads to a full re-read with backoff while the last good
//! snapshot keeps answering. Lease TTLs are tracked so answers never outlive a lease.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::KeySchema;
use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio_util::sync::CancellationToken;

use crate::index::{EntryError, Leaf, LeaseInfo, ZoneIndex};
use crate::state::Shared;

/// How often leases are checked, and a silent watch asked for its progress.
const TICK: Duration = Duration::from_secs(1);
/// A watch that answers nothing for this long (not even progress requests, sent every
/// [`TICK`] while it is silent) is given up and the index re-read through another member: the
/// member holding it is paused, hung or cut off, and its silence would pass for "no changes".
const WATCH_SILENCE: Duration = Duration::from_secs(3);
/// Bound on setting up a watch.
const WATCH_CREATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on reading one lease's TTL.
const LEASE_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Keys per page when reading the whole prefix.
const LIST_PAGE: i64 = 5000;

/// The smallest key greater than every key starting with `prefix` (etcd's range end).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Why following etcd stopped (the watcher then re-reads everything).
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("etcd request failed: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the etcd watch was cancelled: {0}")]
    Cancelled(String),
    #[error("the etcd watch stream ended")]
    Ended,
    #[error(
        "the etcd member holding the watch said nothing for {0:?}, not even to a progress request"
    )]
    Silent(Duration),
}

/// Keeps `Shared::index` in step with etcd.
pub struct Watcher {
    client: Client,
    schema: KeySchema,
    shared: Arc<Shared>,
    index: ZoneIndex,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("schema", &self.schema)
            .field("records", &self.index.len())
            .finish_non_exhaustive()
    }
}

impl Watcher {
    pub fn new(client: Client, schema: KeySchema, shared: Arc<Shared>) -> Self {
        Self {
            client,
            schema,
            shared,
            index: ZoneIndex::new(),
        }
    }

    /// Reads every key under the prefix into a fresh index, publishes it, and returns the
    /// revision it reflects.
    pub async fn load(&mut self) -> Result<i64, WatchError> {
        let prefix = self.schema.watch_prefix().into_bytes();
        let end = prefix_end(&prefix);
        let mut index = ZoneIndex::new();
        let mut leases = HashSet::new();
        let mut revision = 0;
        let mut start = prefix;
        // Pages of LIST_PAGE keys, all at the revision of the first page, so that a large
        // tree does not exceed gRPC's message size limit and still reads as one snapshot.
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if revision != 0 {
                options = options.with_revision(revision);
            }
            let response = self.client.get(start.clone(), Some(options)).await?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            for kv in response.kvs() {
                self.apply_put(&mut index, kv.key(), kv.value(), kv.lease());
                if kv.lease() != 0 {
                    leases.insert(kv.lease());
                }
            }
            match response.kvs().last() {
                Some(last) if response.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        for lease in leases {
            self.fetch_lease(&mut index, lease).await;
        }
        self.index = index;
        self.publish();
        self.shared.metrics.resyncs.inc();
        tracing::info!(
            records = self.index.len(),
            revision,
            "index loaded from etcd"
        );
        Ok(revision)
    }

    /// Follows etcd until shutdown: watch from `revision + 1`, and after any failure re-read
    /// everything (with backoff) and watch again.
    pub async fn run(mut self, mut revision: i64, shutdown: CancellationToken) {
        let backoff = common::etcd::retry_policy();
        loop {
            match self.watch(revision + 1, &shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    self.set_synced(false);
                    tracing::warn!(%error, "lost the etcd watch; re-reading the index");
                }
            }
            let mut delays = backoff.delays();
            // The first re-read is at once (another member may answer); then with backoff.
            let mut failures = 0u64;
            loop {
                match self.load().await {
                    Ok(rev) => {
                        revision = rev;
                        break;
                    }
                    Err(error) if failures == 0 => {
                        tracing::warn!(%error, "cannot re-read the index from etcd; serving the last one");
                    }
                    Err(error) => {
                        tracing::debug!(%error, failures, "cannot re-read the index from etcd yet");
                    }
                }
                failures += 1;
                let delay = delays.next().unwrap_or(backoff.max_delay);
                // A probe cuts the pause short once etcd answers: the re-read follows at once.
                if !common::etcd::pause_unless_answering(&self.client, delay, &shutdown).await {
                    return;
                }
            }
        }
    }

    async fn watch(&mut self, from: i64, shutdown: &CancellationToken) -> Result<(), WatchError> {
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        let create = self.client.watch(self.schema.watch_prefix(), Some(options));
        let mut stream = tokio::time::timeout(WATCH_CREATE_TIMEOUT, create)
            .await
            .map_err(|_| WatchError::Silent(WATCH_CREATE_TIMEOUT))??;
        self.set_synced(true);
        let mut tick = tokio::time::interval(TICK);
        // When the watch last said anything (events, or an answer to a progress request).
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    self.refresh_leases().await;
                    let silent = heard.elapsed();
                    if silent >= WATCH_SILENCE {
                        return Err(WatchError::Silent(silent));
                    }
                    if silent >= TICK {
                        // The member holding the watch answers this itself (no consensus):
                        // silence means it is paused, hung or unreachable.
                        let _ = stream.request_progress().await;
                    }
                }
                message = stream.message() => {
                    heard = Instant::now();
                    let Some(response) = message? else {
                        return Err(WatchError::Ended);
                    };
                    if response.canceled() || response.compact_revision() > 0 {
                        return Err(WatchError::Cancelled(format!(
                            "{} (compact revision {})",
                            response.cancel_reason(),
                            response.compact_revision()
                        )));
                    }
                    if response.events().is_empty() {
                        continue;
                    }
                    let mut index = self.index.clone();
                    for event in response.events() {
                        let Some(kv) = event.kv() else { continue };
                        match event.event_type() {
                            EventType::Put => {
                                self.apply_put(&mut index, kv.key(), kv.value(), kv.lease());
                                if kv.lease() != 0 && !index.has_lease(kv.lease()) {
                                    self.fetch_lease(&mut index, kv.lease()).await;
                                }
                            }
                            EventType::Delete => self.apply_delete(&mut index, kv.key()),
                        }
                    }
                    self.index = index;
                    self.publish();
                }
            }
        }
    }

    fn set_synced(&self, synced: bool) {
        self.shared.sync.set(synced);
    }

    fn publish(&self) {
        self.shared
            .metrics
            .index_records
            .set(i64::try_from(self.index.len()).unwrap_or(i64::MAX));
        self.shared.index.store(Arc::new(self.index.clone()));
    }

    fn apply_put(&self, index: &mut ZoneIndex, key: &[u8], value: &[u8], lease: i64) {
        let Ok(key_text) = std::str::from_utf8(key) else {
            self.skip(&EntryError::NotUtf8 {
                key: String::from_utf8_lossy(key).into_owned(),
            });
            return;
        };
        if key_text == self.schema.config_key() {
            return;
        }
        let Some(segments) = self.schema.key_segments(key_text) else {
            return;
        };
        let segments: Vec<&str> = segments.collect();
        match Leaf::parse(&self.schema, key, value, lease) {
            Ok(leaf) => index.insert(&segments, Arc::new(leaf)),
            Err(error) => {
                self.skip(&error);
                if matches!(
                    error,
                    EntryError::InvalidValue { .. } | EntryError::InvalidHost { .. }
                ) {
                    // The name exists; it just has no usable data (NODATA, not NXDOMAIN).
                    index.insert_invalid(&segments);
                }
            }
        }
    }

    fn apply_delete(&self, index: &mut ZoneIndex, key: &[u8]) {
        let Ok(key_text) = std::str::from_utf8(key) else {
            return;
        };
        if let Some(segments) = self.schema.key_segments(key_text) {
            let segments: Vec<&str> = segments.collect();
            index.remove(&segments);
        }
    }

    fn skip(&self, error: &EntryError) {
        self.shared.metrics.skipped_entries.inc();
        tracing::warn!(%error, "skipping etcd entry");
    }

    /// Reads one lease's TTL into `index`; false if etcd did not answer (within
    /// [`LEASE_READ_TIMEOUT`]).
    async fn fetch_lease(&mut self, index: &mut ZoneIndex, lease: i64) -> bool {
        let asked = Instant::now();
        let read = self.client.lease_time_to_live(lease, None);
        let answer = match tokio::time::timeout(LEASE_READ_TIMEOUT, read).await {
            Ok(answer) => answer,
            Err(_) => {
                tracing::warn!(lease, timeout = ?LEASE_READ_TIMEOUT, "cannot read the lease's TTL: no answer");
                return false;
            }
        };
        match answer {
            Ok(response) if response.ttl() > 0 => {
                let left = Duration::from_secs(u64::try_from(response.ttl()).unwrap_or(0));
                let granted =
                    Duration::from_secs(u64::try_from(response.granted_ttl()).unwrap_or(0));
                index.set_lease(
                    lease,
                    LeaseInfo {
                        expires: asked + left,
                        granted,
                    },
                );
            }
            Ok(_) => index.remove_lease(lease),
            Err(error) => {
                tracing::warn!(lease, %error, "cannot read the lease's TTL");
                return false;
            }
        }
        true
    }

    /// Re-reads leases past half their granted TTL: a kept-alive lease gets its new expiry, an
    /// expired one is forgotten (its keys are deleted through the watch).
    async fn refresh_leases(&mut self) {
        let now = Instant::now();
        let due: Vec<i64> = self
            .index
            .leases()
            .filter(|(_, info)| info.expires.saturating_duration_since(now) < info.granted / 2)
            .map(|(id, _)| id)
            .collect();
        if due.is_empty() {
            return;
        }
        let mut index = self.index.clone();
        for lease in due {
            // etcd not answering: the rest wait for the next tick (no pile of timeouts).
            if !self.fetch_lease(&mut index, lease).await {
                break;
            }
        }
        self.index = index;
        self.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/skydns/"), b"/skydns0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
    }
}
