//! `SERVICE_*` metadata from a container's env vars and labels: generic and port-specific keys,
//! label precedence, and the tag list syntax. Pure functions, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

const PREFIX: &str = "SERVICE_";

/// The `SERVICE_*` fields that apply to one exposed port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    fields: BTreeMap<String, String>,
    from_port: BTreeSet<String>,
}

/// `(key, value)` pairs in precedence order: env vars as written, then labels sorted by key
/// (a later pair beats an earlier one, so labels beat env vars).
fn service_pairs<'a>(
    env: &'a [String],
    labels: &'a HashMap<String, String>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    let mut sorted: Vec<(&String, &String)> = labels.iter().collect();
    sorted.sort();
    env.iter()
        .filter_map(|kv| kv.split_once('='))
        .chain(sorted.into_iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .filter(|(k, _)| k.starts_with(PREFIX))
}

/// Splits a lower-cased field into `(port, field)` when it is port-specific (`80_name`).
fn port_field(key: &str) -> Option<(&str, &str)> {
    let (port, field) = key.split_once('_')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some((port, field))
}

impl Metadata {
    /// The metadata of exposed port `port`: `SERVICE_<port>_<field>` beats `SERVICE_<field>`,
    /// labels beat env vars. Empty values count as unset.
    pub fn for_port(env: &[String], labels: &HashMap<String, String>, port: u16) -> Self {
        let port = port.to_string();
        let mut meta = Self::default();
        for (key, value) in service_pairs(env, labels) {
            if value.is_empty() {
                continue;
            }
            let key = key[PREFIX.len()..].to_ascii_lowercase();
            if key.is_empty() {
                continue;
            }
            match port_field(&key) {
                Some((p, field)) => {
                    if p == port && !field.is_empty() {
                        meta.fields.insert(field.to_owned(), value.to_owned());
                        meta.from_port.insert(field.to_owned());
                    }
                }
                None => {
                    if !meta.from_port.contains(&key) {
                        meta.fields.insert(key, value.to_owned());
                    }
                }
            }
        }
        meta
    }

    /// A field's value, if set and non-empty.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// True when the field came from a `SERVICE_<port>_<field>` key.
    pub fn is_port_specific(&self, field: &str) -> bool {
        self.from_port.contains(field)
    }

    /// Every field except `name`, `id`, `tags`, `ignore` and `network`.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        self.fields
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "name" | "id" | "tags" | "ignore" | "network"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Warnings for port-specific keys that name a port the container does not expose, or no field.
pub fn odd_keys(
    env: &[String],
    labels: &HashMap<String, String>,
    exposed: &BTreeSet<u16>,
) -> Vec<String> {
    let mut warnings = BTreeSet::new();
    for (key, _) in service_pairs(env, labels) {
        let lower = key[PREFIX.len()..].to_ascii_lowercase();
        let Some((port, field)) = port_field(&lower) else {
            continue;
        };
        if field.is_empty() {
            warnings.insert(format!("{key} names no field; ignored"));
            continue;
        }
        let exposed_here = port.parse::<u16>().is_ok_and(|p| exposed.contains(&p));
        if !exposed_here {
            warnings.insert(format!(
                "{key} refers to port {port}, which the container does not expose; ignored"
            ));
        }
    }
    warnings.into_iter().collect()
}

/// Splits a tag list on commas; `\,` is a literal comma. Tags are trimmed, empty ones dropped,
/// and the written order is kept.
pub fn split_tags(list: &str) -> Vec<String> {
    let mut tags = Vec::new();
    let mut current = String::new();
    let mut chars = list.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                current.push(',');
                chars.next();
            }
            ',' => tags.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    tags.push(current);
    tags.into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[&str]) -> Vec<String> {
        pairs.iter().map(|s| (*s).to_owned()).collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// (env, labels, port, field, expected value, port-specific)
    type PrecedenceCase<'a> = (
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        u16,
        &'a str,
        Option<&'a str>,
        bool,
    );

    #[test]
    fn precedence_of_keys() {
        let cases: &[PrecedenceCase] = &[
            (&["SERVICE_NAME=a"], &[], 80, "name", Some("a"), false),
            (
                &["SERVICE_NAME=a", "SERVICE_80_NAME=b"],
                &[],
                80,
                "name",
                Some("b"),
                true,
            ),
            (
                &["SERVICE_80_NAME=b", "SERVICE_NAME=a"],
                &[],
                80,
                "name",
                Some("b"),
                true,
            ),
            (
                &["SERVICE_81_NAME=b", "SERVICE_NAME=a"],
                &[],
                80,
                "name",
                Some("a"),
                false,
            ),
            (
                &["SERVICE_NAME=env"],
                &[("SERVICE_NAME", "label")],
                80,
                "name",
                Some("label"),
                false,
            ),
            (
                &["SERVICE_80_NAME=env"],
                &[("SERVICE_80_NAME", "label")],
                80,
                "name",
                Some("label"),
                true,
            ),
            (
                &["SERVICE_80_NAME=port"],
                &[("SERVICE_NAME", "label")],
                80,
                "name",
                Some("port"),
                true,
            ),
            (&["SERVICE_NAME="], &[], 80, "name", None, false),
            (&["SERVICE_NAME"], &[], 80, "name", None, false),
            (
                &["service_name=x", "XSERVICE_NAME=y"],
                &[],
                80,
                "name",
                None,
                false,
            ),
            (
                &["SERVICE_CHECK_HTTP=/health"],
                &[],
                80,
                "check_http",
                Some("/health"),
                false,
            ),
            (
                &["SERVICE_80_CHECK_HTTP=/h"],
                &[],
                80,
                "check_http",
                Some("/h"),
                true,
            ),
            (&["SERVICE_ID=a=b"], &[], 80, "id", Some("a=b"), false),
        ];
        for (env_vars, label_pairs, port, field, value, specific) in cases {
            let meta = Metadata::for_port(&env(env_vars), &labels(label_pairs), *port);
            assert_eq!(meta.get(field), *value, "{env_vars:?} {label_pairs:?}");
            assert_eq!(
                meta.is_port_specific(field),
                *specific,
                "{env_vars:?} {label_pairs:?}"
            );
        }
    }

    #[test]
    fn attributes_exclude_the_known_fields() {
        let meta = Metadata::for_port(
            &env(&[
                "SERVICE_NAME=a",
                "SERVICE_ID=i",
                "SERVICE_TAGS=t",
                "SERVICE_REGION=eu",
            ]),
            &labels(&[("SERVICE_IGNORE", "")]),
            80,
        );
        assert_eq!(
            meta.attributes(),
            BTreeMap::from([("region".to_owned(), "eu".to_owned())])
        );
    }

    #[test]
    fn odd_keys_are_reported() {
        let warnings = odd_keys(
            &env(&[
                "SERVICE_81_NAME=x",
                "SERVICE_80_NAME=y",
                "SERVICE_80_=z",
                "SERVICE_99999_ID=q",
            ]),
            &labels(&[]),
            &BTreeSet::from([80]),
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("SERVICE_81_NAME refers to port 81"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("SERVICE_80_ names no field"))
        );
        assert!(warnings.iter().any(|w| w.contains("port 99999")));
    }

    #[test]
    fn tag_lists() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("a", &["a"]),
            ("b,a,c", &["b", "a", "c"]),
            (" a , ,b ", &["a", "b"]),
            (r"a\,b,c", &["a,b", "c"]),
            (r"a\b", &[r"a\b"]),
            (r"x\,", &["x,"]),
        ];
        for (list, expected) in cases {
            assert_eq!(split_tags(list), *expected, "{list:?}");
        }
    }
}
