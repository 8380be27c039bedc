//! Prometheus metrics of the DNS server and the index (served over HTTP by `http`).

use hickory_proto::op::ResponseCode;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Which part of the server answered, as the original's `system` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// The authoritative path (also CHAOS, and requests refused before any lookup).
    Auth,
    /// The response cache (never: answers come from the in-memory index).
    Cache,
    /// Forwarded to the nameservers.
    Recursive,
    /// PTR queries.
    Reverse,
    /// Forwarded to a stub zone's servers.
    Stub,
}

impl System {
    /// Every system, each at the index of its discriminant.
    const ALL: [Self; 5] = [
        Self::Auth,
        Self::Cache,
        Self::Recursive,
        Self::Reverse,
        Self::Stub,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Cache => "cache",
            Self::Recursive => "recursive",
            Self::Reverse => "reverse",
            Self::Stub => "stub",
        }
    }
}

/// Causes of the original's `dns_error_count_total`, in the order of [`Causes`]' fields.
const CAUSES: [&str; 5] = ["truncated", "overflow", "servfail", "refused", "nxdomain"];

/// `dns_request_duration_seconds` buckets: 1 ms and 3 ms, then Prometheus' defaults.
const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `dns_response_size_bytes` buckets: 0, 512, 1024, 1500, 2048, 4096, then 4096 steps to 64 KiB.
fn size_buckets() -> Vec<f64> {
    let mut buckets = vec![0.0, 512.0, 1024.0, 1500.0, 2048.0];
    buckets.extend((1..=16).map(|i| f64::from(i * 4096)));
    buckets
}

/// The original's per-system series, resolved once so a reply costs no label lookup.
#[derive(Debug, Clone)]
struct SystemSeries {
    requests: IntCounter,
    duration: Histogram,
    size: Histogram,
    /// Indexed like [`CAUSES`].
    errors: [IntCounter; 5],
}

/// Every metric skydns exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Requests by query type and response code.
    pub requests: IntCounterVec,
    /// The original's series by `system`, indexed like [`System::ALL`].
    systems: [SystemSeries; 5],
    /// The original's `dns_cachemiss_count_total{cache="response"}`.
    cache_miss_response: IntCounter,
    /// The original's `dns_cachemiss_count_total{cache="signature"}`: RRsets signed afresh
    /// (no signature in the cache still valid for a day).
    pub cache_miss_signature: IntCounter,
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
    /// The metrics with the original's under `skydns_skydns_` (the defaults of
    /// `PROMETHEUS_NAMESPACE` and `PROMETHEUS_SUBSYSTEM`).
    pub fn new() -> Result<Self, MetricsError> {
        Self::with_names("skydns", "skydns")
    }

    /// The metrics with the original's named `<namespace>_<subsystem>_<name>` (an empty part is
    /// left out, as Prometheus' Go client does).
    pub fn with_names(namespace: &str, subsystem: &str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let original = |name: &str, help: &str| {
            Opts::new(name, help)
                .namespace(namespace)
                .subsystem(subsystem)
        };
        let request_count = IntCounterVec::new(
            original("dns_request_count_total", "Counter of DNS requests made."),
            &["system"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::from(original(
                "dns_request_duration_seconds",
                "Histogram of the time (in seconds) each request took to resolve.",
            ))
            .buckets(DURATION_BUCKETS.to_vec()),
            &["system"],
        )?;
        let response_size = HistogramVec::new(
            HistogramOpts::from(original(
                "dns_response_size_bytes",
                "Size of the returns response in bytes.",
            ))
            .buckets(size_buckets()),
            &["system"],
        )?;
        let error_count = IntCounterVec::new(
            original(
                "dns_error_count_total",
                "Counter of DNS requests resulting in an error.",
            ),
            &["system", "cause"],
        )?;
        let cache_miss = IntCounterVec::new(
            original(
                "dns_cachemiss_count_total",
                "Counter of DNS requests that result in a cache miss.",
            ),
            &["cache"],
        )?;
        let systems = System::ALL.map(|system| {
            let label = system.label();
            SystemSeries {
                requests: request_count.with_label_values(&[label]),
                duration: request_duration.with_label_values(&[label]),
                size: response_size.with_label_values(&[label]),
                errors: CAUSES.map(|cause| error_count.with_label_values(&[label, cause])),
            }
        });
        let cache_miss_response = cache_miss.with_label_values(&["response"]);
        // Without DNSSEC signing the series stays at 0.
        let cache_miss_signature = cache_miss.with_label_values(&["signature"]);
        let requests = IntCounterVec::new(
            Opts::new(
                "skydns_requests_total",
                "DNS requests by query type and rcode",
            ),
            &["type", "rcode"],
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
        registry.register(Box::new(request_count))?;
        registry.register(Box::new(request_duration))?;
        registry.register(Box::new(response_size))?;
        registry.register(Box::new(error_count))?;
        registry.register(Box::new(cache_miss))?;
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
            systems,
            cache_miss_response,
            cache_miss_signature,
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

impl Metrics {
    /// Accounts one reply as the original does: its request, time and size under `system`, and
    /// one error cause at most (TC set, then longer than 65535 bytes, then the rcode).
    pub fn reply(
        &self,
        system: System,
        elapsed: std::time::Duration,
        len: usize,
        truncated: bool,
        rcode: ResponseCode,
    ) {
        let series = &self.systems[system as usize];
        series.requests.inc();
        series.duration.observe(elapsed.as_secs_f64());
        #[allow(clippy::cast_precision_loss)]
        series.size.observe(len as f64);
        let cause = if truncated {
            Some(0)
        } else if len > usize::from(u16::MAX) {
            Some(1)
        } else {
            match rcode {
                ResponseCode::ServFail => Some(2),
                ResponseCode::Refused => Some(3),
                ResponseCode::NXDomain => Some(4),
                _ => None,
            }
        };
        if let Some(cause) = cause {
            series.errors[cause].inc();
        }
    }

    /// An authoritative answer looked up (the original's response-cache miss).
    pub fn cache_miss(&self) {
        self.cache_miss_response.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_originals_names_take_namespace_and_subsystem() {
        let gathered = |metrics: &Metrics| -> Vec<String> {
            metrics
                .registry
                .gather()
                .iter()
                .map(|family| family.name().to_owned())
                .filter(|name| name.contains("dns_"))
                .collect()
        };
        let custom = Metrics::with_names("kube", "dns1").unwrap();
        assert!(
            gathered(&custom).contains(&"kube_dns1_dns_request_count_total".to_owned()),
            "{:?}",
            gathered(&custom)
        );
        let bare = Metrics::with_names("kube", "").unwrap();
        assert!(gathered(&bare).contains(&"kube_dns_cachemiss_count_total".to_owned()));
        assert!(Metrics::with_names("bad-name", "x").is_err());
    }
}
