//! Prometheus metrics of one registrator instance (served with `-metrics <addr>`).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The metrics; cheap to clone (handles to the same values).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Records this instance has in etcd.
    pub services: IntGauge,
    /// Docker container events seen, by action (`start`, `die`, `health_status`, `other`).
    pub events: IntCounterVec,
    /// Failed etcd requests (each is retried).
    pub etcd_errors: IntCounter,
    /// Times the Docker event stream was (re)connected.
    pub docker_connects: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let services = IntGauge::new(
            "registrator_services",
            "Service records this instance has in etcd",
        )?;
        let events = IntCounterVec::new(
            Opts::new(
                "registrator_docker_events_total",
                "Docker container events seen, by action",
            ),
            &["action"],
        )?;
        let etcd_errors = IntCounter::new(
            "registrator_etcd_errors_total",
            "Failed etcd requests (each is retried)",
        )?;
        let docker_connects = IntCounter::new(
            "registrator_docker_connects_total",
            "Times the Docker event stream was connected",
        )?;
        registry.register(Box::new(services.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(etcd_errors.clone()))?;
        registry.register(Box::new(docker_connects.clone()))?;
        Ok(Self {
            registry,
            services,
            events,
            etcd_errors,
            docker_connects,
        })
    }

    /// Counts one Docker event; actions outside the known few count as `other`.
    pub fn event(&self, action: &str) {
        let label = match action {
            "start" | "die" => action,
            a if a.starts_with("health_status") => "health_status",
            _ => "other",
        };
        self.events.with_label_values(&[label]).inc();
    }
}
