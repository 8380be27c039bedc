//! The spec's conformance cases (§6) as a table: fixture F in a real etcd, skydns started with
//! `-domain skydns.test.`, each case a real UDP query and its expected rcode, flags and
//! sections. Where this implementation deliberately differs from SkyDNS 2.5.3a (documented in
//! the README), the table states our answer and says why. Then details outside the table:
//! SOA, PTR under `in-addr.arpa.` and `ip6.arpa.`, CHAOS, long TXT, `-local`, round robin.

mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RData, RecordType};
use support::{Running, is_negative_soa, rcode, set, strings};

const F: &[(&str, &str)] = &[
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
    (
        "/skydns/test/skydns/region6/development/server4/102",
        r#"{"host":"server4","port":80,"priority":333}"#,
    ),
    ("/skydns/test/skydns/ipaddr/a", r#"{"host":"172.16.1.1"}"#),
    ("/skydns/test/skydns/ipaddr/b", r#"{"host":"172.16.1.2"}"#),
    (
        "/skydns/test/skydns/cname/1",
        r#"{"host":"104.server1.development.region1.skydns.test"}"#,
    ),
    (
        "/skydns/test/skydns/cname/2",
        r#"{"host":"100.server1.development.region1.skydns.test"}"#,
    ),
    (
        "/skydns/test/skydns/cname/3",
        r#"{"host":"4.cname.skydns.test"}"#,
    ),
    (
        "/skydns/test/skydns/cname/4",
        r#"{"host":"3.cname.skydns.test"}"#,
    ),
    (
        "/skydns/test/skydns/ttl",
        r#"{"host":"10.0.0.2","ttl":360}"#,
    ),
    (
        "/skydns/test/skydns/region5/server1/100",
        r#"{"host":"server1","weight":130}"#,
    ),
    (
        "/skydns/test/skydns/region5/server2/101",
        r#"{"host":"server2","weight":80}"#,
    ),
    (
        "/skydns/test/skydns/region5/server3/103",
        r#"{"host":"server3","weight":150}"#,
    ),
    (
        "/skydns/test/skydns/region5/server4/104",
        r#"{"host":"server4","priority":30}"#,
    ),
    (
        "/skydns/test/skydns/bar/x",
        r#"{"host":"192.168.0.1","port":80,"targetstrip":1}"#,
    ),
    (
        "/skydns/test/skydns/bar/y",
        r#"{"host":"bar.skydns.local","port":443}"#,
    ),
    ("/skydns/test/skydns/dns/ns/a", r#"{"host":"10.0.0.2"}"#),
    ("/skydns/test/skydns/dns/ns/b", r#"{"host":"10.0.0.3"}"#),
    ("/skydns/test/skydns/txt/a1", r#"{"text":"abc"}"#),
    ("/skydns/test/skydns/txt/a2", r#"{"text":"abc abc"}"#),
    (
        "/skydns/test/skydns/http/multiport/http",
        r#"{"host":"10.11.11.10","port":80}"#,
    ),
    (
        "/skydns/test/skydns/http/multiport/https",
        r#"{"host":"10.11.11.10","port":443}"#,
    ),
    (
        "/skydns/test/skydns/upper",
        r#"{"host":"127.0.0.1","port":443}"#,
    ),
    (
        "/skydns/test/skydns/mail/a",
        r#"{"host":"mx.skydns.test","priority":50,"mail":true}"#,
    ),
    (
        "/skydns/test/skydns/mx/a",
        r#"{"host":"a.ipaddr.skydns.test","priority":30,"mail":true}"#,
    ),
    (
        "/skydns/test/skydns/dom/a",
        r#"{"host":"127.0.0.1","group":"g1"}"#,
    ),
    (
        "/skydns/test/skydns/dom/sub/b",
        r#"{"host":"127.0.0.2","group":"g1"}"#,
    ),
    (
        "/skydns/test/skydns/dom1/a",
        r#"{"host":"127.0.0.1","group":"g1"}"#,
    ),
    (
        "/skydns/test/skydns/dom1/sub/b",
        r#"{"host":"127.0.0.2","group":"g2"}"#,
    ),
    (
        "/skydns/test/skydns/dom2/a",
        r#"{"host":"127.0.0.1","group":"g1"}"#,
    ),
    ("/skydns/test/skydns/dom2/sub/b", r#"{"host":"127.0.0.2"}"#),
    (
        "/skydns/arpa/in-addr/10/0/0/1",
        r#"{"host":"reverse.example.com"}"#,
    ),
    (
        "/skydns/test/skydns/in/backend/1",
        r#"{"host":"ipaddr.skydns.test"}"#,
    ),
    ("/skydns/test/skydns/ipaddr2/a", r#"{"host":"172.16.1.1"}"#),
    (
        "/skydns/test/skydns/ipaddr2/b",
        r#"{"host":"2001::8:8:8:8"}"#,
    ),
    (
        "/skydns/test/skydns/test/v4v6/both",
        r#"{"host":"ipaddr2.skydns.test"}"#,
    ),
    (
        "/skydns/test/skydns/mixttl/a",
        r#"{"host":"10.1.0.1","ttl":30}"#,
    ),
    ("/skydns/test/skydns/mixttl/b", r#"{"host":"10.1.0.2"}"#),
    (
        "/skydns/test/skydns/longttl/a",
        r#"{"host":"10.2.0.1","ttl":7200}"#,
    ),
    (
        "/skydns/test/skydns/longttl/b",
        r#"{"host":"10.2.0.2","ttl":7200}"#,
    ),
    ("/skydns/test/skydns/dupe/a", r#"{"host":"10.5.0.1"}"#),
    ("/skydns/test/skydns/dupe/b", r#"{"host":"10.5.0.1"}"#),
    (
        "/skydns/test/skydns/mail3/a",
        r#"{"host":"10.7.0.1","priority":5,"mail":true}"#,
    ),
    // Case 74-76: one bad value, a string-typed number, an upper-case key.
    ("/skydns/test/skydns/bad/x", "not json"),
    ("/skydns/test/skydns/bad/y", r#"{"host":"10.8.0.1"}"#),
    (
        "/skydns/test/skydns/strttl/a",
        r#"{"host":"10.8.1.1","ttl":"30"}"#,
    ),
    ("/skydns/test/skydns/Caps", r#"{"host":"10.6.0.1"}"#),
    // Case 71-72: weights and priority 0.
    (
        "/skydns/test/skydns/w/a",
        r#"{"host":"10.9.0.1","weight":10}"#,
    ),
    (
        "/skydns/test/skydns/w/b",
        r#"{"host":"10.9.0.2","weight":20}"#,
    ),
    (
        "/skydns/test/skydns/w/c",
        r#"{"host":"10.9.0.3","priority":20}"#,
    ),
    (
        "/skydns/test/skydns/p0/a",
        r#"{"host":"10.9.1.1","priority":0,"port":1}"#,
    ),
];

/// Expected outcome of one query.
struct Case {
    id: &'static str,
    name: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    /// Answer RRs as `owner ttl IN TYPE rdata` (compared as a set).
    answers: &'static [&'static str],
    additionals: &'static [&'static str],
    /// The authority is the negative SOA (TTL 60); otherwise it is empty.
    negative: bool,
}

const fn ok(
    id: &'static str,
    name: &'static str,
    qtype: RecordType,
    answers: &'static [&'static str],
    additionals: &'static [&'static str],
) -> Case {
    Case {
        id,
        name,
        qtype,
        rcode: ResponseCode::NoError,
        answers,
        additionals,
        negative: false,
    }
}

const fn nodata(id: &'static str, name: &'static str, qtype: RecordType) -> Case {
    Case {
        id,
        name,
        qtype,
        rcode: ResponseCode::NoError,
        answers: &[],
        additionals: &[],
        negative: true,
    }
}

const fn nxdomain(id: &'static str, name: &'static str, qtype: RecordType) -> Case {
    Case {
        id,
        name,
        qtype,
        rcode: ResponseCode::NXDomain,
        answers: &[],
        additionals: &[],
        negative: true,
    }
}

use RecordType::{A, AAAA, ANY, CNAME, HINFO, MX, NS, SOA, SRV, TXT};

const CASES: &[Case] = &[
    ok(
        "1",
        "100.server1.development.region1.skydns.test.",
        SRV,
        &["100.server1.development.region1.skydns.test. 3600 IN SRV 10 100 8080 server1."],
        &[],
    ),
    ok(
        "2",
        "104.server1.development.region1.skydns.test.",
        A,
        &["104.server1.development.region1.skydns.test. 3600 IN A 10.0.0.1"],
        &[],
    ),
    ok(
        "3",
        "104.server1.development.region1.skydns.test.",
        SRV,
        &[
            "104.server1.development.region1.skydns.test. 3600 IN SRV 10 100 0 104.server1.development.region1.skydns.test.",
        ],
        &["104.server1.development.region1.skydns.test. 3600 IN A 10.0.0.1"],
    ),
    ok(
        "4",
        "105.server3.production.region2.skydns.test.",
        AAAA,
        &["105.server3.production.region2.skydns.test. 3600 IN AAAA 2001::8:8:8:8"],
        &[],
    ),
    nodata("5", "105.server3.production.region2.skydns.test.", A),
    ok(
        "6",
        "ipaddr.skydns.test.",
        A,
        &[
            "ipaddr.skydns.test. 3600 IN A 172.16.1.1",
            "ipaddr.skydns.test. 3600 IN A 172.16.1.2",
        ],
        &[],
    ),
    ok(
        "7",
        "ttl.skydns.test.",
        A,
        &["ttl.skydns.test. 360 IN A 10.0.0.2"],
        &[],
    ),
    ok(
        "8",
        "mixttl.skydns.test.",
        A,
        &[
            "mixttl.skydns.test. 30 IN A 10.1.0.1",
            "mixttl.skydns.test. 30 IN A 10.1.0.2",
        ],
        &[],
    ),
    ok(
        "9",
        "a.longttl.skydns.test.",
        A,
        &["a.longttl.skydns.test. 7200 IN A 10.2.0.1"],
        &[],
    ),
    ok(
        "10",
        "longttl.skydns.test.",
        A,
        &[
            "longttl.skydns.test. 3600 IN A 10.2.0.1",
            "longttl.skydns.test. 3600 IN A 10.2.0.2",
        ],
        &[],
    ),
    ok(
        "11",
        "1.cname.skydns.test.",
        A,
        &[
            "1.cname.skydns.test. 3600 IN CNAME 104.server1.development.region1.skydns.test.",
            "104.server1.development.region1.skydns.test. 3600 IN A 10.0.0.1",
        ],
        &[],
    ),
    ok(
        "12",
        "1.cname.skydns.test.",
        CNAME,
        &["1.cname.skydns.test. 3600 IN CNAME 104.server1.development.region1.skydns.test."],
        &[],
    ),
    nodata("13", "2.cname.skydns.test.", A),
    nodata("14", "3.cname.skydns.test.", A),
    ok(
        "15",
        "1.cname.skydns.test.",
        SRV,
        &["1.cname.skydns.test. 3600 IN SRV 10 100 0 104.server1.development.region1.skydns.test."],
        &["104.server1.development.region1.skydns.test. 3600 IN A 10.0.0.1"],
    ),
    ok(
        "16",
        "region6.skydns.test.",
        SRV,
        &["region6.skydns.test. 3600 IN SRV 333 100 80 server4."],
        &[],
    ),
    ok(
        "17",
        "region1.skydns.test.",
        SRV,
        &[
            "region1.skydns.test. 3600 IN SRV 10 33 0 104.server1.development.region1.skydns.test.",
            "region1.skydns.test. 3600 IN SRV 10 33 80 server2.",
            "region1.skydns.test. 3600 IN SRV 10 33 8080 server1.",
        ],
        &["104.server1.development.region1.skydns.test. 3600 IN A 10.0.0.1"],
    ),
    ok(
        "18",
        "region5.skydns.test.",
        SRV,
        &[
            "region5.skydns.test. 3600 IN SRV 10 22 0 server2.",
            "region5.skydns.test. 3600 IN SRV 10 36 0 server1.",
            "region5.skydns.test. 3600 IN SRV 10 41 0 server3.",
            "region5.skydns.test. 3600 IN SRV 30 100 0 server4.",
        ],
        &[],
    ),
    ok(
        "19",
        "*.region1.skydns.test.",
        SRV,
        &[
            "*.region1.skydns.test. 3600 IN SRV 10 33 0 104.server1.development.region1.skydns.test.",
            "*.region1.skydns.test. 3600 IN SRV 10 33 80 server2.",
            "*.region1.skydns.test. 3600 IN SRV 10 33 8080 server1.",
        ],
        &["104.server1.development.region1.skydns.test. 3600 IN A 10.0.0.1"],
    ),
    ok(
        "20",
        "production.*.skydns.test.",
        SRV,
        &[
            "production.*.skydns.test. 3600 IN SRV 10 50 0 105.server3.production.region2.skydns.test.",
            "production.*.skydns.test. 3600 IN SRV 10 50 80 server2.",
        ],
        &["105.server3.production.region2.skydns.test. 3600 IN AAAA 2001::8:8:8:8"],
    ),
    ok(
        "21",
        "production.any.skydns.test.",
        SRV,
        &[
            "production.any.skydns.test. 3600 IN SRV 10 50 0 105.server3.production.region2.skydns.test.",
            "production.any.skydns.test. 3600 IN SRV 10 50 80 server2.",
        ],
        &["105.server3.production.region2.skydns.test. 3600 IN AAAA 2001::8:8:8:8"],
    ),
    nodata("22", "nomatch.*.skydns.test.", A),
    // 23-25: NXDOMAIN, with AA=1 here (the original clears AA: quirk Q1).
    nxdomain("23", "*.nothere.skydns.test.", A),
    nxdomain("24", "doesnotexist.skydns.test.", A),
    nxdomain("25", "doesnotexist.skydns.test.", HINFO),
    nodata("26", "104.server1.development.region1.skydns.test.", TXT),
    nodata("27", "100.server1.development.region1.skydns.test.", A),
    ok(
        "28",
        "in.skydns.test.",
        A,
        &[
            "in.skydns.test. 3600 IN CNAME ipaddr.skydns.test.",
            "ipaddr.skydns.test. 3600 IN A 172.16.1.1",
            "ipaddr.skydns.test. 3600 IN A 172.16.1.2",
        ],
        &[],
    ),
    ok(
        "29",
        "a1.txt.skydns.test.",
        TXT,
        &["a1.txt.skydns.test. 3600 IN TXT abc"],
        &[],
    ),
    ok(
        "30",
        "txt.skydns.test.",
        TXT,
        &[
            "txt.skydns.test. 3600 IN TXT abc",
            "txt.skydns.test. 3600 IN TXT abc abc",
        ],
        &[],
    ),
    // 31: a record without host has no SRV target (the original answers target "."): Q3.
    nodata("31", "a1.txt.skydns.test.", SRV),
    ok(
        "33",
        "skydns.test.",
        NS,
        &[
            "skydns.test. 3600 IN NS a.ns.dns.skydns.test.",
            "skydns.test. 3600 IN NS b.ns.dns.skydns.test.",
        ],
        &[
            "a.ns.dns.skydns.test. 3600 IN A 10.0.0.2",
            "b.ns.dns.skydns.test. 3600 IN A 10.0.0.3",
        ],
    ),
    ok(
        "34",
        "ns.dns.skydns.test.",
        A,
        &[
            "ns.dns.skydns.test. 3600 IN A 10.0.0.2",
            "ns.dns.skydns.test. 3600 IN A 10.0.0.3",
        ],
        &[],
    ),
    nodata("35", "region1.skydns.test.", NS),
    // 35b: NS of a name that does not exist is NXDOMAIN (the original says NODATA: Q5).
    nxdomain("35b", "nothere.skydns.test.", NS),
    nodata("36", "skydns.test.", HINFO),
    nodata("37", "104.server1.development.region1.skydns.test.", SOA),
    nxdomain("37b", "nothere.skydns.test.", SOA),
    ok(
        "38",
        "bar.skydns.test.",
        A,
        &["bar.skydns.test. 3600 IN A 192.168.0.1"],
        &[],
    ),
    ok(
        "39",
        "bar.skydns.test.",
        SRV,
        &[
            "bar.skydns.test. 3600 IN SRV 10 50 80 bar.skydns.test.",
            "bar.skydns.test. 3600 IN SRV 10 50 443 bar.skydns.local.",
        ],
        &["bar.skydns.test. 3600 IN A 192.168.0.1"],
    ),
    ok(
        "40",
        "multiport.http.skydns.test.",
        A,
        &["multiport.http.skydns.test. 3600 IN A 10.11.11.10"],
        &[],
    ),
    ok(
        "41",
        "multiport.http.skydns.test.",
        SRV,
        &[
            "multiport.http.skydns.test. 3600 IN SRV 10 50 80 http.multiport.http.skydns.test.",
            "multiport.http.skydns.test. 3600 IN SRV 10 50 443 https.multiport.http.skydns.test.",
        ],
        &[
            "http.multiport.http.skydns.test. 3600 IN A 10.11.11.10",
            "https.multiport.http.skydns.test. 3600 IN A 10.11.11.10",
        ],
    ),
    ok(
        "42",
        "uppeR.skydns.test.",
        A,
        &["uppeR.skydns.test. 3600 IN A 127.0.0.1"],
        &[],
    ),
    nodata("43", "100.server1.development.region1.skydns.test.", MX),
    ok(
        "44",
        "mx.skydns.test.",
        MX,
        &["mx.skydns.test. 3600 IN MX 30 a.ipaddr.skydns.test."],
        &["a.ipaddr.skydns.test. 3600 IN A 172.16.1.1"],
    ),
    ok(
        "45",
        "a.mail.skydns.test.",
        MX,
        &["a.mail.skydns.test. 3600 IN MX 50 mx.skydns.test."],
        &[
            "mx.skydns.test. 3600 IN CNAME a.ipaddr.skydns.test.",
            "a.ipaddr.skydns.test. 3600 IN A 172.16.1.1",
        ],
    ),
    ok(
        "46",
        "mail3.skydns.test.",
        MX,
        &["mail3.skydns.test. 3600 IN MX 5 a.mail3.skydns.test."],
        &["a.mail3.skydns.test. 3600 IN A 10.7.0.1"],
    ),
    ok(
        "47",
        "dom.skydns.test.",
        A,
        &[
            "dom.skydns.test. 3600 IN A 127.0.0.1",
            "dom.skydns.test. 3600 IN A 127.0.0.2",
        ],
        &[],
    ),
    ok(
        "48",
        "dom1.skydns.test.",
        A,
        &["dom1.skydns.test. 3600 IN A 127.0.0.1"],
        &[],
    ),
    ok(
        "49",
        "dom2.skydns.test.",
        A,
        &[
            "dom2.skydns.test. 3600 IN A 127.0.0.1",
            "dom2.skydns.test. 3600 IN A 127.0.0.2",
        ],
        &[],
    ),
    ok(
        "50",
        "both.v4v6.test.skydns.test.",
        SRV,
        &["both.v4v6.test.skydns.test. 3600 IN SRV 10 100 0 ipaddr2.skydns.test."],
        &[
            "ipaddr2.skydns.test. 3600 IN A 172.16.1.1",
            "ipaddr2.skydns.test. 3600 IN AAAA 2001::8:8:8:8",
        ],
    ),
    ok(
        "51",
        "dupe.skydns.test.",
        A,
        &["dupe.skydns.test. 3600 IN A 10.5.0.1"],
        &[],
    ),
    ok(
        "51b",
        "dupe.skydns.test.",
        SRV,
        &["dupe.skydns.test. 3600 IN SRV 10 100 0 a.dupe.skydns.test."],
        &["a.dupe.skydns.test. 3600 IN A 10.5.0.1"],
    ),
    // 54: ANY gets a subset (the addresses), RFC 8482; the original answers REFUSED.
    ok(
        "54",
        "104.server1.development.region1.skydns.test.",
        ANY,
        &["104.server1.development.region1.skydns.test. 3600 IN A 10.0.0.1"],
        &[],
    ),
    // 60: a name below a leaf does not exist (the original: NODATA/SERVFAIL).
    nxdomain("60", "x.ttl.skydns.test.", A),
    // 61: a record without host has no address (the original: CNAME to "."): Q3.
    nodata("61", "a1.txt.skydns.test.", A),
    ok(
        "71",
        "w.skydns.test.",
        SRV,
        &[
            "w.skydns.test. 3600 IN SRV 10 33 0 a.w.skydns.test.",
            "w.skydns.test. 3600 IN SRV 10 66 0 b.w.skydns.test.",
            "w.skydns.test. 3600 IN SRV 20 100 0 c.w.skydns.test.",
        ],
        &[
            "a.w.skydns.test. 3600 IN A 10.9.0.1",
            "b.w.skydns.test. 3600 IN A 10.9.0.2",
            "c.w.skydns.test. 3600 IN A 10.9.0.3",
        ],
    ),
    ok(
        "72",
        "p0.skydns.test.",
        SRV,
        &["p0.skydns.test. 3600 IN SRV 10 100 1 a.p0.skydns.test."],
        &["a.p0.skydns.test. 3600 IN A 10.9.1.1"],
    ),
    // 74: one bad value no longer poisons its siblings (the original: NODATA / SERVFAIL).
    ok(
        "74",
        "bad.skydns.test.",
        A,
        &["bad.skydns.test. 3600 IN A 10.8.0.1"],
        &[],
    ),
    ok(
        "74b",
        "bad.skydns.test.",
        SRV,
        &["bad.skydns.test. 3600 IN SRV 10 100 0 y.bad.skydns.test."],
        &["y.bad.skydns.test. 3600 IN A 10.8.0.1"],
    ),
    ok(
        "74c",
        "y.bad.skydns.test.",
        A,
        &["y.bad.skydns.test. 3600 IN A 10.8.0.1"],
        &[],
    ),
    nodata("74d", "x.bad.skydns.test.", A),
    nodata("75", "strttl.skydns.test.", A),
    nxdomain("76", "caps.skydns.test.", A),
    nxdomain("76b", "Caps.skydns.test.", A),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_conformance_table_on_fixture_f() {
    let server = Running::start(F, &["-domain", "skydns.test."]).await;
    let mut failures = Vec::new();
    for case in CASES {
        let reply = server.client.udp(case.name, case.qtype).await.unwrap();
        let mut problems = Vec::new();
        if rcode(&reply) != case.rcode {
            problems.push(format!("rcode {} (want {})", rcode(&reply), case.rcode));
        }
        if !reply.metadata.authoritative {
            problems.push("AA not set".to_owned());
        }
        if !reply.metadata.recursion_desired || !reply.metadata.recursion_available {
            problems.push("RD/RA not set".to_owned());
        }
        if reply.metadata.truncation {
            problems.push("TC set".to_owned());
        }
        if set(&reply.answers) != strings(case.answers) {
            problems.push(format!("answers {:?}", set(&reply.answers)));
        }
        if set(&reply.additionals) != strings(case.additionals) {
            problems.push(format!("additionals {:?}", set(&reply.additionals)));
        }
        let negative = is_negative_soa(&reply, "skydns.test.", 60);
        if case.negative != negative || (!case.negative && !reply.authorities.is_empty()) {
            problems.push(format!("authority {:?}", set(&reply.authorities)));
        }
        if reply.edns.is_some() {
            problems.push("OPT in a reply to a query without one".to_owned());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "case {} ({} {}): {}",
                case.id,
                case.name,
                case.qtype,
                problems.join("; ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soa_ptr_chaos_and_txt_details() {
    let long_text = "x".repeat(300);
    let long_value = format!(r#"{{"text":"{long_text}"}}"#);
    let mut entries = F.to_vec();
    entries.push(("/skydns/test/skydns/longtxt", &long_value));
    let server = Running::start(&entries, &["-domain", "skydns.test."]).await;
    let client = &server.client;

    // 32: the apex SOA.
    let reply = client.udp("skydns.test.", SOA).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    let [soa] = reply.answers.as_slice() else {
        panic!("one SOA expected: {:?}", set(&reply.answers));
    };
    assert_eq!(soa.ttl, 3600);
    let RData::SOA(data) = &soa.data else {
        panic!("not an SOA: {soa}");
    };
    assert_eq!(data.mname.to_ascii(), "ns.dns.skydns.test.");
    assert_eq!(data.rname.to_ascii(), "hostmaster.skydns.local.");
    assert_eq!(
        (data.refresh, data.retry, data.expire, data.minimum),
        (28800, 7200, 604_800, 60)
    );
    assert_eq!(data.serial % 3600, 0, "serial is the Unix hour");

    // 52: PTR from /skydns/arpa.
    let reply = client
        .udp("1.0.0.10.in-addr.arpa.", RecordType::PTR)
        .await
        .unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&["1.0.0.10.in-addr.arpa. 3600 IN PTR reverse.example.com."])
    );
    // 53: a missing PTR is forwarded; the fake upstream refuses it and that is relayed.
    let reply = client
        .udp("2.0.0.10.in-addr.arpa.", RecordType::PTR)
        .await
        .unwrap();
    assert_eq!(rcode(&reply), ResponseCode::Refused);
    assert!(
        server
            .upstream
            .queries()
            .iter()
            .any(|(name, _, _)| name == "2.0.0.10.in-addr.arpa."),
        "the PTR query reached the upstream"
    );

    // 55: CHAOS.
    let mut query = harness::DnsClient::query_message("version.bind.", TXT);
    query.queries[0].query_class = DNSClass::CH;
    let reply = client.udp_message(&query).await.unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&["version.bind. 0 CH TXT 2.5.3a"])
    );
    let mut query = harness::DnsClient::query_message("authors.bind.", TXT);
    query.queries[0].query_class = DNSClass::CH;
    assert_eq!(client.udp_message(&query).await.unwrap().answers.len(), 4);

    // 77: a long TXT is split into 255-byte strings.
    let reply = client.udp("longtxt.skydns.test.", TXT).await.unwrap();
    let [txt] = reply.answers.as_slice() else {
        panic!("one TXT expected: {:?}", set(&reply.answers));
    };
    let RData::TXT(data) = &txt.data else {
        panic!("not a TXT: {txt}");
    };
    let lengths: Vec<usize> = data.txt_data.iter().map(|s| s.len()).collect();
    assert_eq!(lengths, [255, 45]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dns_name_stands_for_the_local_flag() {
    // 81: -local makes local.dns.<domain> answer for that name, owner kept.
    let server = Running::start(
        F,
        &[
            "-domain",
            "skydns.test.",
            "-local",
            "104.server1.development.region1.skydns.test",
        ],
    )
    .await;
    let reply = server
        .client
        .udp("local.dns.skydns.test.", A)
        .await
        .unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&["local.dns.skydns.test. 3600 IN A 10.0.0.1"])
    );
    // 56: other CHAOS names are refused (the original: SERVFAIL).
    let mut query = harness::DnsClient::query_message("local.dns.skydns.test.", A);
    query.queries[0].query_class = DNSClass::CH;
    let reply = server.client.udp_message(&query).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::Refused);
    server.stop().await;

    // Without -local it is an ordinary (missing) name.
    let server = Running::start(F, &["-domain", "skydns.test."]).await;
    let reply = server
        .client
        .udp("local.dns.skydns.test.", A)
        .await
        .unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NXDomain);
    server.stop().await;
}

/// The 32 nibbles of an IPv6 address, most significant first.
fn nibbles(ip: Ipv6Addr) -> Vec<String> {
    ip.octets()
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .map(|n| format!("{n:x}"))
        .collect()
}

/// `<nibbles reversed>.ip6.arpa.`
fn ip6_arpa(ip: Ipv6Addr) -> String {
    let mut labels = nibbles(ip);
    labels.reverse();
    format!("{}.ip6.arpa.", labels.join("."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip6_arpa_ptr_comes_from_keys_under_arpa_ip6_and_misses_are_forwarded() {
    // §1 keys, §3.8: reverse answers come only from `/P/arpa/ip6/<nibbles>` leaves; an
    // AAAA record does not make a PTR by itself.
    let (named, unnamed): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
    );
    let ptr_key = format!("/skydns/arpa/ip6/{}", nibbles(named).join("/"));
    let server = Running::start(
        &[
            ("/skydns/test/skydns/v6host", r#"{"host":"2001:db8::1"}"#),
            ("/skydns/test/skydns/v6only", r#"{"host":"2001:db8::2"}"#),
            (&ptr_key, r#"{"host":"v6host.skydns.test"}"#),
        ],
        &["-domain", "skydns.test."],
    )
    .await;
    let client = &server.client;
    let reply = client
        .udp("v6host.skydns.test.", RecordType::AAAA)
        .await
        .unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&["v6host.skydns.test. 3600 IN AAAA 2001:db8::1"])
    );

    let name = ip6_arpa(named);
    let reply = client.udp(&name, RecordType::PTR).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NoError);
    assert_eq!(
        set(&reply.answers),
        strings(&[&format!("{name} 3600 IN PTR v6host.skydns.test.")])
    );
    // AA=1: a deliberate difference (the original clears AA on PTR answers; README).
    assert!(reply.metadata.authoritative);
    assert!(reply.authorities.is_empty() && reply.additionals.is_empty());
    // The lookup ignores case; the owner is the question as sent.
    let upper = name.to_ascii_uppercase();
    let reply = client.udp(&upper, RecordType::PTR).await.unwrap();
    assert_eq!(
        set(&reply.answers),
        strings(&[&format!("{upper} 3600 IN PTR v6host.skydns.test.")])
    );
    assert!(server.upstream.queries().is_empty(), "answered locally");

    // Misses are forwarded and the upstream's reply (REFUSED here) relayed: the address of
    // an AAAA record without a reverse key, and a directory (not a leaf) of the reverse tree.
    let directory = "8.b.d.0.1.0.0.2.ip6.arpa.";
    for miss in [ip6_arpa(unnamed).as_str(), directory] {
        let reply = client.udp(miss, RecordType::PTR).await.unwrap();
        assert_eq!(rcode(&reply), ResponseCode::Refused, "{miss}");
        assert!(reply.answers.is_empty(), "{miss}");
        assert!(
            server
                .upstream
                .queries()
                .iter()
                .any(|(n, t, _)| n == miss && *t == RecordType::PTR),
            "{miss} reached the upstream"
        );
    }
    // Q9: the original answers any type under ip6.arpa. with the PTR; only PTR queries take
    // the reverse path here, so an AAAA for that name is forwarded like any outside name.
    let reply = client.udp(&name, RecordType::AAAA).await.unwrap();
    assert_eq!(rcode(&reply), ResponseCode::Refused);
    assert!(reply.answers.is_empty());
    assert!(
        server
            .upstream
            .queries()
            .iter()
            .any(|(n, t, _)| *n == name && *t == RecordType::AAAA)
    );
    server.stop().await;
}

/// The A addresses of a reply, in answer order.
fn order(reply: &hickory_proto::op::Message) -> Vec<Ipv4Addr> {
    harness::dns::a_addrs(reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_shuffles_address_answers_and_off_keeps_key_order() {
    // §3.13. Written out of key order, so key order is not just the order of the writes.
    let entries = [
        (
            "/skydns/test/skydns/rr/c",
            r#"{"host":"10.12.0.3","port":3}"#,
        ),
        (
            "/skydns/test/skydns/rr/a",
            r#"{"host":"10.12.0.1","port":1}"#,
        ),
        (
            "/skydns/test/skydns/rr/b",
            r#"{"host":"10.12.0.2","port":2}"#,
        ),
    ];
    let key_order: Vec<Ipv4Addr> = ["10.12.0.1", "10.12.0.2", "10.12.0.3"]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();
    let srv_ports = harness::dns::srv_ports_in_order;

    // On (the default): over 300 queries each address comes first about 100 times; the
    // bound of 30 is loose enough never to fail by chance (p < 1e-20 per address).
    let server = Running::start(&entries, &["-domain", "skydns.test."]).await;
    let mut first: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for _ in 0..300 {
        let reply = server.client.udp("rr.skydns.test.", A).await.unwrap();
        let got = order(&reply);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, key_order, "always all three");
        *first.entry(got[0]).or_default() += 1;
    }
    assert_eq!(
        first.len(),
        3,
        "each address comes first sometimes: {first:?}"
    );
    assert!(first.values().all(|&n| n >= 30), "{first:?}");
    // SRV answers are never shuffled: key order (ports 1, 2, 3) every time.
    for _ in 0..20 {
        let reply = server.client.udp("rr.skydns.test.", SRV).await.unwrap();
        assert_eq!(srv_ports(&reply), [1, 2, 3]);
    }
    server.stop().await;

    // Off: the same order every time, the key order.
    let server = Running::start(&entries, &["-domain", "skydns.test.", "-round-robin=false"]).await;
    for _ in 0..50 {
        let reply = server.client.udp("rr.skydns.test.", A).await.unwrap();
        assert_eq!(order(&reply), key_order);
    }
    server.stop().await;
}
