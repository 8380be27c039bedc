//! The SkyDNS service record: the JSON value stored at each etcd key.
//!
//! Compatible with what SkyDNS 2 and its writers (registrator, hand-made `etcdctl put`s) store:
//! unknown fields are ignored, missing ones take their zero value, and only non-zero fields are
//! written, in the original's field order, so registrator's value is byte-for-byte
//! `{"host":"10.0.0.5","port":9200}`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Why a stored value could not be read as a service record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("value is not a valid service record: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("service record could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
}

/// One SkyDNS service record. Field names and meanings are those of SkyDNS 2's `msg.Service`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// An IP literal (A/AAAA data) or a domain name (CNAME/SRV/MX/PTR target).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// SRV port.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub port: u16,
    /// SRV priority and MX preference; 0 means "the server's default" (10).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u16,
    /// Relative SRV weight within a priority; 0 counts as 100.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight: u16,
    /// TXT data.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Whether this record also answers MX queries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mail: bool,
    /// DNS TTL of the answers built from this record; 0 means "the server's default".
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ttl: u32,
    /// Number of left-most labels removed from SRV/MX target names.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub targetstrip: u32,
    /// Grouping filter: records of another group below the same name are left out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
}

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// What a record's `host` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind<'a> {
    /// An address; an IPv4-mapped IPv6 literal (`::ffff:1.2.3.4`) counts as IPv4.
    Ip(IpAddr),
    /// A domain name (written as stored; compare case-insensitively).
    Name(&'a str),
    /// No host: the original treats it as the root name `.`.
    Empty,
}

impl ServiceRecord {
    /// A record with just a host and a port, as registrator writes it.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            ..Self::default()
        }
    }

    /// Decodes a stored value. A wrong type for a known field (`"ttl":"30"`, a negative port)
    /// is an error; unknown fields are ignored.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RecordError> {
        serde_json::from_slice(bytes).map_err(RecordError::Decode)
    }

    /// Encodes the record with only its non-zero fields.
    pub fn to_json(&self) -> Result<String, RecordError> {
        serde_json::to_string(self).map_err(RecordError::Encode)
    }

    /// Classifies `host`.
    pub fn host_kind(&self) -> HostKind<'_> {
        if self.host.is_empty() {
            return HostKind::Empty;
        }
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => HostKind::Ip(IpAddr::V4(v4)),
                None => HostKind::Ip(IpAddr::V6(v6)),
            },
            Ok(ip) => HostKind::Ip(ip),
            Err(_) => HostKind::Name(&self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrator_value_is_byte_identical_to_the_original() {
        let record = ServiceRecord::new("10.0.0.5", 9200);
        assert_eq!(
            record.to_json().unwrap(),
            r#"{"host":"10.0.0.5","port":9200}"#
        );
    }

    #[test]
    fn only_non_default_fields_are_written_in_field_order() {
        let record = ServiceRecord {
            host: "server4".into(),
            port: 80,
            priority: 333,
            weight: 5,
            text: "t".into(),
            mail: true,
            ttl: 30,
            targetstrip: 1,
            group: "g1".into(),
        };
        assert_eq!(
            record.to_json().unwrap(),
            r#"{"host":"server4","port":80,"priority":333,"weight":5,"text":"t","mail":true,"ttl":30,"targetstrip":1,"group":"g1"}"#
        );
        assert_eq!(ServiceRecord::default().to_json().unwrap(), "{}");
    }

    /// (stored value, expected record) — taken from the SkyDNS conformance fixture.
    #[test]
    fn stored_values_decode() {
        let cases: &[(&str, ServiceRecord)] = &[
            (
                r#"{"host":"server1","port":8080}"#,
                ServiceRecord::new("server1", 8080),
            ),
            (
                r#"{"host":"server4","port":80,"priority":333}"#,
                ServiceRecord {
                    priority: 333,
                    ..ServiceRecord::new("server4", 80)
                },
            ),
            (
                r#"{"host":"10.0.0.2","ttl":360}"#,
                ServiceRecord {
                    ttl: 360,
                    ..ServiceRecord::new("10.0.0.2", 0)
                },
            ),
            (
                r#"{"host":"192.168.0.1","port":80,"targetstrip":1}"#,
                ServiceRecord {
                    targetstrip: 1,
                    ..ServiceRecord::new("192.168.0.1", 80)
                },
            ),
            (
                r#"{"text":"abc abc"}"#,
                ServiceRecord {
                    text: "abc abc".into(),
                    ..ServiceRecord::default()
                },
            ),
            (
                r#"{"host":"mx.skydns.test","priority":50,"mail":true}"#,
                ServiceRecord {
                    priority: 50,
                    mail: true,
                    ..ServiceRecord::new("mx.skydns.test", 0)
                },
            ),
            (
                r#"{"host":"127.0.0.1","group":"g1","unknown":{"x":[1,2]},"Key":"ignored"}"#,
                ServiceRecord {
                    group: "g1".into(),
                    ..ServiceRecord::new("127.0.0.1", 0)
                },
            ),
            ("{}", ServiceRecord::default()),
        ];
        for (json, expected) in cases {
            assert_eq!(
                &ServiceRecord::from_json(json.as_bytes()).unwrap(),
                expected,
                "{json}"
            );
        }
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        for bad in [
            r#"{"host":"10.0.0.2","ttl":"30"}"#,
            r#"{"port":-1}"#,
            r#"{"port":70000}"#,
            r#"{"mail":"yes"}"#,
            "not json",
            "",
            "[1,2]",
            r#"{"host":"x""#,
            "\u{0}\u{ff}",
        ] {
            let err = ServiceRecord::from_json(bad.as_bytes()).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("value is not a valid service record"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn host_kinds() {
        let cases = [
            ("10.0.0.1", HostKind::Ip("10.0.0.1".parse().unwrap())),
            (
                "2001::8:8:8:8",
                HostKind::Ip("2001::8:8:8:8".parse().unwrap()),
            ),
            ("::ffff:1.2.3.4", HostKind::Ip("1.2.3.4".parse().unwrap())),
            ("server1", HostKind::Name("server1")),
            ("bar.skydns.local", HostKind::Name("bar.skydns.local")),
            ("", HostKind::Empty),
        ];
        for (host, expected) in cases {
            assert_eq!(
                ServiceRecord::new(host, 0).host_kind(),
                expected,
                "{host:?}"
            );
        }
    }
}
