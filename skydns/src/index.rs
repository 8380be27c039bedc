//! The in-memory zone index: every service record under the etcd prefix, as a tree of key
//! segments. A plain data structure without I/O: the etcd watcher is its only writer, the DNS
//! handler reads immutable snapshots of it.
//!
//! Nodes are shared between snapshots (`Arc`) and copied on write along the path of a change,
//! so publishing a new snapshot after a put costs O(depth · fan-out), and a lookup walks
//! O(labels) nodes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::KeySchema;
use common::keys::is_wildcard_label;
use common::record::{HostKind, RecordError, ServiceRecord};
use hickory_proto::rr::Name;

/// Why one etcd key/value pair was left out of the index.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("key {key:?} is not a valid name: {source}")]
    InvalidKey {
        key: String,
        #[source]
        source: common::KeyError,
    },
    #[error("key {key:?} has upper-case letters; names are looked up in lower case")]
    UpperCaseKey { key: String },
    #[error("key {key:?} is not UTF-8")]
    NotUtf8 { key: String },
    #[error("value of key {key:?}: {source}")]
    InvalidValue {
        key: String,
        #[source]
        source: RecordError,
    },
    #[error("value of key {key:?}: host {host:?} is neither an IP address nor a domain name")]
    InvalidHost { key: String, host: String },
}

/// What a record's `host` resolves to, parsed once when the record is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// A domain name, fully qualified, case as stored.
    Name(Name),
    /// No host: the record only contributes TXT data.
    Empty,
}

/// One indexed service record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The etcd key.
    pub key: String,
    /// The name the key stands for (`es1.elasticsearch-9200.staging.example.local.`).
    pub name: Name,
    /// Number of key segments below the prefix (the "depth" used by groups).
    pub depth: usize,
    pub record: ServiceRecord,
    pub host: Host,
    /// etcd lease ID, 0 when the key has none.
    pub lease: i64,
}

impl Leaf {
    /// Builds a leaf from an etcd key/value pair under `schema`.
    pub fn parse(
        schema: &KeySchema,
        key: &[u8],
        value: &[u8],
        lease: i64,
    ) -> Result<Self, EntryError> {
        let key = std::str::from_utf8(key).map_err(|_| EntryError::NotUtf8 {
            key: String::from_utf8_lossy(key).into_owned(),
        })?;
        let domain = schema.name(key).map_err(|source| EntryError::InvalidKey {
            key: key.to_owned(),
            source,
        })?;
        if schema.key(&domain) != key {
            return Err(EntryError::UpperCaseKey {
                key: key.to_owned(),
            });
        }
        let name = Name::from_ascii(domain.to_fqdn()).map_err(|_| EntryError::InvalidKey {
            key: key.to_owned(),
            source: common::KeyError::NameTooLong {
                name: key.to_owned(),
            },
        })?;
        let record =
            ServiceRecord::from_json(value).map_err(|source| EntryError::InvalidValue {
                key: key.to_owned(),
                source,
            })?;
        let host = match record.host_kind() {
            HostKind::Empty => Host::Empty,
            HostKind::Ip(IpAddr::V4(v4)) => Host::V4(v4),
            HostKind::Ip(IpAddr::V6(v6)) => Host::V6(v6),
            HostKind::Name(text) => {
                Host::Name(
                    parse_host_name(text).ok_or_else(|| EntryError::InvalidHost {
                        key: key.to_owned(),
                        host: text.to_owned(),
                    })?,
                )
            }
        };
        Ok(Self {
            key: key.to_owned(),
            name,
            depth: domain.label_count(),
            record,
            host,
            lease,
        })
    }
}

fn parse_host_name(text: &str) -> Option<Name> {
    if text.contains(char::is_whitespace) {
        return None;
    }
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// The value at a node: a usable record, or a key whose value could not be used (the name
/// exists, but has no data).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Valid(Arc<Leaf>),
    Invalid,
}

#[derive(Debug, Clone, Default)]
struct Node {
    slot: Option<Slot>,
    children: BTreeMap<Box<str>, Arc<Node>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.slot.is_none() && self.children.is_empty()
    }

    /// Visits the valid leaves of this subtree in the order of `collect` until `visit`
    /// returns false; false if it was stopped.
    fn visit(&self, visit: &mut dyn FnMut(&Arc<Leaf>) -> bool) -> bool {
        if let Some(Slot::Valid(leaf)) = &self.slot {
            if !visit(leaf) {
                return false;
            }
        }
        self.children.values().all(|child| child.visit(visit))
    }

    /// Every valid leaf of this subtree, the node's own first, children in key order.
    fn collect(&self, out: &mut Vec<Arc<Leaf>>) {
        if let Some(Slot::Valid(leaf)) = &self.slot {
            out.push(leaf.clone());
        }
        for child in self.children.values() {
            child.collect(out);
        }
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        usize::from(matches!(self.slot, Some(Slot::Valid(_))))
            + self.children.values().map(|c| c.count()).sum::<usize>()
    }

    /// Descends along `pattern` (wildcards match any one segment) and collects the subtrees
    /// reached when the pattern is used up.
    fn collect_matching(&self, pattern: &[&str], out: &mut Vec<Arc<Leaf>>) {
        match pattern.split_first() {
            None => self.collect(out),
            Some((first, rest)) if is_wildcard_label(first) => {
                for child in self.children.values() {
                    child.collect_matching(rest, out);
                }
            }
            Some((first, rest)) => {
                if let Some(child) = self.children.get(*first) {
                    child.collect_matching(rest, out);
                }
            }
        }
    }
}

/// What etcd said about a lease, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseInfo {
    /// When the lease runs out unless it is kept alive.
    pub expires: Instant,
    /// The TTL it was granted with.
    pub granted: Duration,
}

/// One immutable snapshot of every record under the prefix.
#[derive(Debug, Clone, Default)]
pub struct ZoneIndex {
    root: Arc<Node>,
    leases: Arc<HashMap<i64, LeaseInfo>>,
    records: usize,
}

impl ZoneIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of usable records.
    pub fn len(&self) -> usize {
        self.records
    }

    /// True when no record is indexed.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Stores the record at `segments` (key order), replacing what was there.
    pub fn insert(&mut self, segments: &[&str], leaf: Arc<Leaf>) {
        self.set(segments, Slot::Valid(leaf));
    }

    /// Marks `segments` as existing without usable data (its value could not be read).
    pub fn insert_invalid(&mut self, segments: &[&str]) {
        self.set(segments, Slot::Invalid);
    }

    fn set(&mut self, segments: &[&str], slot: Slot) {
        let mut node = Arc::make_mut(&mut self.root);
        for segment in segments {
            node = Arc::make_mut(node.children.entry((*segment).into()).or_default());
        }
        let was_valid = matches!(node.slot, Some(Slot::Valid(_)));
        let is_valid = matches!(slot, Slot::Valid(_));
        node.slot = Some(slot);
        self.records = self.records + usize::from(is_valid) - usize::from(was_valid);
    }

    /// Removes the value at `segments` and prunes nodes left empty. True if there was one.
    pub fn remove(&mut self, segments: &[&str]) -> bool {
        if !self.contains(segments) {
            return false;
        }
        let removed_valid = remove_at(Arc::make_mut(&mut self.root), segments);
        if removed_valid {
            self.records -= 1;
        }
        true
    }

    fn contains(&self, segments: &[&str]) -> bool {
        self.node(segments).is_some_and(|n| n.slot.is_some())
    }

    fn node(&self, segments: &[&str]) -> Option<&Node> {
        let mut node: &Node = &self.root;
        for segment in segments {
            node = node.children.get(*segment)?;
        }
        Some(node)
    }

    /// True when the name exists: a record is stored at it or below it.
    pub fn exists(&self, segments: &[&str]) -> bool {
        self.node(segments).is_some()
    }

    /// Every record at or below `segments`; with wildcard segments (`*`, `any`), those whose
    /// key matches the pattern, and the records below them. `None` when nothing exists at the
    /// part of the path above the first wildcard (NXDOMAIN).
    pub fn lookup(&self, segments: &[&str]) -> Option<Vec<Arc<Leaf>>> {
        let fixed = segments
            .iter()
            .position(|s| is_wildcard_label(s))
            .unwrap_or(segments.len());
        let base = self.node(&segments[..fixed])?;
        let mut out = Vec::new();
        base.collect_matching(&segments[fixed..], &mut out);
        Some(out)
    }

    /// The record stored exactly at `segments`: `None` if the name does not exist,
    /// `Some(None)` if it exists without a usable record of its own.
    pub fn exact(&self, segments: &[&str]) -> Option<Option<Arc<Leaf>>> {
        let node = self.node(segments)?;
        Some(match &node.slot {
            Some(Slot::Valid(leaf)) => Some(leaf.clone()),
            _ => None,
        })
    }

    /// Records what etcd said about a lease.
    pub fn set_lease(&mut self, id: i64, info: LeaseInfo) {
        Arc::make_mut(&mut self.leases).insert(id, info);
    }

    /// Forgets a lease (it expired or was revoked).
    pub fn remove_lease(&mut self, id: i64) {
        if self.leases.contains_key(&id) {
            Arc::make_mut(&mut self.leases).remove(&id);
        }
    }

    /// Visits every valid leaf in key order until `visit` returns false.
    pub fn visit(&self, visit: &mut dyn FnMut(&Arc<Leaf>) -> bool) {
        self.root.visit(visit);
    }

    /// The leases known to the index.
    pub fn leases(&self) -> impl Iterator<Item = (i64, LeaseInfo)> + '_ {
        self.leases.iter().map(|(id, info)| (*id, *info))
    }

    /// True when the lease is known.
    pub fn has_lease(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Seconds the leaf's lease has left at `now`, rounded up and at least 1; `None` when the
    /// leaf has no lease or the lease is unknown.
    pub fn lease_remaining(&self, leaf: &Leaf, now: Instant) -> Option<u32> {
        if leaf.lease == 0 {
            return None;
        }
        let info = self.leases.get(&leaf.lease)?;
        let left = info.expires.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(secs).unwrap_or(u32::MAX).max(1))
    }

    /// Recounts the records (for tests of the incremental count).
    #[cfg(test)]
    fn recount(&self) -> usize {
        self.root.count()
    }
}

/// Removes the slot at `segments` below `node`, pruning empty nodes; true if it was valid.
fn remove_at(node: &mut Node, segments: &[&str]) -> bool {
    match segments.split_first() {
        None => matches!(node.slot.take(), Some(Slot::Valid(_))),
        Some((first, rest)) => {
            let Some(child) = node.children.get_mut(*first) else {
                return false;
            };
            let child = Arc::make_mut(child);
            let removed = remove_at(child, rest);
            if child.is_empty() {
                node.children.remove(*first);
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> KeySchema {
        KeySchema::default()
    }

    fn put(index: &mut ZoneIndex, key: &str, value: &str) {
        let schema = schema();
        let segments: Vec<&str> = schema.key_segments(key).unwrap().collect();
        match Leaf::parse(&schema, key.as_bytes(), value.as_bytes(), 0) {
            Ok(leaf) => index.insert(&segments, Arc::new(leaf)),
            Err(_) => index.insert_invalid(&segments),
        }
    }

    fn segs(name: &str) -> Vec<&str> {
        let mut labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        labels.reverse();
        labels
    }

    fn hosts(leaves: &[Arc<Leaf>]) -> Vec<String> {
        leaves.iter().map(|l| l.record.host.clone()).collect()
    }

    fn fixture() -> ZoneIndex {
        let mut index = ZoneIndex::new();
        for (key, value) in [
            (
                "/skydns/test/skydns/region1/development/server1/100",
                r#"{"host":"server1","port":8080}"#,
            ),
            (
                "/skydns/test/skydns/region1/production/server2/101",
                r#"{"host":"server2","port":80}"#,
            ),
            (
                "/skydns/test/skydns/region1/development/server1/104",
                r#"{"host":"10.0.0.1"}"#,
            ),
            (
                "/skydns/test/skydns/region2/production/server3/105",
                r#"{"host":"2001::8:8:8:8"}"#,
            ),
            ("/skydns/test/skydns/bad/x", "not json"),
            ("/skydns/test/skydns/bad/y", r#"{"host":"10.8.0.1"}"#),
        ] {
            put(&mut index, key, value);
        }
        index
    }

    #[test]
    fn lookups_by_name_directory_and_wildcard() {
        let index = fixture();
        // (query name, expected hosts or None for NXDOMAIN)
        let cases: &[(&str, Option<&[&str]>)] = &[
            (
                "104.server1.development.region1.skydns.test",
                Some(&["10.0.0.1"]),
            ),
            (
                "region1.skydns.test",
                Some(&["server1", "10.0.0.1", "server2"]),
            ),
            (
                "*.region1.skydns.test",
                Some(&["server1", "10.0.0.1", "server2"]),
            ),
            (
                "production.*.skydns.test",
                Some(&["server2", "2001::8:8:8:8"]),
            ),
            (
                "production.any.skydns.test",
                Some(&["server2", "2001::8:8:8:8"]),
            ),
            ("nomatch.*.skydns.test", Some(&[])),
            ("*.nothere.skydns.test", None),
            ("doesnotexist.skydns.test", None),
            ("bad.skydns.test", Some(&["10.8.0.1"])),
            ("x.bad.skydns.test", Some(&[])),
            ("region1", None),
        ];
        for (name, expected) in cases {
            let found = index.lookup(&segs(name)).map(|l| hosts(&l));
            let expected = expected.map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(found, expected, "{name}");
        }
    }

    #[test]
    fn exact_lookup_distinguishes_missing_directory_and_leaf() {
        let index = fixture();
        assert!(index.exact(&segs("nothere.skydns.test")).is_none());
        assert_eq!(index.exact(&segs("region1.skydns.test")), Some(None));
        assert_eq!(index.exact(&segs("x.bad.skydns.test")), Some(None));
        let leaf = index.exact(&segs("y.bad.skydns.test")).unwrap().unwrap();
        assert_eq!(leaf.host, Host::V4("10.8.0.1".parse().unwrap()));
        assert_eq!(leaf.name.to_ascii(), "y.bad.skydns.test.");
        assert_eq!(leaf.depth, 4);
    }

    #[test]
    fn removal_prunes_empty_directories_and_keeps_old_snapshots() {
        let mut index = fixture();
        assert_eq!(index.len(), 5);
        let snapshot = index.clone();
        assert!(index.remove(&segs("105.server3.production.region2.skydns.test")));
        assert!(!index.remove(&segs("105.server3.production.region2.skydns.test")));
        assert!(index.lookup(&segs("region2.skydns.test")).is_none());
        assert!(index.exists(&segs("skydns.test")));
        assert_eq!(index.len(), 4);
        assert_eq!(index.len(), index.recount());
        // The published snapshot is untouched by later writes.
        assert_eq!(
            snapshot.lookup(&segs("region2.skydns.test")).unwrap().len(),
            1
        );
        assert_eq!(snapshot.len(), snapshot.recount());
    }

    #[test]
    fn replacing_a_value_keeps_the_count() {
        let mut index = fixture();
        put(
            &mut index,
            "/skydns/test/skydns/bad/y",
            r#"{"host":"10.8.0.2"}"#,
        );
        put(
            &mut index,
            "/skydns/test/skydns/bad/x",
            r#"{"host":"10.8.0.3"}"#,
        );
        assert_eq!(index.len(), 6);
        assert_eq!(index.len(), index.recount());
        put(&mut index, "/skydns/test/skydns/bad/x", "{");
        assert_eq!(index.len(), 5);
        assert!(index.remove(&segs("x.bad.skydns.test")));
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn bad_entries_are_refused_with_the_key_named() {
        let schema = schema();
        let cases = [
            ("/skydns/test/Caps", r#"{"host":"10.0.0.1"}"#, "upper-case"),
            (
                "/skydns/test/a b",
                r#"{"host":"10.0.0.1"}"#,
                "not a valid name",
            ),
            ("/skydns/test/x", r#"{"ttl":"30"}"#, "value of key"),
            ("/skydns/test/x", r#"{"host":"a b"}"#, "neither an IP"),
        ];
        for (key, value, message) in cases {
            let err = Leaf::parse(&schema, key.as_bytes(), value.as_bytes(), 0).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(message) && text.contains(key),
                "{key}: {text}"
            );
        }
    }

    #[test]
    fn lease_remaining_rounds_up_and_never_reaches_zero() {
        let schema = schema();
        let mut index = ZoneIndex::new();
        let leaf = Leaf::parse(&schema, b"/skydns/test/a", br#"{"host":"10.0.0.1"}"#, 7).unwrap();
        let now = Instant::now();
        assert_eq!(index.lease_remaining(&leaf, now), None);
        index.set_lease(
            7,
            LeaseInfo {
                expires: now + Duration::from_millis(99_500),
                granted: Duration::from_secs(100),
            },
        );
        assert_eq!(index.lease_remaining(&leaf, now), Some(100));
        assert_eq!(
            index.lease_remaining(&leaf, now + Duration::from_secs(200)),
            Some(1)
        );
        index.remove_lease(7);
        assert_eq!(index.lease_remaining(&leaf, now), None);
    }
}
