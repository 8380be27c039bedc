//! The registrator's service model (one published container port) and how it is stored in etcd
//! by the `skydns2://` and `etcd://` registries.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::keys::{DomainName, KeyError, KeySchema};
use crate::record::ServiceRecord;

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    /// Parses Docker's port suffix (`80/tcp`, `53/udp`); `sctp` and others are not supported.
    pub fn from_docker(text: &str) -> Option<Self> {
        match text {
            "tcp" | "" => Some(Self::Tcp),
            "udp" => Some(Self::Udp),
            _ => None,
        }
    }

    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One service: a container port as registrator announces it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    /// Unique per instance: `SERVICE_ID`, or `<hostname>:<container name>:<port>[:udp]`.
    pub id: String,
    /// The service name, shared by all instances: `elasticsearch-9200`.
    pub name: String,
    /// The address clients should connect to (an IP literal, or a host name).
    pub ip: String,
    /// The port clients should connect to.
    pub port: u16,
    pub protocol: Protocol,
    /// Tags in the order they were written (container tags, then forced tags, then `udp`).
    pub tags: Vec<String>,
    /// Every other `SERVICE_*` field.
    pub attributes: BTreeMap<String, String>,
    /// Seconds the record lives without a refresh; 0 = forever.
    pub ttl: u32,
}

impl Service {
    /// The SkyDNS record for this service: `{"host":"<ip>","port":<port>}`.
    pub fn record(&self) -> ServiceRecord {
        ServiceRecord::new(self.ip.clone(), self.port)
    }

    /// The `skydns2://` key: `<prefix>/<reversed domain>/<name>/<dns-safe id>`.
    pub fn skydns_key(&self, schema: &KeySchema, domain: &DomainName) -> Result<String, KeyError> {
        schema.service_key(domain, &self.name, &self.id)
    }

    /// The `etcd://` key: `<prefix>/<name>/<id>` (the prefix is used as given, without a
    /// trailing slash).
    pub fn etcd_key(&self, prefix: &str) -> String {
        format!("{}/{}/{}", prefix.trim_end_matches('/'), self.name, self.id)
    }

    /// The `etcd://` value: `<ip>:<port>`, an IPv6 address in brackets.
    pub fn etcd_value(&self) -> String {
        match self.ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.ip, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es(id: &str, ip: &str) -> Service {
        Service {
            id: id.into(),
            name: "elasticsearch-9200".into(),
            ip: ip.into(),
            port: 9200,
            ..Service::default()
        }
    }

    #[test]
    fn skydns2_key_and_value_match_the_seed() {
        let domain = DomainName::parse("staging.example.local").unwrap();
        let service = es("elasticsearch1", "10.0.0.5");
        assert_eq!(
            service.skydns_key(&KeySchema::default(), &domain).unwrap(),
            "/skydns/local/example/staging/elasticsearch-9200/elasticsearch1"
        );
        assert_eq!(
            service.record().to_json().unwrap(),
            r#"{"host":"10.0.0.5","port":9200}"#
        );
    }

    #[test]
    fn etcd_keys_and_values() {
        let cases = [
            (
                "/services",
                "10.0.0.5",
                "/services/elasticsearch-9200/es1",
                "10.0.0.5:9200",
            ),
            (
                "/services/",
                "::1",
                "/services/elasticsearch-9200/es1",
                "[::1]:9200",
            ),
            (
                "/s",
                "host.example",
                "/s/elasticsearch-9200/es1",
                "host.example:9200",
            ),
        ];
        for (prefix, ip, key, value) in cases {
            let service = es("es1", ip);
            assert_eq!(service.etcd_key(prefix), key);
            assert_eq!(service.etcd_value(), value);
        }
    }

    #[test]
    fn protocols() {
        assert_eq!(Protocol::from_docker("tcp"), Some(Protocol::Tcp));
        assert_eq!(Protocol::from_docker("udp"), Some(Protocol::Udp));
        assert_eq!(Protocol::from_docker("sctp"), None);
        assert_eq!(Protocol::Udp.to_string(), "udp");
    }
}
