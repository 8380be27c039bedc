//! The HTTP side of skydns: `/metrics` (or `PROMETHEUS_PATH`), `/health`, and `/`, a
//! read-only page listing the zone as it is answered right now.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::index::{Host, Leaf};
use crate::resolve::answer_ttl;
use crate::state::Shared;

/// Rows the page shows unless `?limit=` asks for another number (at most [`MAX_ROWS`]).
const DEFAULT_ROWS: usize = 1000;
/// The most rows one page renders, whatever `?limit=` says (a page of a million records
/// would be hundreds of megabytes).
const MAX_ROWS: usize = 20_000;

/// `/health` (200 when the index is synced, 503 otherwise, the body saying for how long and
/// how many records are being answered from the last index), the metrics at `path`, and the
/// zone page at `/`. Every route is a GET: nothing here changes state.
pub fn router(shared: Arc<Shared>, path: &str) -> Router {
    let for_metrics = shared.clone();
    let for_page = shared.clone();
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
    let page = get(move |Query(query): Query<PageQuery>| zone_page(for_page.clone(), query));
    let router = metrics.route("/health", health);
    // PROMETHEUS_PATH=/ keeps `/` for the metrics, as it was.
    if path == "/" {
        router
    } else {
        router.route("/", page)
    }
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

/// The page's query: `?q=` keeps names containing that text, `?limit=` caps the rows.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    limit: Option<usize>,
}

/// One record as the page lists it.
#[derive(Debug)]
struct Row {
    name: String,
    kind: &'static str,
    target: String,
    port: String,
    priority: u16,
    weight: u16,
    text: String,
    ttl: u32,
    lease: String,
    key: String,
}

#[derive(Template)]
#[template(path = "zone.html")]
struct ZonePage {
    domain: String,
    records: usize,
    synced: bool,
    state: String,
    filter: String,
    rows: Vec<Row>,
    /// Records matching the filter that are not shown (beyond the row limit).
    more: usize,
    version: &'static str,
}

async fn zone_page(shared: Arc<Shared>, query: PageQuery) -> Response {
    refresh_age(&shared);
    let index = shared.index.load();
    let now = Instant::now();
    let limit = query.limit.unwrap_or(DEFAULT_ROWS).min(MAX_ROWS);
    let needle = query.q.to_ascii_lowercase();
    let mut rows = Vec::new();
    let mut more = 0;
    index.visit(&mut |leaf| {
        if needle.is_empty() && rows.len() == limit {
            // Unfiltered: the rest is counted without walking it.
            more = index.len().saturating_sub(limit);
            return false;
        }
        let name = leaf.name.to_ascii();
        if needle.is_empty() || name.to_ascii_lowercase().contains(&needle) {
            if rows.len() < limit {
                rows.push(row(&shared, &index, leaf, name, now));
            } else {
                more += 1;
            }
        }
        true
    });
    let (synced, state) = match shared.sync.age() {
        None => (true, "synced with etcd (live watch)".to_owned()),
        Some(age) => (
            false,
            format!(
                "not synced with etcd for {} s: answering from the last index",
                age.as_secs()
            ),
        ),
    };
    let page = ZonePage {
        domain: shared.zone.domain.to_ascii(),
        records: index.len(),
        synced,
        state,
        filter: query.q,
        rows,
        more,
        version: env!("CARGO_PKG_VERSION"),
    };
    match page.render() {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                // Nothing on the page comes from elsewhere; forbid it all the same.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            html,
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "cannot render the zone page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the page\n",
            )
                .into_response()
        }
    }
}

fn row(
    shared: &Shared,
    index: &crate::index::ZoneIndex,
    leaf: &Leaf,
    name: String,
    now: Instant,
) -> Row {
    let (kind, target) = match &leaf.host {
        Host::V4(ip) => ("A", IpAddr::V4(*ip).to_string()),
        Host::V6(ip) => ("AAAA", IpAddr::V6(*ip).to_string()),
        Host::Name(target) => ("CNAME / SRV", target.to_ascii()),
        Host::Empty => ("TXT", String::new()),
    };
    let lease = match (leaf.lease, index.lease_remaining(leaf, now)) {
        (0, _) => "none".to_owned(),
        (_, Some(left)) => format!("{left} s"),
        (id, None) => format!("{id:x} (unknown)"),
    };
    Row {
        name,
        kind,
        target,
        port: match leaf.record.port {
            0 => String::new(),
            port => port.to_string(),
        },
        priority: match leaf.record.priority {
            0 => shared.zone.priority,
            p => p,
        },
        weight: leaf.record.weight,
        text: leaf.record.text.clone(),
        ttl: answer_ttl(&shared.zone, index, leaf, now),
        lease,
        key: leaf.key.clone(),
    }
}
