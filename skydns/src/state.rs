//! What the DNS handler, the etcd watcher and the HTTP routes share: the zone settings, the
//! current index snapshot (swapped atomically by the watcher, its only writer), the sync flag,
//! the forwarders and the metrics.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::config::{Limits, Zone};
use crate::dnssec::Dnssec;
use crate::index::ZoneIndex;
use crate::metrics::Metrics;
use crate::upstream::{ForwardPool, Upstream};

/// State shared by every task of one server.
#[derive(Debug)]
pub struct Shared {
    pub zone: Zone,
    /// The latest index snapshot; readers `load()` it, only the watcher `store()`s.
    pub index: ArcSwap<ZoneIndex>,
    /// Whether the index follows etcd through a live watch, and since when it does not.
    pub sync: SyncState,
    pub upstream: Upstream,
    /// Clients allowed to have queries forwarded.
    pub forward_allow: Vec<IpNet>,
    pub metrics: Metrics,
    pub verbose: bool,
    /// Forward zones listed under `stub.dns.<domain>` to their servers.
    pub stubzones: bool,
    /// Bounds on forwards and TCP connections.
    pub limits: Limits,
    /// The zone key, when answers to DO queries are signed (`-dnssec`).
    pub dnssec: Option<Dnssec>,
}

/// What the server does besides answering from the index, as the flags and the etcd document
/// chose it.
#[derive(Debug, Default)]
pub struct Features {
    /// Log every query (`-verbose`).
    pub verbose: bool,
    /// Forward zones listed under `stub.dns.<domain>` (`-stubzones`).
    pub stubzones: bool,
    /// Sign answers to DO queries with this key (`-dnssec`).
    pub dnssec: Option<Dnssec>,
}

impl Shared {
    /// Everything one server shares, built once (the index starts empty until the watcher
    /// stores the first snapshot).
    pub fn new(
        zone: Zone,
        forward_allow: Vec<IpNet>,
        metrics: Metrics,
        features: Features,
        limits: Limits,
    ) -> Self {
        let pool = ForwardPool::new(limits.forward_max_inflight, metrics.forward_refused.clone());
        let upstream = Upstream::new(
            zone.nameservers.clone(),
            zone.read_timeout,
            zone.ns_rotate,
            zone.ndots,
            zone.upstream_ttl,
            pool,
        );
        Self {
            zone,
            index: ArcSwap::from_pointee(ZoneIndex::new()),
            sync: SyncState::new(),
            upstream,
            forward_allow,
            metrics,
            verbose: features.verbose,
            stubzones: features.stubzones,
            limits,
            dnssec: features.dnssec,
        }
    }

    /// True when `client` may have its queries forwarded.
    pub fn may_forward(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.forward_allow.iter().any(|net| net.contains(&client))
    }
}

/// Whether the index follows etcd: `None` while a live watch feeds it, otherwise the instant
/// since which it has not (the watch was lost, or the first read has not finished).
#[derive(Debug)]
pub struct SyncState(Mutex<Option<Instant>>);

impl SyncState {
    /// Not synced yet, since now.
    pub fn new() -> Self {
        Self(Mutex::new(Some(Instant::now())))
    }

    /// Records a live watch (`true`) or its loss; a loss keeps the instant of the first one.
    pub fn set(&self, synced: bool) {
        let mut since = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if synced {
            *since = None;
        } else if since.is_none() {
            *since = Some(Instant::now());
        }
    }

    /// How long the index has not followed etcd; `None` while it does.
    pub fn age(&self) -> Option<Duration> {
        let since = self.0.lock().unwrap_or_else(|e| e.into_inner());
        since.map(|t| t.elapsed())
    }
}

impl Default for SyncState {
    fn default() -> Self {
        Self::new()
    }
}
