//! Authoritative answers for names inside the domain, computed from one index snapshot:
//! A/AAAA (with CNAME chasing), SRV (weights, targets, glue), TXT, MX, CNAME, NS, SOA, PTR, and
//! the NXDOMAIN/NODATA distinction. Only external CNAME/SRV/MX targets leave the process (to
//! the forwarders).

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::keys::is_wildcard_label;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;

use crate::config::Zone;
use crate::index::{Host, Leaf, ZoneIndex};
use crate::upstream::Upstream;

/// Longest CNAME chain followed inside one answer (as the original).
const MAX_CNAME_CHAIN: usize = 8;
/// SOA timers of the original: refresh, retry, expire.
const SOA_TIMERS: (i32, i32, i32) = (28800, 7200, 604_800);

/// An authoritative answer, before size fitting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// Records for the answer and additional sections, or `None` when the name does not exist.
type Found = Option<(Vec<Record>, Vec<Record>)>;

/// Answers queries from one index snapshot.
#[derive(Debug)]
pub struct Resolver<'a> {
    pub zone: &'a Zone,
    pub index: &'a ZoneIndex,
    pub upstream: &'a Upstream,
    pub now: Instant,
    /// No more answers than this can fit in the reply (every RR takes at least 12 bytes), so
    /// records past it are not built.
    pub max_answers: usize,
}

/// The most answer records a message of `limit` bytes can hold.
pub fn max_answers(limit: u16) -> usize {
    usize::from(limit) / 12 + 1
}

/// The index path of a lower-case name: its labels in reverse order.
pub fn segments(name: &Name) -> Option<Vec<&str>> {
    name.iter()
        .rev()
        .map(|label| std::str::from_utf8(label).ok())
        .collect()
}

impl Resolver<'_> {
    /// The answer for `owner` (the question name as sent) whose lower-case lookup name is
    /// `lookup` (already rewritten for `local.dns.<domain>`), inside the domain.
    pub async fn authoritative(&self, owner: &Name, lookup: &Name, qtype: RecordType) -> Answer {
        let apex = lookup == &self.zone.domain;
        let found: Found = match qtype {
            RecordType::SOA if apex => Some((vec![self.soa(self.zone.ttl)], Vec::new())),
            RecordType::NS if apex => Some(self.ns_records(owner)),
            RecordType::A | RecordType::AAAA => self
                .address_records(owner, lookup, qtype, false, &mut Vec::new())
                .await
                .map(|a| (a, Vec::new())),
            // RFC 8482: answer ANY with a subset (the addresses) instead of every RRset.
            RecordType::ANY => self
                .address_records(owner, lookup, qtype, true, &mut Vec::new())
                .await
                .map(|a| (a, Vec::new())),
            RecordType::SRV => self.srv_records(owner, lookup).await,
            RecordType::MX => self.mx_records(owner, lookup).await,
            RecordType::TXT => self.txt_records(owner, lookup).map(|a| (a, Vec::new())),
            RecordType::CNAME => self.cname_record(owner, lookup).map(|a| (a, Vec::new())),
            _ => self.exists(lookup).then(|| (Vec::new(), Vec::new())),
        };
        match found {
            Some((answers, additionals)) if !answers.is_empty() => finish(
                Answer {
                    rcode: ResponseCode::NoError,
                    answers,
                    authorities: Vec::new(),
                    additionals,
                },
                self.zone.ttl,
            ),
            Some(_) => self.negative(ResponseCode::NoError),
            None if apex => self.negative(ResponseCode::NoError),
            None => self.negative(ResponseCode::NXDomain),
        }
    }

    /// The PTR answer for a reverse name, if the index has a leaf with a name host there.
    pub fn ptr_record(&self, owner: &Name, lookup: &Name) -> Option<Answer> {
        let segments = segments(lookup)?;
        let leaf = self.index.exact(&segments)??;
        let Host::Name(target) = &leaf.host else {
            return None;
        };
        let record = Record::from_rdata(
            owner.clone(),
            self.ttl(&leaf),
            RData::PTR(PTR(target.clone())),
        );
        Some(Answer {
            rcode: ResponseCode::NoError,
            answers: vec![record],
            ..Answer::default()
        })
    }

    /// The servers of the most specific stub zone containing `lower`, if any. Stub servers are
    /// the records below `stub.dns.<domain>` with an IP host: the key's name minus its first
    /// label and minus `stub.dns.<domain>` is the zone; port 0 means 53.
    pub fn stub_servers(&self, lower: &Name) -> Option<Vec<SocketAddr>> {
        let leaves = self.index.lookup(&segments(&self.zone.stub_name)?)?;
        let suffix = usize::from(self.zone.stub_name.num_labels());
        let mut best: Option<(Name, Vec<SocketAddr>)> = None;
        for leaf in &leaves {
            let ip = match &leaf.host {
                Host::V4(ip) => IpAddr::V4(*ip),
                Host::V6(ip) => IpAddr::V6(*ip),
                _ => {
                    tracing::debug!(key = %leaf.key, "stub server needs an IP host; skipped");
                    continue;
                }
            };
            let labels = usize::from(leaf.name.num_labels());
            if labels < suffix + 2 {
                continue;
            }
            let Ok(mut zone) =
                Name::from_labels(leaf.name.iter().skip(1).take(labels - 1 - suffix))
            else {
                continue;
            };
            zone.set_fqdn(true);
            if zone == self.zone.local_name || !zone.zone_of(lower) {
                continue;
            }
            let port = match leaf.record.port {
                0 => 53,
                port => port,
            };
            let server = SocketAddr::new(ip, port);
            match &mut best {
                Some((current, servers)) if *current == zone => servers.push(server),
                Some((current, _)) if current.num_labels() >= zone.num_labels() => {}
                _ => best = Some((zone, vec![server])),
            }
        }
        best.map(|(_, servers)| servers)
    }

    fn negative(&self, rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            authorities: vec![self.soa(self.zone.min_ttl)],
            ..Answer::default()
        }
    }

    /// The zone's SOA with `ttl`; the serial is the Unix time truncated to the hour.
    pub fn soa(&self, ttl: u32) -> Record {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let serial = u32::try_from(now - now % 3600).unwrap_or(u32::MAX);
        let (refresh, retry, expire) = SOA_TIMERS;
        Record::from_rdata(
            self.zone.domain.clone(),
            ttl,
            RData::SOA(SOA::new(
                self.zone.ns_name.clone(),
                self.zone.hostmaster.clone(),
                serial,
                refresh,
                retry,
                expire,
                self.zone.min_ttl,
            )),
        )
    }

    /// Whether the name exists (NODATA rather than NXDOMAIN): as for a lookup, the part above
    /// the first wildcard label must exist. One node per label, never the subtree below.
    fn exists(&self, lookup: &Name) -> bool {
        segments(lookup).is_some_and(|s| {
            let fixed = s
                .iter()
                .position(|label| is_wildcard_label(label))
                .unwrap_or(s.len());
            self.index.exists(&s[..fixed])
        })
    }

    /// The leaves at or below a name, with the original's de-duplication on
    /// (host, port, priority, weight, text); `None` when the name does not exist.
    fn services(&self, lookup: &Name) -> Option<Vec<Arc<Leaf>>> {
        let leaves = self.index.lookup(&segments(lookup)?)?;
        if leaves.len() < 2 {
            return Some(leaves);
        }
        let mut keep = Vec::with_capacity(leaves.len());
        {
            let mut seen = HashSet::with_capacity(leaves.len());
            for (i, leaf) in leaves.iter().enumerate() {
                let r = &leaf.record;
                if seen.insert((
                    r.host.as_str(),
                    r.port,
                    r.priority,
                    r.weight,
                    r.text.as_str(),
                )) {
                    keep.push(i);
                }
            }
        }
        if keep.len() == leaves.len() {
            return Some(leaves);
        }
        Some(keep.into_iter().map(|i| leaves[i].clone()).collect())
    }

    /// TTL of one record: the smaller of the service's `ttl` and its lease's remaining time,
    /// whichever are set, else the configured default.
    fn ttl(&self, leaf: &Leaf) -> u32 {
        answer_ttl(self.zone, self.index, leaf, self.now)
    }

    fn priority(&self, leaf: &Leaf) -> u16 {
        match leaf.record.priority {
            0 => self.zone.priority,
            p => p,
        }
    }

    fn in_domain(&self, lower: &Name) -> bool {
        self.zone.domain.zone_of(lower)
    }

    /// A/AAAA records of a name (both families when `both`), following CNAMEs. `None` when
    /// the name does not exist.
    fn address_records<'s>(
        &'s self,
        owner: &'s Name,
        lookup: &'s Name,
        qtype: RecordType,
        both: bool,
        chain: &'s mut Vec<Name>,
    ) -> Pin<Box<dyn Future<Output = Option<Vec<Record>>> + Send + 's>> {
        Box::pin(async move {
            let mut leaves = group(self.services(lookup)?);
            if leaves.len() > self.max_answers {
                // Only a random subset can fit: pick it before building records.
                if self.zone.round_robin {
                    leaves.shuffle(&mut rand::rng());
                }
                leaves.truncate(self.max_answers);
            }
            let want_a = both || qtype == RecordType::A;
            let want_aaaa = both || qtype == RecordType::AAAA;
            let mut out = Vec::with_capacity(leaves.len());
            let mut cnames = 0;
            for leaf in &leaves {
                let ttl = self.ttl(leaf);
                match &leaf.host {
                    Host::V4(ip) if want_a => {
                        out.push(Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))));
                    }
                    Host::V6(ip) if want_aaaa => {
                        out.push(Record::from_rdata(
                            owner.clone(),
                            ttl,
                            RData::AAAA(AAAA(*ip)),
                        ));
                    }
                    Host::Name(target) => {
                        if target.eq(owner)
                            || chain.len() >= MAX_CNAME_CHAIN
                            || chain.iter().any(|seen| seen == target)
                        {
                            tracing::debug!(%owner, %target, "CNAME loop or chain too long");
                            continue;
                        }
                        chain.push(target.clone());
                        let cname = Record::from_rdata(
                            owner.clone(),
                            ttl,
                            RData::CNAME(CNAME(target.clone())),
                        );
                        let lower = target.to_lowercase();
                        match self
                            .address_records(target, &lower, qtype, both, chain)
                            .await
                        {
                            Some(records) if !records.is_empty() => {
                                cnames += 1;
                                out.push(cname);
                                out.extend(records);
                            }
                            Some(_) => {}
                            None if self.in_domain(&lower) => {}
                            None => {
                                let rtype = if qtype == RecordType::ANY {
                                    RecordType::A
                                } else {
                                    qtype
                                };
                                if let Some(reply) = self.upstream.lookup(target, rtype).await {
                                    cnames += 1;
                                    out.push(cname);
                                    out.extend(reply.answers);
                                } else {
                                    tracing::debug!(%owner, %target, "incomplete CNAME chain");
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            if self.zone.round_robin && cnames <= 1 && out.len() > 1 {
                out.shuffle(&mut rand::rng());
            }
            Some(out)
        })
    }

    /// Address records for an SRV/MX target, added to the additional section.
    async fn target_addresses(&self, target: &Name, out: &mut Vec<Record>) {
        let lower = target.to_lowercase();
        if self.in_domain(&lower) {
            if let Some(records) = self
                .address_records(target, &lower, RecordType::A, true, &mut Vec::new())
                .await
            {
                out.extend(records);
            }
        } else if self.upstream.can_resolve(target) {
            if let Some(reply) = self.upstream.lookup(target, RecordType::A).await {
                out.extend(reply.answers);
            }
            if let Some(reply) = self.upstream.lookup(target, RecordType::AAAA).await {
                out.extend(
                    reply
                        .answers
                        .into_iter()
                        .filter(|r| r.record_type() != RecordType::CNAME),
                );
            }
        }
    }

    async fn srv_records(&self, owner: &Name, lookup: &Name) -> Found {
        let leaves: Vec<Arc<Leaf>> = group(self.services(lookup)?)
            .into_iter()
            .filter(|l| l.host != Host::Empty)
            .collect();
        let mut totals: Vec<(u16, f64)> = Vec::new();
        for leaf in &leaves {
            let priority = self.priority(leaf);
            let weight = f64::from(weight_of(leaf));
            match totals.iter_mut().find(|(p, _)| *p == priority) {
                Some((_, total)) => *total += weight,
                None => totals.push((priority, weight)),
            }
        }
        let mut answers = Vec::with_capacity(leaves.len().min(self.max_answers));
        let mut additionals = Vec::new();
        let mut targets_done: HashSet<Name> = HashSet::new();
        for leaf in leaves.iter().take(self.max_answers) {
            let priority = self.priority(leaf);
            let total = totals
                .iter()
                .find(|(p, _)| *p == priority)
                .map_or(100.0, |(_, t)| *t);
            let weight = srv_weight(weight_of(leaf), total);
            let ttl = self.ttl(leaf);
            let target = target_of(leaf);
            answers.push(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::SRV(SRV::new(priority, weight, leaf.record.port, target.clone())),
            ));
            self.glue(leaf, &target, ttl, &mut targets_done, &mut additionals)
                .await;
        }
        Some((answers, additionals))
    }

    /// The additional records of an SRV/MX target: the leaf's own address, or the target's.
    async fn glue(
        &self,
        leaf: &Leaf,
        target: &Name,
        ttl: u32,
        done: &mut HashSet<Name>,
        out: &mut Vec<Record>,
    ) {
        match &leaf.host {
            Host::V4(ip) => out.push(Record::from_rdata(target.clone(), ttl, RData::A(A(*ip)))),
            Host::V6(ip) => {
                out.push(Record::from_rdata(
                    target.clone(),
                    ttl,
                    RData::AAAA(AAAA(*ip)),
                ));
            }
            Host::Name(_) => {
                if done.insert(target.to_lowercase()) {
                    self.target_addresses(target, out).await;
                }
            }
            Host::Empty => {}
        }
    }

    async fn mx_records(&self, owner: &Name, lookup: &Name) -> Found {
        let leaves = self.services(lookup)?;
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        let mut targets_done = HashSet::new();
        for leaf in leaves
            .iter()
            .filter(|l| l.record.mail && l.host != Host::Empty)
            .take(self.max_answers)
        {
            let ttl = self.ttl(leaf);
            let target = target_of(leaf);
            answers.push(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::MX(MX::new(self.priority(leaf), target.clone())),
            ));
            self.glue(leaf, &target, ttl, &mut targets_done, &mut additionals)
                .await;
        }
        Some((answers, additionals))
    }

    fn txt_records(&self, owner: &Name, lookup: &Name) -> Option<Vec<Record>> {
        let leaves = group(self.services(lookup)?);
        Some(
            leaves
                .iter()
                .filter(|l| !l.record.text.is_empty())
                .map(|l| {
                    let chunks: Vec<&[u8]> = l.record.text.as_bytes().chunks(255).collect();
                    Record::from_rdata(
                        owner.clone(),
                        self.ttl(l),
                        RData::TXT(TXT::from_bytes(chunks)),
                    )
                })
                .collect(),
        )
    }

    fn cname_record(&self, owner: &Name, lookup: &Name) -> Option<Vec<Record>> {
        let leaf = self.index.exact(&segments(lookup)?)?;
        Some(match leaf.as_deref() {
            Some(Leaf {
                host: Host::Name(target),
                ..
            }) => vec![Record::from_rdata(
                owner.clone(),
                self.ttl(leaf.as_deref()?),
                RData::CNAME(CNAME(target.clone())),
            )],
            _ => Vec::new(),
        })
    }

    fn ns_records(&self, owner: &Name) -> (Vec<Record>, Vec<Record>) {
        let leaves = self
            .services(&self.zone.ns_name)
            .map(group)
            .unwrap_or_default();
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        for leaf in &leaves {
            let ttl = self.ttl(leaf);
            let glue = match &leaf.host {
                Host::V4(ip) => RData::A(A(*ip)),
                Host::V6(ip) => RData::AAAA(AAAA(*ip)),
                _ => {
                    tracing::warn!(key = %leaf.key, "NS record needs an IP address as host; skipped");
                    continue;
                }
            };
            answers.push(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::NS(NS(leaf.name.clone())),
            ));
            additionals.push(Record::from_rdata(leaf.name.clone(), ttl, glue));
        }
        (answers, additionals)
    }
}

/// The SRV/MX target of a leaf: its host name, or for an address its own name, less
/// `targetstrip` labels.
fn target_of(leaf: &Leaf) -> Name {
    match &leaf.host {
        Host::Name(host) => strip(host, leaf.record.targetstrip),
        _ => strip(&leaf.name, leaf.record.targetstrip),
    }
}

fn weight_of(leaf: &Leaf) -> u16 {
    match leaf.record.weight {
        0 => 100,
        w => w,
    }
}

/// The original's SRV weight: the record's share of its priority's total, in whole percent,
/// rounded down.
pub fn srv_weight(weight: u16, total: f64) -> u16 {
    let share = (100.0 / total) * f64::from(weight);
    // The share is between 0 and 100, so the conversion cannot overflow.
    share.floor().clamp(0.0, 100.0) as u16
}

/// Removes `count` labels from the left of `name`, unless that would consume it entirely.
pub fn strip(name: &Name, count: u32) -> Name {
    let labels = u32::from(name.num_labels());
    if count == 0 || count >= labels {
        return name.clone();
    }
    let keep = usize::try_from(labels - count).unwrap_or(0);
    let mut stripped = name.trim_to(keep);
    stripped.set_fqdn(true);
    stripped
}

/// The original's group filter: the shallowest grouped record decides the group, ungrouped
/// records always pass, disagreement at the shallowest level disables filtering.
pub fn group(leaves: Vec<Arc<Leaf>>) -> Vec<Arc<Leaf>> {
    let Some(first) = leaves.first() else {
        return leaves;
    };
    let mut group = first.record.group.as_str();
    let mut depth = first.depth;
    for leaf in &leaves {
        if leaf.depth < depth {
            if leaf.record.group.is_empty() {
                break;
            }
            group = leaf.record.group.as_str();
            depth = leaf.depth;
        }
    }
    if group.is_empty()
        || leaves
            .iter()
            .any(|l| l.depth == depth && !l.record.group.is_empty() && l.record.group != group)
    {
        return leaves;
    }
    let group = group.to_owned();
    leaves
        .into_iter()
        .filter(|l| l.record.group.is_empty() || l.record.group == group)
        .collect()
}

/// De-duplicates the answer and additional sections (one CNAME per owner) and gives every
/// answer the smallest TTL of the answer, capped at the default, when there is more than one.
fn finish(mut answer: Answer, default_ttl: u32) -> Answer {
    dedup(&mut answer.answers);
    dedup(&mut answer.additionals);
    if answer.answers.len() > 1 {
        let min = answer
            .answers
            .iter()
            .map(|r| r.ttl)
            .min()
            .unwrap_or(default_ttl)
            .min(default_ttl);
        for record in &mut answer.answers {
            record.ttl = min;
        }
    }
    answer
}

fn dedup(records: &mut Vec<Record>) {
    if records.len() < 2 {
        return;
    }
    let keep: Vec<bool> = {
        // Name's Hash and Eq ignore case.
        let mut seen = HashSet::with_capacity(records.len());
        records
            .iter()
            .map(|r| {
                let rdata = (r.record_type() != RecordType::CNAME).then_some(&r.data);
                seen.insert((&r.name, r.record_type(), rdata))
            })
            .collect()
    };
    if keep.iter().all(|k| *k) {
        return;
    }
    let mut keep = keep.into_iter();
    records.retain(|_| keep.next().unwrap_or(true));
}

/// The TTL a leaf's answers carry at `now`: the lower of the record's `ttl` and its lease's
/// time left, either alone when the other is absent, else the zone's `ttl`.
pub fn answer_ttl(zone: &Zone, index: &ZoneIndex, leaf: &Leaf, now: Instant) -> u32 {
    let lease = index.lease_remaining(leaf, now).unwrap_or(0);
    match (lease, leaf.record.ttl) {
        (0, 0) => zone.ttl,
        (0, ttl) | (ttl, 0) => ttl,
        (a, b) => a.min(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::KeySchema;

    fn leaf(key: &str, value: &str) -> Arc<Leaf> {
        Arc::new(Leaf::parse(&KeySchema::default(), key.as_bytes(), value.as_bytes(), 0).unwrap())
    }

    #[test]
    fn srv_weights_are_rounded_down_percentages() {
        // (weights within one priority, expected SRV weights) from the original's tests.
        let cases: &[(&[u16], &[u16])] = &[
            (&[100, 100, 100], &[33, 33, 33]),
            (&[130, 80, 150], &[36, 22, 41]),
            (&[100], &[100]),
            (&[10, 20], &[33, 66]),
            (&[100, 100], &[50, 50]),
        ];
        for (weights, expected) in cases {
            let total: f64 = weights.iter().map(|w| f64::from(*w)).sum();
            let got: Vec<u16> = weights.iter().map(|w| srv_weight(*w, total)).collect();
            assert_eq!(&got, expected, "{weights:?}");
        }
    }

    #[test]
    fn targetstrip_removes_left_labels_but_never_the_whole_name() {
        let name = Name::from_ascii("es1.elasticsearch-9200.staging.example.local.").unwrap();
        let cases = [
            (0, "es1.elasticsearch-9200.staging.example.local."),
            (1, "elasticsearch-9200.staging.example.local."),
            (4, "local."),
            (5, "es1.elasticsearch-9200.staging.example.local."),
            (9, "es1.elasticsearch-9200.staging.example.local."),
        ];
        for (count, expected) in cases {
            assert_eq!(strip(&name, count).to_ascii(), expected, "{count}");
        }
    }

    #[test]
    fn groups_follow_the_shallowest_grouped_record() {
        let hosts = |leaves: Vec<Arc<Leaf>>| -> Vec<String> {
            leaves.iter().map(|l| l.record.host.clone()).collect()
        };
        type Entries<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Entries, &[&str])] = &[
            (
                &[
                    ("/skydns/test/dom/a", r#"{"host":"127.0.0.1","group":"g1"}"#),
                    (
                        "/skydns/test/dom/sub/b",
                        r#"{"host":"127.0.0.2","group":"g1"}"#,
                    ),
                ],
                &["127.0.0.1", "127.0.0.2"],
            ),
            (
                &[
                    (
                        "/skydns/test/dom1/a",
                        r#"{"host":"127.0.0.1","group":"g1"}"#,
                    ),
                    (
                        "/skydns/test/dom1/sub/b",
                        r#"{"host":"127.0.0.2","group":"g2"}"#,
                    ),
                ],
                &["127.0.0.1"],
            ),
            (
                &[
                    (
                        "/skydns/test/dom2/a",
                        r#"{"host":"127.0.0.1","group":"g1"}"#,
                    ),
                    ("/skydns/test/dom2/sub/b", r#"{"host":"127.0.0.2"}"#),
                ],
                &["127.0.0.1", "127.0.0.2"],
            ),
            (
                &[
                    ("/skydns/test/d3/a", r#"{"host":"127.0.0.1","group":"g1"}"#),
                    ("/skydns/test/d3/b", r#"{"host":"127.0.0.2","group":"g2"}"#),
                ],
                &["127.0.0.1", "127.0.0.2"],
            ),
        ];
        for (entries, expected) in cases {
            let leaves = entries.iter().map(|(k, v)| leaf(k, v)).collect();
            assert_eq!(hosts(group(leaves)), *expected, "{entries:?}");
        }
    }

    #[test]
    fn answers_are_deduplicated_and_ttls_unified() {
        let owner = Name::from_ascii("x.test.").unwrap();
        let a = |ip: [u8; 4], ttl| Record::from_rdata(owner.clone(), ttl, RData::A(A(ip.into())));
        let answer = finish(
            Answer {
                answers: vec![
                    a([10, 0, 0, 1], 30),
                    a([10, 0, 0, 1], 30),
                    a([10, 0, 0, 2], 3600),
                ],
                ..Answer::default()
            },
            3600,
        );
        assert_eq!(answer.answers.len(), 2);
        assert!(answer.answers.iter().all(|r| r.ttl == 30));
        let long = finish(
            Answer {
                answers: vec![a([10, 0, 0, 1], 7200), a([10, 0, 0, 2], 7200)],
                ..Answer::default()
            },
            3600,
        );
        assert!(long.answers.iter().all(|r| r.ttl == 3600));
        let single = finish(
            Answer {
                answers: vec![a([10, 0, 0, 1], 7200)],
                ..Answer::default()
            },
            3600,
        );
        assert_eq!(single.answers[0].ttl, 7200);
    }
}
