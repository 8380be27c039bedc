//! The SkyDNS etcd key schema: domain names ⇄ etcd keys, reverse-zone names and DNS-safe labels.
//!
//! A name's labels are reversed under a prefix: `es1.elasticsearch-9200.staging.example.local.`
//! lives at `/skydns/local/example/staging/elasticsearch-9200/es1`. Names are case-insensitive, so
//! every label is stored lower-case. Registrator writes keys with this module, skydns reads them
//! with it, and the tests build fixtures with it: there is no other definition of the layout.

use std::fmt;
use std::str::FromStr;

/// The prefix the originals use when none is configured (`-path-prefix` in SkyDNS).
pub const DEFAULT_PREFIX: &str = "/skydns";
/// Longest label RFC 1035 allows.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest name, in presentation form without the trailing dot, RFC 1035 allows.
pub const MAX_NAME_LEN: usize = 253;

/// Why a name, a label, a key or a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("name {name:?} has an empty label")]
    EmptyLabel { name: String },
    #[error("label {label:?} in {name:?} is longer than {MAX_LABEL_LEN} characters")]
    LabelTooLong { name: String, label: String },
    #[error(
        "label {label:?} in {name:?} is not a valid DNS label \
         (letters, digits, '-' and '_' only, not starting or ending with '-')"
    )]
    InvalidLabel { name: String, label: String },
    #[error("name {name:?} is longer than {MAX_NAME_LEN} characters")]
    NameTooLong { name: String },
    #[error("key {key:?} is not below the prefix {prefix:?}")]
    OutsidePrefix { key: String, prefix: String },
    #[error("key prefix {prefix:?} is invalid: it needs at least one non-empty path segment")]
    InvalidPrefix { prefix: String },
}

/// True for the labels SkyDNS treats as wildcards in a query: `*` and `any`.
pub fn is_wildcard_label(label: &str) -> bool {
    label == "*" || label.eq_ignore_ascii_case("any")
}

/// Checks one label that is already lower-case. `*` is accepted (it is a wildcard).
fn check_label(name: &str, label: &str) -> Result<(), KeyError> {
    if label.is_empty() {
        return Err(KeyError::EmptyLabel {
            name: name.to_owned(),
        });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(KeyError::LabelTooLong {
            name: name.to_owned(),
            label: label.to_owned(),
        });
    }
    let valid = label == "*"
        || (label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-'));
    if !valid {
        return Err(KeyError::InvalidLabel {
            name: name.to_owned(),
            label: label.to_owned(),
        });
    }
    Ok(())
}

/// A validated, lower-case domain name. The empty name is the root (`.`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DomainName {
    /// Labels in name order (`www`, `example`, `com`), lower-case.
    labels: Vec<String>,
}

impl DomainName {
    /// The root name `.`.
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses a name in presentation form; the trailing dot is optional and case is folded.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Ok(Self::root());
        }
        if trimmed.len() > MAX_NAME_LEN {
            return Err(KeyError::NameTooLong {
                name: text.to_owned(),
            });
        }
        let labels = trimmed
            .split('.')
            .map(|label| {
                let label = label.to_ascii_lowercase();
                check_label(text, &label).map(|()| label)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { labels })
    }

    /// Builds a name from labels in name order, validating each.
    pub fn from_labels<I, S>(labels: I) -> Result<Self, KeyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let labels: Vec<String> = labels
            .into_iter()
            .map(|l| l.as_ref().to_ascii_lowercase())
            .collect();
        let text = labels.join(".");
        for label in &labels {
            check_label(&text, label)?;
        }
        if text.len() > MAX_NAME_LEN {
            return Err(KeyError::NameTooLong { name: text });
        }
        Ok(Self { labels })
    }

    /// Labels in name order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Number of labels (0 for the root).
    pub fn label_count(&self) -> usize {
        self.labels.len()
    }

    /// The name with one more label on the left: `es1` + `web.local.` = `es1.web.local.`.
    pub fn child(&self, label: &str) -> Result<Self, KeyError> {
        let label = label.to_ascii_lowercase();
        let mut labels = Vec::with_capacity(self.labels.len() + 1);
        labels.push(label);
        labels.extend(self.labels.iter().cloned());
        Self::from_labels(labels)
    }

    /// The name in presentation form with the trailing dot (`.` for the root).
    pub fn to_fqdn(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.labels.is_empty() {
            return f.write_str(".");
        }
        for label in &self.labels {
            f.write_str(label)?;
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl FromStr for DomainName {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The key layout under one prefix (default `/skydns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema {
    /// Normalised: leading `/`, no trailing `/`, e.g. `/skydns`.
    prefix: String,
}

impl Default for KeySchema {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl KeySchema {
    /// A schema under `prefix`; `skydns`, `/skydns` and `/skydns/` all mean `/skydns`.
    pub fn new(prefix: &str) -> Result<Self, KeyError> {
        let segments: Vec<&str> = prefix.trim_matches('/').split('/').collect();
        if segments
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            return Err(KeyError::InvalidPrefix {
                prefix: prefix.to_owned(),
            });
        }
        Ok(Self {
            prefix: format!("/{}", segments.join("/")),
        })
    }

    /// The prefix, e.g. `/skydns`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix with a trailing `/`: what to list or watch so that `/skydns2/...` is not
    /// matched by a string prefix `/skydns`.
    pub fn watch_prefix(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// The key holding the SkyDNS configuration document, e.g. `/skydns/config`.
    pub fn config_key(&self) -> String {
        format!("{}/config", self.prefix)
    }

    /// The key of a name: labels reversed under the prefix. The root is the prefix itself.
    pub fn key(&self, name: &DomainName) -> String {
        let mut key = String::with_capacity(self.prefix.len() + name.to_string().len() + 1);
        key.push_str(&self.prefix);
        for label in name.labels().iter().rev() {
            key.push('/');
            key.push_str(label);
        }
        key
    }

    /// Parses `name` and returns its key.
    pub fn key_for(&self, name: &str) -> Result<String, KeyError> {
        Ok(self.key(&DomainName::parse(name)?))
    }

    /// The path segments of a key below the prefix, in key order (root first), not validated.
    /// `None` when the key is not below the prefix; nothing for the prefix itself.
    pub fn key_segments<'k>(&self, key: &'k str) -> Option<impl Iterator<Item = &'k str> + 'k> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        let rest = if rest.is_empty() {
            rest
        } else {
            rest.strip_prefix('/')?
        };
        Some(
            (!rest.is_empty())
                .then(|| rest.split('/'))
                .into_iter()
                .flatten(),
        )
    }

    /// The name a key stands for: `/skydns/local/skydns/east/web/x1` → `x1.web.east.skydns.local.`
    /// Every segment must be a valid DNS label.
    pub fn name(&self, key: &str) -> Result<DomainName, KeyError> {
        let segments = self
            .key_segments(key)
            .ok_or_else(|| KeyError::OutsidePrefix {
                key: key.to_owned(),
                prefix: self.prefix.clone(),
            })?;
        let mut labels: Vec<&str> = segments.collect();
        labels.reverse();
        DomainName::from_labels(labels).map_err(|err| match err {
            // Name the key, which is what the user can find in etcd.
            KeyError::EmptyLabel { .. } => KeyError::EmptyLabel {
                name: key.to_owned(),
            },
            KeyError::LabelTooLong { label, .. } => KeyError::LabelTooLong {
                name: key.to_owned(),
                label,
            },
            KeyError::InvalidLabel { label, .. } => KeyError::InvalidLabel {
                name: key.to_owned(),
                label,
            },
            KeyError::NameTooLong { .. } => KeyError::NameTooLong {
                name: key.to_owned(),
            },
            other => other,
        })
    }

    /// The key of one service instance: `<domain key>/<service name>/<dns-safe id>`.
    /// The service name must be a valid label; the id is mapped with [`dns_safe_label`].
    pub fn service_key(
        &self,
        domain: &DomainName,
        service: &str,
        id: &str,
    ) -> Result<String, KeyError> {
        let name = domain.child(service)?.child(&dns_safe_label(id))?;
        Ok(self.key(&name))
    }
}

/// Maps any string (a registrator service ID such as `host:es-1:9200`) to a valid DNS label,
/// deterministically.
///
/// - A valid label is kept, lower-cased.
/// - Otherwise every character outside `[a-z0-9_-]` becomes `-`, runs of `-` collapse, leading and
///   trailing `-` are cut, and `-` plus 8 hex digits of a hash of the original string is appended,
///   so two IDs that differ only in the replaced characters still get distinct labels. The result
///   is at most 63 characters long.
///
/// `host:es-1:9200` → `host-es-1-9200-<hash>`; `es1` → `es1`; `ES1` → `es1`.
pub fn dns_safe_label(id: &str) -> String {
    let lower = id.to_ascii_lowercase();
    if check_label(id, &lower).is_ok() && lower != "*" {
        return lower;
    }
    let mut base = String::with_capacity(lower.len());
    for c in lower.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '-'
        };
        if !(c == '-' && (base.is_empty() || base.ends_with('-'))) {
            base.push(c);
        }
    }
    let suffix = format!("{:08x}", fnv1a32(id.as_bytes()));
    let keep = MAX_LABEL_LEN - suffix.len() - 1;
    base.truncate(keep);
    let base = base.trim_end_matches('-');
    if base.is_empty() {
        format!("id-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}

/// FNV-1a, 32 bits: stable across releases and platforms, unlike `std`'s hasher.
fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (name as written, key under /skydns)
    const NAME_KEY_CASES: &[(&str, &str)] = &[
        (
            "elasticsearch-9200.staging.example.local.",
            "/skydns/local/example/staging/elasticsearch-9200",
        ),
        (
            "elasticsearch-9200.staging.example.local",
            "/skydns/local/example/staging/elasticsearch-9200",
        ),
        (
            "ES1.Elasticsearch-9200.STAGING.example.local.",
            "/skydns/local/example/staging/elasticsearch-9200/es1",
        ),
        (
            "service.staging.skydns.local.",
            "/skydns/local/skydns/staging/service",
        ),
        ("_http._tcp.web.local.", "/skydns/local/web/_tcp/_http"),
        (".", "/skydns"),
        ("", "/skydns"),
    ];

    #[test]
    fn names_map_to_reversed_keys() {
        let schema = KeySchema::default();
        for (name, key) in NAME_KEY_CASES {
            assert_eq!(schema.key_for(name).unwrap(), *key, "name {name:?}");
        }
    }

    #[test]
    fn keys_map_back_to_names() {
        let schema = KeySchema::default();
        let cases = [
            (
                "/skydns/local/skydns/east/web/x1",
                "x1.web.east.skydns.local.",
            ),
            (
                "/skydns/local/example/staging/ES1",
                "es1.staging.example.local.",
            ),
            ("/skydns", "."),
            ("/skydns/", "."),
        ];
        for (key, name) in cases {
            assert_eq!(schema.name(key).unwrap().to_string(), name, "key {key:?}");
        }
    }

    #[test]
    fn invalid_labels_are_rejected_with_the_offending_label() {
        let cases = [
            (
                "a..b.local",
                KeyError::EmptyLabel {
                    name: "a..b.local".into(),
                },
            ),
            (
                "-bad.local",
                KeyError::InvalidLabel {
                    name: "-bad.local".into(),
                    label: "-bad".into(),
                },
            ),
            (
                "host:web:80.local",
                KeyError::InvalidLabel {
                    name: "host:web:80.local".into(),
                    label: "host:web:80".into(),
                },
            ),
            (
                "sp ace.local",
                KeyError::InvalidLabel {
                    name: "sp ace.local".into(),
                    label: "sp ace".into(),
                },
            ),
            (
                "a/b.local",
                KeyError::InvalidLabel {
                    name: "a/b.local".into(),
                    label: "a/b".into(),
                },
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(DomainName::parse(name).unwrap_err(), expected, "{name:?}");
        }
        let long = "a".repeat(64);
        assert!(matches!(
            DomainName::parse(&format!("{long}.local")),
            Err(KeyError::LabelTooLong { .. })
        ));
        let too_long_name = ["abcdefghi"; 26].join(".");
        assert!(matches!(
            DomainName::parse(&too_long_name),
            Err(KeyError::NameTooLong { .. })
        ));
        let message = DomainName::parse("host:web:80.local")
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"host:web:80\""), "{message}");
    }

    #[test]
    fn keys_outside_the_prefix_or_with_bad_segments_are_rejected() {
        let schema = KeySchema::default();
        assert!(matches!(
            schema.name("/skydns2/local/x"),
            Err(KeyError::OutsidePrefix { .. })
        ));
        assert!(matches!(
            schema.name("/other/local/x"),
            Err(KeyError::OutsidePrefix { .. })
        ));
        assert_eq!(
            schema.name("/skydns/local//x"),
            Err(KeyError::EmptyLabel {
                name: "/skydns/local//x".into()
            })
        );
        assert!(matches!(
            schema.name("/skydns/local/a:b"),
            Err(KeyError::InvalidLabel { .. })
        ));
    }

    #[test]
    fn prefixes_are_normalised() {
        for p in ["skydns", "/skydns", "/skydns/", "skydns/"] {
            assert_eq!(KeySchema::new(p).unwrap().prefix(), "/skydns");
        }
        assert_eq!(KeySchema::new("/a/b").unwrap().prefix(), "/a/b");
        assert_eq!(
            KeySchema::new("/a/b").unwrap().key_for("x.y.").unwrap(),
            "/a/b/y/x"
        );
        for p in ["", "/", "//", "/a//b", "/.."] {
            assert!(KeySchema::new(p).is_err(), "{p:?}");
        }
        let schema = KeySchema::new("custom").unwrap();
        assert_eq!(schema.watch_prefix(), "/custom/");
        assert_eq!(schema.config_key(), "/custom/config");
    }

    #[test]
    fn service_keys_use_dns_safe_ids() {
        let schema = KeySchema::default();
        let domain = DomainName::parse("staging.example.local").unwrap();
        assert_eq!(
            schema
                .service_key(&domain, "elasticsearch-9200", "elasticsearch1")
                .unwrap(),
            "/skydns/local/example/staging/elasticsearch-9200/elasticsearch1"
        );
        let key = schema
            .service_key(&domain, "web-80", "host1:web:80")
            .unwrap();
        assert!(
            key.starts_with("/skydns/local/example/staging/web-80/host1-web-80-"),
            "{key}"
        );
        assert!(schema.name(&key).is_ok());
        assert!(schema.service_key(&domain, "bad name", "x").is_err());
    }

    #[test]
    fn dns_safe_label_cases() {
        assert_eq!(dns_safe_label("es1"), "es1");
        assert_eq!(dns_safe_label("ES1"), "es1");
        assert_eq!(dns_safe_label("elasticsearch1"), "elasticsearch1");
        let mapped = dns_safe_label("host:es-1:9200");
        assert!(mapped.starts_with("host-es-1-9200-"), "{mapped}");
        assert_eq!(mapped, dns_safe_label("host:es-1:9200"), "deterministic");
        assert_ne!(dns_safe_label("a:b"), dns_safe_label("a.b"));
        assert_ne!(
            dns_safe_label("host:web:80"),
            dns_safe_label("host:web:80:udp")
        );
        assert!(dns_safe_label("::").starts_with("id-"));
        assert!(dns_safe_label("*").starts_with("id-"));
        assert!(dns_safe_label("-x-").starts_with("x-"));
        assert_eq!(dns_safe_label(&"x".repeat(200)).len(), MAX_LABEL_LEN);
    }

    fn label_strategy() -> impl Strategy<Value = String> {
        "[a-z0-9_]([a-z0-9_-]{0,20}[a-z0-9_])?"
    }

    proptest! {
        #[test]
        fn name_key_name_round_trip(labels in prop::collection::vec(label_strategy(), 0..8)) {
            let schema = KeySchema::default();
            let name = DomainName::from_labels(&labels).unwrap();
            let key = schema.key(&name);
            prop_assert_eq!(schema.name(&key).unwrap(), name.clone());
            prop_assert_eq!(DomainName::parse(&name.to_fqdn()).unwrap(), name.clone());
            prop_assert_eq!(schema.key_for(&name.to_fqdn()).unwrap(), key);
        }

        #[test]
        fn key_name_key_round_trip(labels in prop::collection::vec(label_strategy(), 1..8)) {
            let schema = KeySchema::new("/skydns").unwrap();
            let key = format!("/skydns/{}", labels.join("/"));
            let name = schema.name(&key).unwrap();
            prop_assert_eq!(schema.key(&name), key);
        }

        #[test]
        fn any_string_parses_or_errors_without_panicking(text in ".{0,80}") {
            let _ = DomainName::parse(&text);
            let _ = KeySchema::default().name(&text);
        }

        #[test]
        fn dns_safe_labels_are_always_valid(id in ".{0,120}") {
            let label = dns_safe_label(&id);
            prop_assert!(check_label(&id, &label).is_ok(), "{:?} -> {:?}", id, label);
            prop_assert!(label != "*");
        }


    }
}
