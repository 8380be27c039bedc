//! Registry URIs (`skydns2://host:port/domain`, `etcd://host:port/prefix`) and how each backend
//! turns a service into an etcd key and value.

use common::etcd::EtcdError;
use common::{DomainName, EtcdSettings, KeyError, KeySchema, Service};

/// The endpoint used when a URI names no host (`skydns2:///example.local`).
const DEFAULT_HOST: &str = "127.0.0.1:2379";

/// Why a registry URI was refused.
#[derive(Debug, thiserror::Error)]
pub enum UriError {
    #[error("missing registry URI")]
    Missing,
    #[error("unrecognized adapter: {0}")]
    UnknownScheme(String),
    /// One of the original's other registries (Consul, ZooKeeper): named, with what to use.
    #[error(
        "unrecognized adapter: {uri} ({scheme}:// is not supported: this registrator writes to \
         etcd only, as skydns2:// or etcd://; for {product} keep gliderlabs/registrator)"
    )]
    NotSupported {
        uri: String,
        scheme: String,
        product: &'static str,
    },
    #[error("skydns2: the registry URI needs a domain (skydns2://host:port/domain), got {0:?}")]
    NoDomain(String),
    #[error("skydns2: invalid domain in {uri:?}: {source}")]
    BadDomain {
        uri: String,
        #[source]
        source: KeyError,
    },
    #[error("registry URI {uri:?}: {source}")]
    Endpoints {
        uri: String,
        #[source]
        source: EtcdError,
    },
}

/// Why a service has no key in a backend.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("service name is not usable in a skydns2 key: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Record(#[from] common::record::RecordError),
}

/// Where and how services are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `skydns2://`: `/skydns/<reversed domain>/<name>/<dns-safe id>` = `{"host":..,"port":..}`.
    SkyDns2 {
        schema: KeySchema,
        domain: DomainName,
    },
    /// `etcd://`: `<prefix>/<name>/<id>` = `<ip>:<port>`.
    Etcd { prefix: String },
}

/// A parsed registry URI.
#[derive(Debug, Clone)]
pub struct RegistryUri {
    pub backend: Backend,
    pub etcd: EtcdSettings,
}

impl RegistryUri {
    /// Parses `scheme://host:port[,host:port...]/path`.
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        let unknown = || UriError::UnknownScheme(uri.to_owned());
        let (scheme, rest) = uri.split_once("://").ok_or_else(unknown)?;
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let hosts = if hosts.trim().is_empty() {
            DEFAULT_HOST
        } else {
            hosts
        };
        let backend = match scheme {
            "skydns2" => {
                let domain = path.trim_matches('/');
                if domain.is_empty() {
                    return Err(UriError::NoDomain(uri.to_owned()));
                }
                let domain = DomainName::parse(domain).map_err(|source| UriError::BadDomain {
                    uri: uri.to_owned(),
                    source,
                })?;
                Backend::SkyDns2 {
                    schema: KeySchema::default(),
                    domain,
                }
            }
            "etcd" => Backend::Etcd {
                prefix: format!("/{}", path.trim_matches('/')),
            },
            "consul" | "consul-tls" | "consul-unix" | "consulkv" | "zookeeper" => {
                return Err(UriError::NotSupported {
                    uri: uri.to_owned(),
                    scheme: scheme.to_owned(),
                    product: if scheme == "zookeeper" {
                        "ZooKeeper"
                    } else {
                        "Consul"
                    },
                });
            }
            _ => return Err(unknown()),
        };
        let etcd = EtcdSettings::new(hosts).map_err(|source| UriError::Endpoints {
            uri: uri.to_owned(),
            source,
        })?;
        Ok(Self { backend, etcd })
    }
}

impl Backend {
    /// The key and value of `service` in this backend.
    pub fn entry(&self, service: &Service) -> Result<(String, String), EntryError> {
        match self {
            Self::SkyDns2 { schema, domain } => {
                let key = service.skydns_key(schema, domain)?;
                let value = service.record().to_json()?;
                Ok((key, value))
            }
            Self::Etcd { prefix } => Ok((service.etcd_key(prefix), service.etcd_value())),
        }
    }

    /// The etcd prefix under which every record of this backend lives.
    pub fn prefix(&self) -> String {
        match self {
            Self::SkyDns2 { schema, domain } => format!("{}/", schema.key(domain)),
            Self::Etcd { prefix } => format!("{}/", prefix.trim_end_matches('/')),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn es(id: &str) -> Service {
        Service {
            id: id.into(),
            name: "elasticsearch-9200".into(),
            ip: "10.0.0.5".into(),
            port: 9200,
            ..Service::default()
        }
    }

    /// (URI, endpoints, key of `es(id)`, value)
    #[test]
    fn uris_give_the_originals_keys_and_values() {
        let cases: &[(&str, &str, &[&str], &str, &str)] = &[
            (
                "skydns2://10.0.0.5:4001/staging.example.local",
                "es1",
                &["http://10.0.0.5:4001"],
                "/skydns/local/example/staging/elasticsearch-9200/es1",
                r#"{"host":"10.0.0.5","port":9200}"#,
            ),
            (
                "skydns2://a:4001,b:4001/example.local.",
                "host:es-1:9200",
                &["http://a:4001", "http://b:4001"],
                "/skydns/local/example/elasticsearch-9200/host-es-1-9200-",
                r#"{"host":"10.0.0.5","port":9200}"#,
            ),
            (
                "skydns2:///example.local",
                "es1",
                &["http://127.0.0.1:2379"],
                "/skydns/local/example/elasticsearch-9200/es1",
                r#"{"host":"10.0.0.5","port":9200}"#,
            ),
            (
                "etcd://10.0.0.5:2379/services",
                "host:es-1:9200",
                &["http://10.0.0.5:2379"],
                "/services/elasticsearch-9200/host:es-1:9200",
                "10.0.0.5:9200",
            ),
            (
                "etcd://10.0.0.5",
                "es1",
                &["http://10.0.0.5:2379"],
                "/elasticsearch-9200/es1",
                "10.0.0.5:9200",
            ),
        ];
        for (uri, id, endpoints, key, value) in cases {
            let parsed = RegistryUri::parse(uri).unwrap();
            assert_eq!(parsed.etcd.endpoints(), *endpoints, "{uri}");
            let (k, v) = parsed.backend.entry(&es(id)).unwrap();
            assert!(k.starts_with(key), "{uri}: {k}");
            assert!(k.starts_with(&parsed.backend.prefix()), "{uri}: {k}");
            assert_eq!(&v, value, "{uri}");
        }
    }

    #[test]
    fn bad_uris() {
        let cases = [
            (
                "consul://h:8500",
                "unrecognized adapter: consul://h:8500 (consul:// is not supported",
            ),
            (
                "consulkv://h:8500/p",
                "consulkv:// is not supported: this registrator writes to etcd only",
            ),
            (
                "consul-tls://h:8501",
                "for Consul keep gliderlabs/registrator",
            ),
            (
                "zookeeper://h:2181/p",
                "for ZooKeeper keep gliderlabs/registrator",
            ),
            ("redis://h:6379", "unrecognized adapter: redis://h:6379"),
            ("skydns2", "unrecognized adapter"),
            ("skydns2://h:4001", "needs a domain"),
            ("skydns2://h:4001/", "needs a domain"),
            ("skydns2://h:4001/bad_dom ain", "invalid domain"),
            ("etcd://h:99999/p", "not a number from 1 to 65535"),
        ];
        for (uri, message) in cases {
            let err = RegistryUri::parse(uri).unwrap_err().to_string();
            assert!(err.contains(message), "{uri}: {err}");
        }
    }

    #[test]
    fn names_that_are_not_dns_labels_are_refused_by_skydns2() {
        let backend = RegistryUri::parse("skydns2://h/example.local")
            .unwrap()
            .backend;
        let mut service = es("es1");
        service.name = "my.service".into();
        assert!(backend.entry(&service).is_err());
    }
}
