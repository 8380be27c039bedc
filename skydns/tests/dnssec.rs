//! DNSSEC online signing (`-dnssec`, spec §3.21, case 85), checked with BIND's own tools:
//! keys made by `dnssec-keygen`, answers validated by `delv` with that key as trust anchor
//! (positive answers, SRV with glue, NXDOMAIN, NODATA, DNSKEY), plus the wire details (AD,
//! OPT with DO, RRSIG fields, forwarded answers unsigned) and start-up refusals.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use support::{Running, rcode};

const BIN: &str = env!("CARGO_BIN_EXE_skydns");

const RECORDS: &[(&str, &str)] = &[
    (
        "/skydns/test/skydns/dev/server1",
        r#"{"host":"10.0.0.1","port":8080}"#,
    ),
    (
        "/skydns/test/skydns/dev/server2",
        r#"{"host":"10.0.0.2","port":8081}"#,
    ),
];

/// Makes a zone key for `zone` with `dnssec-keygen` in `dir`; returns its basename.
fn keygen(dir: &Path, algorithm: &str, zone: &str) -> PathBuf {
    let mut command = Command::new("dnssec-keygen");
    command.arg("-K").arg(dir).args(["-a", algorithm]);
    if algorithm.starts_with("RSA") {
        command.args(["-b", "2048"]);
    }
    let output = command
        .args(["-n", "ZONE", zone])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("dnssec-keygen (Debian bind9-utils, tests/setup.sh): {e}"));
    assert!(output.status.success(), "{output:?}");
    let base = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    dir.join(base)
}

/// A delv trust-anchor file holding the public key of `base`.
fn anchor_file(dir: &Path, base: &Path) -> PathBuf {
    let text = std::fs::read_to_string(format!("{}.key", base.display())).unwrap();
    let line = text
        .lines()
        .find(|l| !l.starts_with(';') && l.contains("DNSKEY"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let at = fields.iter().position(|f| *f == "DNSKEY").unwrap();
    let key: String = fields[at + 4..].concat();
    let anchor = format!(
        "trust-anchors {{ {} static-key {} {} {} \"{key}\"; }};\n",
        fields[0],
        fields[at + 1],
        fields[at + 2],
        fields[at + 3]
    );
    let path = dir.join("anchor.conf");
    std::fs::write(&path, anchor).unwrap();
    path
}

/// What `delv` prints for one query against the server, validating from `anchor`.
fn delv(server: &Running, anchor: &Path, name: &str, qtype: &str) -> String {
    let output = Command::new("delv")
        .arg(format!("@{}", server.addr.ip()))
        .args(["-p", &server.addr.port().to_string()])
        .arg("-a")
        .arg(anchor)
        .args(["+root=skydns.test.", name, qtype])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("delv (Debian bind9-dnsutils, tests/setup.sh): {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn do_query(name: &str, qtype: RecordType) -> Message {
    let mut query = harness::DnsClient::query_message(name, qtype);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns.set_dnssec_ok(true);
    query.set_edns(edns);
    query
}

/// The record types the RRSIGs in `records` cover.
fn covered(records: &[hickory_proto::rr::Record]) -> Vec<RecordType> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig.input().type_covered),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_fully_validates_answers_signed_with_each_algorithm() {
    for algorithm in ["ECDSAP256SHA256", "RSASHA256", "ED25519"] {
        let dir = tempfile::tempdir().unwrap();
        let base = keygen(dir.path(), algorithm, "skydns.test.");
        let anchor = anchor_file(dir.path(), &base);
        let base_text = base.to_string_lossy().into_owned();
        let server =
            Running::start(RECORDS, &["-domain", "skydns.test.", "-dnssec", &base_text]).await;
        let cases = [
            ("server1.dev.skydns.test.", "A", "; fully validated"),
            ("dev.skydns.test.", "SRV", "; fully validated"),
            ("dev.skydns.test.", "A", "; fully validated"),
            ("skydns.test.", "SOA", "; fully validated"),
            ("skydns.test.", "DNSKEY", "; fully validated"),
            (
                "doesnotexist.skydns.test.",
                "A",
                "; negative response, fully validated",
            ),
            (
                "a.b.c.skydns.test.",
                "SRV",
                "; negative response, fully validated",
            ),
            // NODATA: a name with an A record asked for AAAA (the original's NSEC3 lists
            // AAAA there, which validators reject), and for TXT.
            (
                "server1.dev.skydns.test.",
                "AAAA",
                "; negative response, fully validated",
            ),
            (
                "server1.dev.skydns.test.",
                "TXT",
                "; negative response, fully validated",
            ),
        ];
        for (name, qtype, expected) in cases {
            let output = delv(&server, &anchor, name, qtype);
            assert!(
                output.lines().any(|l| l.trim() == expected),
                "{algorithm}: delv {name} {qtype}: wanted {expected:?} in\n{output}"
            );
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_replies_carry_ad_rrsigs_and_do_and_others_stay_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let base = keygen(dir.path(), "ECDSAP256SHA256", "skydns.test.");
    let base_text = base.to_string_lossy().into_owned();
    let server = Running::start(RECORDS, &["-domain", "skydns.test.", "-dnssec", &base_text]).await;
    let client = &server.client;
    server
        .upstream
        .add_a("outside.example.", "192.0.2.7".parse().unwrap(), 30);

    // Case 85: SRV with DO → AD, SRV + RRSIG(SRV) (labels 3, original TTL 3600, signer the
    // domain), glue A + RRSIG(A), OPT with DO and 4096.
    let reply = client
        .udp_message(&do_query("dev.skydns.test.", RecordType::SRV))
        .await
        .unwrap();
    assert!(reply.metadata.authentic_data);
    assert_eq!(covered(&reply.answers), vec![RecordType::SRV]);
    let sig = reply
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(sig)) => Some(sig.input().clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((sig.num_labels, sig.original_ttl), (3, 3600));
    assert_eq!(sig.signer_name, Name::from_ascii("skydns.test.").unwrap());
    let lifetime = sig
        .sig_expiration
        .get()
        .wrapping_sub(sig.sig_inception.get());
    assert_eq!(
        lifetime,
        7 * 24 * 3600 + 3 * 3600,
        "inception now-3h, expiration now+7d"
    );
    assert_eq!(
        covered(&reply.additionals),
        vec![RecordType::A, RecordType::A]
    );
    let edns = reply.edns.as_ref().unwrap();
    assert!(edns.flags().dnssec_ok);
    assert_eq!(edns.max_payload(), 4096);

    // NXDOMAIN with DO: SOA, three NSEC3 with TTL 60, each RRset signed.
    let reply = client
        .udp_message(&do_query("doesnotexist.skydns.test.", RecordType::A))
        .await
        .unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NXDomain);
    let nsec3: Vec<_> = reply
        .authorities
        .iter()
        .filter(|r| r.record_type() == RecordType::NSEC3)
        .collect();
    assert_eq!(nsec3.len(), 3);
    assert!(nsec3.iter().all(|r| r.ttl == 60));
    let mut signed = covered(&reply.authorities);
    signed.sort();
    assert_eq!(signed.len(), 4, "SOA and the three NSEC3 names: {signed:?}");

    // Without DO: no signatures, no AD, no OPT.
    let reply = client
        .udp("dev.skydns.test.", RecordType::SRV)
        .await
        .unwrap();
    assert!(!reply.metadata.authentic_data);
    assert!(covered(&reply.answers).is_empty() && covered(&reply.additionals).is_empty());
    assert!(reply.edns.is_none());
    let reply = client
        .udp("doesnotexist.skydns.test.", RecordType::A)
        .await
        .unwrap();
    assert!(
        reply
            .authorities
            .iter()
            .all(|r| r.record_type() == RecordType::SOA)
    );

    // Forwarded answers are relayed as they came, never signed by us.
    let reply = client
        .udp_message(&do_query("outside.example.", RecordType::A))
        .await
        .unwrap();
    assert_eq!(reply.answers.len(), 1, "{reply:?}");
    assert!(covered(&reply.answers).is_empty());
    assert!(!reply.metadata.authentic_data);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_cached_up_to_scache_and_counted_as_misses() {
    let dir = tempfile::tempdir().unwrap();
    let base = keygen(dir.path(), "ECDSAP256SHA256", "skydns.test.");
    let base_text = base.to_string_lossy().into_owned();
    for (scache, expected) in [("10", 1), ("0", 3)] {
        let port = harness::process::free_tcp_port().to_string();
        let args = [
            "-domain",
            "skydns.test.",
            "-dnssec",
            &base_text,
            "-scache",
            scache,
            "-metrics-port",
            &port,
            "-metrics-ip",
            "127.0.0.1",
        ];
        let server = Running::start(RECORDS, &args).await;
        for _ in 0..3 {
            let reply = server
                .client
                .udp_message(&do_query("server1.dev.skydns.test.", RecordType::A))
                .await
                .unwrap();
            assert_eq!(covered(&reply.answers), vec![RecordType::A]);
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>().unwrap()));
        let (_, body) = harness::http::http_get(addr, "/metrics").await.unwrap();
        let line =
            format!("skydns_skydns_dns_cachemiss_count_total{{cache=\"signature\"}} {expected}");
        assert!(
            body.lines().any(|l| l == line),
            "scache {scache}: wanted {line:?} in\n{body}"
        );
        server.stop().await;
    }
}

/// The etcd config's `dnssec` turns spaces back into `+` (as the original does: a `+` often
/// arrives as a space through URL-encoded tools).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_config_names_the_key_with_spaces_for_plus_signs() {
    let dir = tempfile::tempdir().unwrap();
    let base = keygen(dir.path(), "ECDSAP256SHA256", "skydns.test.");
    let spaced = base.to_string_lossy().replace('+', " ");
    let config = serde_json::json!({ "domain": "skydns.test.", "dnssec": spaced }).to_string();
    let mut entries = RECORDS.to_vec();
    entries.push(("/skydns/config", &config));
    let server = Running::start(&entries, &[]).await;
    let reply = server
        .client
        .udp_message(&do_query("server1.dev.skydns.test.", RecordType::A))
        .await
        .unwrap();
    assert!(reply.metadata.authentic_data);
    assert_eq!(covered(&reply.answers), vec![RecordType::A]);
    server.stop().await;
}

/// Keys that cannot sign stop the binary with one line naming the problem and exit 1.
#[test]
fn unusable_keys_are_one_error_line_and_a_failed_exit() {
    let dir = tempfile::tempdir().unwrap();
    let sha1 = keygen(dir.path(), "RSASHA1", "skydns.test.");
    let other = keygen(dir.path(), "ECDSAP256SHA256", "other.test.");
    let etcd = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(harness::EtcdServer::start());
    let missing = dir.path().join("Knothere");
    let cases = [
        (sha1, "algorithm RSASHA1 cannot sign here"),
        (other, "ownername of DNSKEY must match SkyDNS domain"),
        (missing, "cannot read"),
    ];
    for (base, expected) in cases {
        let output = Command::new(BIN)
            .args(["-machines", &etcd.endpoint(), "-domain", "skydns.test."])
            .args(["-addr", "127.0.0.1:1", "-nameservers", "127.0.0.1:1"])
            .arg("-dnssec")
            .arg(&base)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{base:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("skydns: "))
            .collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(expected), "{base:?}: {stderr}");
    }
}
