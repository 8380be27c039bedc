//! The DNS request handler: checks the message, dispatches to CHAOS, reverse (PTR),
//! forwarding or the authoritative resolver, fits the reply into the client's size (dropping
//! additional records first, then truncating with TC) and echoes EDNS.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, Metadata, OpCode, Query, ResponseCode, emit_message_parts,
};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::config::ORIGINAL_VERSION;
use crate::dnssec::Dnssec;
use crate::metrics::System;
use crate::resolve::{Answer, Resolver, max_answers};
use crate::state::Shared;
use crate::upstream::ForwardError;

/// EDNS0 local option (EDNS0LOCALSTART + 10) marking a query forwarded to a stub zone.
const STUB_LOOP_OPTION: u16 = 65011;

/// Largest UDP payload advertised and accepted.
const MAX_UDP_PAYLOAD: u16 = 4096;

/// A reply ready to be encoded.
#[derive(Debug, Clone)]
pub struct Reply {
    pub metadata: Metadata,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    pub edns: Option<Edns>,
    /// Which part answered, for the original's metrics (CHAOS and rejected requests: auth).
    pub system: System,
    /// Refused before any lookup (bad opcode, question count or EDNS version): no cache miss.
    pub rejected: bool,
    /// Send nothing (a stub-zone query that already went through a skydns: loop protection).
    pub silent: bool,
}

impl Reply {
    /// A reply with no records yet.
    fn empty(metadata: Metadata, edns: Option<Edns>, system: System) -> Self {
        Self {
            metadata,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            edns,
            system,
            rejected: false,
            silent: false,
        }
    }

    /// Takes a server's answer as this reply, under the client's message id.
    fn relay(&mut self, upstream: Message, id: u16) {
        self.metadata = upstream.metadata;
        self.metadata.id = id;
        self.answers = upstream.answers;
        self.authorities = upstream.authorities;
        self.additionals = upstream.additionals;
    }
}

/// The `RequestHandler` given to hickory's `Server`.
#[derive(Debug, Clone)]
pub struct DnsHandler {
    shared: Arc<Shared>,
}

impl DnsHandler {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Computes the reply to one request (fitted to the client's size limit).
    pub async fn reply(&self, request: &Request) -> Reply {
        let shared = &self.shared;
        let request_meta = &request.metadata;
        let edns = request.edns.as_ref().map(|client| {
            let mut ours = Edns::new();
            ours.set_max_payload(client.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours.set_dnssec_ok(client.flags().dnssec_ok);
            ours
        });
        let limit = match request.protocol() {
            Protocol::Udp => edns.as_ref().map_or(512, Edns::max_payload),
            _ => u16::MAX,
        };
        let mut metadata = Metadata::response_from_request(request_meta);
        let error = |metadata: Metadata, rcode: ResponseCode| {
            let mut reply = Reply::empty(metadata, edns.clone(), System::Auth);
            reply.rejected = true;
            reply.metadata.response_code = rcode;
            reply
        };
        if request_meta.op_code != OpCode::Query {
            return error(metadata, ResponseCode::NotImp);
        }
        if request.queries.len() != 1 {
            return error(metadata, ResponseCode::FormErr);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return error(metadata, ResponseCode::BADVERS);
        }
        let Some(query) = request.queries.queries().first().map(|q| q.original()) else {
            return error(metadata, ResponseCode::FormErr);
        };
        let qname = query.name();
        let lower = qname.to_lowercase();
        let qtype = query.query_type();
        if shared.verbose {
            tracing::info!(name = %qname, %qtype, client = %request.src(), "query");
        }
        if query.query_class() == DNSClass::CH {
            let mut reply = chaos(metadata, query, &lower);
            reply.edns = edns;
            return reply;
        }
        let recursion = !shared.zone.no_rec && !shared.zone.nameservers.is_empty();
        metadata.recursion_available = recursion;
        let index = shared.index.load();
        let resolver = Resolver {
            zone: &shared.zone,
            index: &index,
            upstream: &shared.upstream,
            now: Instant::now(),
            max_answers: max_answers(limit),
        };

        if shared.stubzones {
            if let Some(servers) = resolver.stub_servers(&lower) {
                let mut reply = self.stub(request, metadata, edns, servers).await;
                fit(&mut reply, query, limit);
                return reply;
            }
        }

        if qtype == RecordType::PTR && is_reverse(&lower) {
            if let Some(answer) = resolver.ptr_record(qname, &lower) {
                metadata.authoritative = true;
                let mut reply = from_answer(metadata, answer, edns, System::Reverse);
                fit(&mut reply, query, limit);
                return reply;
            }
            let mut reply = self.forward(request, metadata, edns).await;
            reply.system = System::Reverse;
            fit(&mut reply, query, limit);
            return reply;
        }

        let lookup = match &shared.zone.local {
            Some(local) if lower == shared.zone.local_name => local.clone(),
            _ => lower,
        };
        if !shared.zone.domain.zone_of(&lookup) {
            let mut reply = self.forward(request, metadata, edns).await;
            fit(&mut reply, query, limit);
            return reply;
        }
        let dnssec = shared.dnssec.as_ref();
        let mut answer = match dnssec {
            Some(key) if qtype == RecordType::DNSKEY && lookup == shared.zone.domain => Answer {
                rcode: ResponseCode::NoError,
                answers: vec![key.dnskey_record(qname)],
                ..Answer::default()
            },
            _ => resolver.authoritative(qname, &lookup, qtype).await,
        };
        metadata.authoritative = true;
        let signer = dnssec.filter(|_| edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
        if let Some(key) = signer {
            key.deny(&mut answer, qname, qtype);
        }
        let mut reply = from_answer(metadata, answer, edns, System::Auth);
        if let Some(key) = signer {
            sign(&mut reply, key);
        }
        fit(&mut reply, query, limit);
        reply
    }

    /// Relays a client query to the forwarders.
    async fn forward(&self, request: &Request, metadata: Metadata, edns: Option<Edns>) -> Reply {
        let shared = &self.shared;
        let mut reply = Reply::empty(metadata, edns, System::Recursive);
        if shared.zone.no_rec {
            reply.metadata.recursion_available = false;
            reply.metadata.response_code = ResponseCode::ServFail;
            return reply;
        }
        if !shared.may_forward(request.src().ip()) {
            shared
                .metrics
                .forwarded
                .with_label_values(&["refused"])
                .inc();
            reply.metadata.response_code = ResponseCode::Refused;
            return reply;
        }
        let qname = request
            .queries
            .queries()
            .first()
            .map(|q| q.original().name().clone())
            .unwrap_or_else(Name::root);
        if !shared.upstream.can_resolve(&qname) {
            reply.metadata.response_code = ResponseCode::ServFail;
            return reply;
        }
        let tcp = request.protocol() != Protocol::Udp;
        match shared
            .upstream
            .forward(request.as_slice(), request.metadata.id, tcp)
            .await
        {
            Ok(upstream) => {
                shared.metrics.forwarded.with_label_values(&["ok"]).inc();
                reply.relay(upstream, request.metadata.id);
            }
            // Counted in skydns_forward_refused_total by the pool.
            Err(ForwardError::Busy) => reply.metadata.response_code = ResponseCode::ServFail,
            Err(ForwardError::Failed | ForwardError::NoServers) => {
                shared
                    .metrics
                    .forwarded
                    .with_label_values(&["failed"])
                    .inc();
                reply.metadata.response_code = ResponseCode::ServFail;
            }
        }
        reply
    }
}

impl DnsHandler {
    /// Forwards a query for a stub zone to that zone's servers, marked with the EDNS option
    /// that makes another skydns drop it instead of forwarding it again.
    async fn stub(
        &self,
        request: &Request,
        metadata: Metadata,
        edns: Option<Edns>,
        servers: Vec<std::net::SocketAddr>,
    ) -> Reply {
        let mut reply = Reply::empty(metadata, edns, System::Stub);
        let seen_before = request.edns.as_ref().is_some_and(|e| {
            e.options()
                .get(EdnsCode::Unknown(STUB_LOOP_OPTION))
                .is_some_and(|o| *o == EdnsOption::Unknown(STUB_LOOP_OPTION, vec![1]))
        });
        if seen_before {
            reply.silent = true;
            return reply;
        }
        let Ok(mut message) = Message::from_vec(request.as_slice()) else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return reply;
        };
        let mut edns = message.edns.take().unwrap_or_default();
        edns.options_mut()
            .insert(EdnsOption::Unknown(STUB_LOOP_OPTION, vec![1]));
        message.set_edns(edns);
        let Ok(bytes) = message.to_vec() else {
            reply.metadata.response_code = ResponseCode::ServFail;
            return reply;
        };
        let upstream = self.shared.upstream.with_servers(servers);
        let tcp = request.protocol() != Protocol::Udp;
        match upstream.forward(&bytes, request.metadata.id, tcp).await {
            Ok(answer) => reply.relay(answer, request.metadata.id),
            Err(_) => reply.metadata.response_code = ResponseCode::ServFail,
        }
        reply
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let reply = self.reply(request).await;
        let metrics = &self.shared.metrics;
        let query = request.queries.queries().first().map(|q| q.original());
        let rcode = reply.metadata.response_code;
        if reply.system == System::Auth && !reply.rejected {
            metrics.cache_miss();
        }
        if reply.silent {
            // As the original: counted, with nothing sent (size 0).
            metrics.reply(reply.system, started.elapsed(), 0, false, rcode);
            return ResponseInfo::from(Header {
                metadata: reply.metadata,
                counts: HeaderCounts::default(),
            });
        }
        let qtype: &'static str = query
            .map_or(RecordType::Unknown(0), Query::query_type)
            .into();
        metrics
            .requests
            .with_label_values(&[qtype, rcode.to_str()])
            .inc();
        let len = encoded_len(&reply, query);
        let response = MessageResponseBuilder::new(&request.queries, reply.edns.as_ref()).build(
            reply.metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, client = %request.src(), "cannot send the reply");
                ResponseInfo::from(Header {
                    metadata: reply.metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };
        metrics.reply(
            reply.system,
            started.elapsed(),
            len,
            reply.metadata.truncation,
            rcode,
        );
        info
    }
}

/// Signs every RRset of the zone in the reply (a DO query with `-dnssec`), sets AD and
/// advertises a 4096-byte payload with DO, as the original does.
fn sign(reply: &mut Reply, key: &Dnssec) {
    let now = crate::dnssec::unix_now();
    key.sign_section(&mut reply.answers, now);
    key.sign_section(&mut reply.authorities, now);
    key.sign_section(&mut reply.additionals, now);
    reply.metadata.authentic_data = true;
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    edns.set_dnssec_ok(true);
    reply.edns = Some(edns);
}

fn from_answer(
    mut metadata: Metadata,
    answer: Answer,
    edns: Option<Edns>,
    system: System,
) -> Reply {
    metadata.response_code = answer.rcode;
    Reply {
        metadata,
        answers: answer.answers,
        authorities: answer.authorities,
        additionals: answer.additionals,
        edns,
        system,
        rejected: false,
        silent: false,
    }
}

/// Whether the name is inside `in-addr.arpa.` or `ip6.arpa.` (compared label by label, so
/// no name is built per query).
fn is_reverse(lower: &Name) -> bool {
    let mut labels = lower.iter().rev();
    labels
        .next()
        .is_some_and(|l| l.eq_ignore_ascii_case(b"arpa"))
        && labels
            .next()
            .is_some_and(|l| l.eq_ignore_ascii_case(b"in-addr") || l.eq_ignore_ascii_case(b"ip6"))
}

/// CHAOS-class TXT answers about the server, as the original gives them.
fn chaos(mut metadata: Metadata, query: &Query, lower: &Name) -> Reply {
    let texts: &[&str] = match lower.to_ascii().as_str() {
        "version.bind." | "version.server." => &[ORIGINAL_VERSION],
        "hostname.bind." | "id.server." => &["localhost"],
        "authors.bind." => &[
            "Erik St. Martin",
            "Brian Ketelsen",
            "Miek Gieben",
            "Michael Crosby",
        ],
        _ => &[],
    };
    let answers: Vec<Record> = if query.query_type() == RecordType::TXT {
        texts
            .iter()
            .map(|text| {
                let mut record = Record::from_rdata(
                    query.name().clone(),
                    0,
                    RData::TXT(TXT::new(vec![(*text).to_owned()])),
                );
                record.dns_class = DNSClass::CH;
                record
            })
            .collect()
    } else {
        Vec::new()
    };
    metadata.authoritative = !answers.is_empty();
    metadata.response_code = if answers.is_empty() {
        ResponseCode::Refused
    } else {
        ResponseCode::NoError
    };
    let mut reply = Reply::empty(metadata, None, System::Auth);
    reply.answers = answers;
    reply
}

/// Makes the reply fit in `limit` bytes: first without the additional section (no TC, as
/// RFC 2181 §9 allows), then with as many answers as fit and TC set.
pub fn fit(reply: &mut Reply, query: &Query, limit: u16) {
    if estimate(reply, query) <= usize::from(limit)
        || fits(reply, query, limit, reply.answers.len())
    {
        return;
    }
    reply.additionals.clear();
    if fits(reply, query, limit, reply.answers.len()) {
        return;
    }
    reply.authorities.clear();
    let (mut low, mut high) = (0, reply.answers.len());
    while low < high {
        let mid = (low + high).div_ceil(2);
        if fits(reply, query, limit, mid) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    reply.answers.truncate(low);
    reply.metadata.truncation = true;
}

/// An upper bound of the encoded size, cheap enough for every reply.
fn estimate(reply: &Reply, query: &Query) -> usize {
    let name = |n: &Name| n.len() + 2;
    let record = |r: &Record| {
        name(&r.name)
            + 10
            + match &r.data {
                RData::A(_) => 4,
                RData::AAAA(_) => 16,
                RData::SRV(srv) => 6 + name(&srv.target),
                RData::CNAME(n) => name(&n.0),
                RData::NS(n) => name(&n.0),
                RData::PTR(n) => name(&n.0),
                RData::MX(mx) => 2 + name(&mx.exchange),
                RData::TXT(txt) => txt.txt_data.iter().map(|s| s.len() + 1).sum(),
                RData::SOA(soa) => name(&soa.mname) + name(&soa.rname) + 20,
                _ => usize::from(u16::MAX),
            }
    };
    12 + name(query.name())
        + 4
        + reply
            .answers
            .iter()
            .chain(&reply.authorities)
            .chain(&reply.additionals)
            .map(record)
            .sum::<usize>()
        + reply.edns.as_ref().map_or(0, |_| 11)
}

/// True when the reply with its first `answers` answers encodes within `limit` bytes.
fn fits(reply: &Reply, query: &Query, limit: u16, answers: usize) -> bool {
    let mut buffer = Vec::with_capacity(usize::from(limit).min(4096));
    emit(reply, Some(query), limit, answers, &mut buffer)
        .is_ok_and(|header| !header.metadata.truncation)
}

thread_local! {
    /// Where [`encoded_len`] encodes, reused so that measuring a reply allocates nothing.
    static MEASURE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The length of the reply as sent (for `dns_response_size_bytes`).
fn encoded_len(reply: &Reply, query: Option<&Query>) -> usize {
    MEASURE.with_borrow_mut(|buffer| {
        buffer.clear();
        match emit(reply, query, u16::MAX, reply.answers.len(), buffer) {
            Ok(_) => buffer.len(),
            Err(_) => 0,
        }
    })
}

/// Encodes the reply with its first `answers` answers into `buffer`, at most `limit` bytes.
fn emit(
    reply: &Reply,
    query: Option<&Query>,
    limit: u16,
    answers: usize,
    buffer: &mut Vec<u8>,
) -> Result<Header, hickory_proto::ProtoError> {
    let mut encoder = BinEncoder::new(buffer);
    encoder.set_max_size(limit);
    emit_message_parts(
        &reply.metadata,
        &mut query.into_iter(),
        &mut reply.answers[..answers].iter(),
        &mut reply.authorities.iter(),
        &mut reply.additionals.iter(),
        reply.edns.as_ref(),
        None,
        &mut encoder,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Flags;
    use crate::index::{Leaf, ZoneIndex};
    use crate::metrics::Metrics;
    use clap::Parser;
    use common::KeySchema;
    use hickory_proto::serialize::binary::BinEncoder;
    use proptest::prelude::*;

    #[test]
    fn reverse_names_are_those_under_in_addr_arpa_and_ip6_arpa() {
        let reverse = |name: &str| is_reverse(&Name::from_ascii(name).unwrap());
        assert!(reverse("4.3.2.10.in-addr.arpa."));
        assert!(reverse("IN-ADDR.ARPA."));
        assert!(reverse("1.0.ip6.arpa."));
        assert!(!reverse("arpa."));
        assert!(!reverse("xin-addr.arpa."));
        assert!(!reverse("in-addr.arpa.example."));
        assert!(!reverse("."));
    }

    fn handler() -> DnsHandler {
        let flags = Flags::try_parse_from(["skydns", "--domain", "skydns.test."]).unwrap();
        let config = flags.into_config().unwrap();
        let zone = config.settings.resolve(None).unwrap();
        let shared = Shared::new(
            zone,
            config.forward_allow,
            Metrics::new().unwrap(),
            crate::state::Features::default(),
            config.limits,
        );
        let schema = KeySchema::default();
        let mut index = ZoneIndex::new();
        for i in 0..40 {
            let key = format!("/skydns/test/skydns/big/n{i}");
            let value = format!(r#"{{"host":"10.4.0.{i}","port":80}}"#);
            let leaf = Leaf::parse(&schema, key.as_bytes(), value.as_bytes(), 0).unwrap();
            let segments: Vec<&str> = schema.key_segments(&key).unwrap().collect();
            index.insert(&segments, Arc::new(leaf));
        }
        shared.index.store(Arc::new(index));
        DnsHandler::new(Arc::new(shared))
    }

    fn query_bytes(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 4242;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        message.to_vec().unwrap()
    }

    /// Runs the handler on raw bytes as the server would, and encodes its reply the way the
    /// response handler does (within the client's limit).
    fn exchange(handler: &DnsHandler, packet: &[u8]) -> Option<Message> {
        let request = Request::from_bytes(
            packet.to_vec(),
            "127.0.0.1:5300".parse().unwrap(),
            Protocol::Udp,
        )
        .ok()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let reply = runtime.block_on(handler.reply(&request));
        let limit = reply.edns.as_ref().map_or(512, Edns::max_payload);
        let response = MessageResponseBuilder::new(&request.queries, reply.edns.as_ref()).build(
            reply.metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(limit);
        response.destructive_emit(&mut encoder).unwrap();
        assert!(bytes.len() <= usize::from(limit));
        Some(Message::from_vec(&bytes).unwrap())
    }

    #[test]
    fn truncation_keeps_what_fits_and_sets_tc_only_for_answers() {
        let handler = handler();
        let reply = exchange(&handler, &query_bytes("big.skydns.test.", RecordType::A)).unwrap();
        assert!(reply.metadata.truncation);
        assert_eq!(reply.answers.len(), 29);
        // 40 SRV records with glue: no room for glue, answers cut, TC set.
        let reply = exchange(&handler, &query_bytes("big.skydns.test.", RecordType::SRV)).unwrap();
        assert!(reply.metadata.truncation);
        assert!(reply.additionals.is_empty());
        // One SRV with its glue fits without TC.
        let reply = exchange(
            &handler,
            &query_bytes("n1.big.skydns.test.", RecordType::SRV),
        )
        .unwrap();
        assert!(!reply.metadata.truncation);
        assert_eq!((reply.answers.len(), reply.additionals.len()), (1, 1));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_packets_get_a_well_formed_reply_or_none(
            packet in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            let handler = handler();
            if let Some(reply) = exchange(&handler, &packet) {
                prop_assert_eq!(reply.metadata.message_type, hickory_proto::op::MessageType::Response);
            }
        }

        #[test]
        fn mutated_queries_get_a_well_formed_reply_or_none(
            flips in proptest::collection::vec((0usize..40, any::<u8>()), 1..6)
        ) {
            let handler = handler();
            let mut packet = query_bytes("n1.big.skydns.test.", RecordType::A);
            for (at, byte) in flips {
                let at = at % packet.len();
                packet[at] = byte;
            }
            if let Some(reply) = exchange(&handler, &packet) {
                prop_assert_eq!(reply.metadata.id, u16::from_be_bytes([packet[0], packet[1]]));
            }
        }
    }
}
