//! Prometheus metrics: lines read from Docker, lines queued/sent/dropped and reconnects per
//! route, whether each route is stalled and how often it stalled, attached containers, template
//! failures.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every metric logspout exports, registered in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Lines read from Docker, all containers.
    pub lines_read: IntCounter,
    /// Cuts made in lines longer than `LOGSPOUT_MAX_LINE_BYTES` (each cut adds a message).
    pub lines_split: IntCounter,
    /// Lines accepted into a route's queue, by route ID.
    pub lines_queued: IntCounterVec,
    /// Lines written to a route's destination, by route ID.
    pub lines_sent: IntCounterVec,
    /// Lines dropped (queue full or undeliverable), by route ID.
    pub lines_dropped: IntCounterVec,
    /// Connection attempts after a lost connection or a failed attempt, by route ID.
    pub reconnects: IntCounterVec,
    /// 1 while a route cannot deliver (its attempts fail or time out), else 0, by route ID.
    pub route_stalled: IntGaugeVec,
    /// Times a route became stalled, by route ID.
    pub route_stalls: IntCounterVec,
    /// Containers whose logs are being read.
    pub attached_containers: IntGauge,
    /// `/logs` streams: open now, refused at `LOGSPOUT_MAX_TAPS`, lines lost by slow readers.
    pub taps: crate::tap::TapMetrics,
    /// Multiline groups sent early because they reached `MULTILINE_MAX_BYTES`, by route ID.
    pub multiline_capped: IntCounterVec,
    /// Messages too large for one UDP datagram (sent as several, or cut), by route ID.
    pub udp_oversize: IntCounterVec,
    /// HTTP connections closed at once because the server held its maximum.
    pub http_refused: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let lines_read = IntCounter::new(
            "logspout_lines_read_total",
            "Log lines read from Docker (all containers)",
        )?;
        let lines_split = IntCounter::new(
            "logspout_lines_split_total",
            "Cuts made in lines longer than LOGSPOUT_MAX_LINE_BYTES (each cut ships one more message)",
        )?;
        let per_route =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["route"]);
        let lines_queued = per_route(
            "logspout_route_lines_in_total",
            "Log lines queued for a route",
        )?;
        let lines_sent = per_route(
            "logspout_route_lines_out_total",
            "Log lines written to a route's destination",
        )?;
        let lines_dropped = per_route(
            "logspout_route_lines_dropped_total",
            "Log lines dropped because the route's queue was full or the destination refused them",
        )?;
        let reconnects = per_route(
            "logspout_route_reconnects_total",
            "Connection attempts to a route's destination after a lost connection or a failed attempt",
        )?;
        let route_stalled = IntGaugeVec::new(
            Opts::new(
                "logspout_route_stalled",
                "1 while a route's connects, TLS handshakes or writes fail or time out (messages stay queued), else 0",
            ),
            &["route"],
        )?;
        let route_stalls = per_route(
            "logspout_route_stalls_total",
            "Times a route became stalled (a connect, TLS handshake or write failed or timed out)",
        )?;
        let attached_containers = IntGauge::new(
            "logspout_attached_containers",
            "Containers whose logs are being read",
        )?;
        let taps = crate::tap::TapMetrics {
            open: IntGauge::new("logspout_http_taps", "/logs streams open now")?,
            refused: IntCounter::new(
                "logspout_http_taps_refused_total",
                "/logs requests refused with 429 because LOGSPOUT_MAX_TAPS streams were open",
            )?,
            dropped: IntCounter::new(
                "logspout_http_tap_lines_dropped_total",
                "Lines a /logs client lost because it read too slowly",
            )?,
        };
        let multiline_capped = per_route(
            "logspout_route_multiline_capped_total",
            "Multiline groups sent before they ended because they reached MULTILINE_MAX_BYTES",
        )?;
        let udp_oversize = per_route(
            "logspout_route_udp_oversize_total",
            "Messages larger than one UDP datagram (65,507 bytes): sent as several datagrams, or cut when the header alone is that large",
        )?;
        let http_refused = IntCounter::new(
            "logspout_http_connections_refused_total",
            "HTTP connections closed at once because 256 were open",
        )?;
        registry.register(Box::new(http_refused.clone()))?;
        // Process-wide, as templates are compiled without access to the registry.
        registry.register(Box::new(crate::template::ERRORS.clone()))?;
        registry.register(Box::new(taps.open.clone()))?;
        registry.register(Box::new(taps.refused.clone()))?;
        registry.register(Box::new(taps.dropped.clone()))?;
        registry.register(Box::new(multiline_capped.clone()))?;
        registry.register(Box::new(udp_oversize.clone()))?;
        registry.register(Box::new(lines_read.clone()))?;
        registry.register(Box::new(lines_split.clone()))?;
        registry.register(Box::new(lines_queued.clone()))?;
        registry.register(Box::new(lines_sent.clone()))?;
        registry.register(Box::new(lines_dropped.clone()))?;
        registry.register(Box::new(reconnects.clone()))?;
        registry.register(Box::new(route_stalled.clone()))?;
        registry.register(Box::new(route_stalls.clone()))?;
        registry.register(Box::new(attached_containers.clone()))?;
        Ok(Self {
            registry,
            lines_read,
            lines_split,
            lines_queued,
            lines_sent,
            lines_dropped,
            reconnects,
            route_stalled,
            route_stalls,
            attached_containers,
            taps,
            multiline_capped,
            udp_oversize,
            http_refused,
        })
    }

    /// Forgets the per-route series of a deleted route.
    pub fn remove_route(&self, route: &str) {
        for vec in [
            &self.lines_queued,
            &self.lines_sent,
            &self.lines_dropped,
            &self.reconnects,
            &self.route_stalls,
            &self.multiline_capped,
            &self.udp_oversize,
        ] {
            let _ = vec.remove_label_values(&[route]);
        }
        let _ = self.route_stalled.remove_label_values(&[route]);
    }
}
