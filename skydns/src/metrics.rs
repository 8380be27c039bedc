//! Prometheus metrics of the DNS server and the index, and the HTTP routes that expose them
//! (`/metrics` or `PROMETHEUS_PATH`, and `/health`).

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::state::Shared;

/// Every metric skydns exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Requests by query type and response code.
    pub requests: IntCounterVec,
    /// The original's `dns_request_count_total{system}` (auth, recursive, reverse).
    pub requests_by_system: IntCounterVec,
    pub duration: Histogram,
    /// Forwarded client queries by outcome (`ok`, `failed`, `refused`).
    pub forwarded: IntCounterVec,
    pub index_records: IntGauge,
    pub index_age: IntGauge,
    pub index_synced: IntGauge,
    pub resyncs: IntCounter,
    pub skipped_entries: IntCounter,
    /// Forwards not started because `-forward-max-inflight` were running (answered SERVFAIL).
    pub forward_refused: IntCounter,
    /// TCP client connections closed at accept because `-tcp-max-connections` were open.
    pub tcp_refused: IntCounter,
    /// TCP client connections open now.
    pub tcp_connections: IntGauge,
}

/// Why the metrics could not be registered (a programming error, reported instead of a panic).
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "skydns_requests_total",
                "DNS requests by query type and rcode",
            ),
            &["type", "rcode"],
        )?;
        let requests_by_system = IntCounterVec::new(
            Opts::new(
                "skydns_skydns_dns_request_count_total",
                "DNS requests by system (auth, recursive, reverse), as the original names it",
            ),
            &["system"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "skydns_request_duration_seconds",
                "Time to answer a DNS request",
            )
            .buckets(vec![
                0.000_05, 0.0001, 0.000_25, 0.0005, 0.001, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )?;
        let forwarded = IntCounterVec::new(
            Opts::new(
                "skydns_forwarded_total",
                "Client queries forwarded, by outcome",
            ),
            &["result"],
        )?;
        let index_records = IntGauge::new("skydns_index_records", "Records in the index")?;
        let index_age = IntGauge::new(
            "skydns_index_age_seconds",
            "Seconds since the index was last known to match etcd (0 while the watch is live)",
        )?;
        let index_synced = IntGauge::new(
            "skydns_index_synced",
            "1 while the index follows etcd through a live watch",
        )?;
        let resyncs = IntCounter::new(
            "skydns_etcd_resyncs_total",
            "Full re-reads of the etcd prefix (start, lost watch, compaction)",
        )?;
        let skipped_entries = IntCounter::new(
            "skydns_index_skipped_entries_total",
            "etcd keys left out of the index (invalid key or value)",
        )?;
        let forward_refused = IntCounter::new(
            "skydns_forward_refused_total",
            "Forwards refused (SERVFAIL) because -forward-max-inflight forwards were running",
        )?;
        let tcp_refused = IntCounter::new(
            "skydns_tcp_refused_total",
            "TCP client connections closed at once because -tcp-max-connections were open",
        )?;
        let tcp_connections =
            IntGauge::new("skydns_tcp_connections", "TCP client connections open now")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(requests_by_system.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(forwarded.clone()))?;
        registry.register(Box::new(index_records.clone()))?;
        registry.register(Box::new(index_age.clone()))?;
        registry.register(Box::new(index_synced.clone()))?;
        registry.register(Box::new(resyncs.clone()))?;
        registry.register(Box::new(skipped_entries.clone()))?;
        registry.register(Box::new(forward_refused.clone()))?;
        registry.register(Box::new(tcp_refused.clone()))?;
        registry.register(Box::new(tcp_connections.clone()))?;
        Ok(Self {
            registry,
            requests,
            requests_by_system,
            duration,
            forwarded,
            index_records,
            index_age,
            index_synced,
            resyncs,
            skipped_entries,
            forward_refused,
            tcp_refused,
            tcp_connections,
        })
    }
}

/// `/health` (200 when the index is synced, 503 otherwise, the body saying for how long and
/// how many records are being answered from the last index) plus the metrics at `path`.
pub fn router(shared: Arc<Shared>, path: &str) -> Router {
    let for_metrics = shared.clone();
    let metrics =
        common::http::metrics_router_with(shared.metrics.registry.clone(), path, move || {
            refresh_age(&for_metrics)
        });
    let health = get(move || {
        let shared = shared.clone();
        async move {
            refresh_age(&shared);
            let records = shared.index.load().len();
            match shared.sync.age() {
                None => (
                    StatusCode::OK,
                    format!("synced with etcd; {records} records\n"),
                ),
                Some(age) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "index not synced with etcd for {} s; answering from the last index \
                         ({records} records)\n",
                        age.as_secs()
                    ),
                ),
            }
        }
    });
    metrics.route("/health", health)
}

/// Sets `skydns_index_age_seconds` (0 while the watch is live) and `skydns_index_synced` from
/// the sync state, the one place that holds them.
fn refresh_age(shared: &Shared) {
    let age = shared.sync.age();
    let seconds = age.map_or(0, |age| age.as_secs());
    shared
        .metrics
        .index_age
        .set(i64::try_from(seconds).unwrap_or(i64::MAX));
    shared.metrics.index_synced.set(i64::from(age.is_none()));
}
