//! Routes: the route URI syntax (`syslog+tcp://host:514?filter.name=web*`), the adapter and
//! transport names, and the JSON shape of the `/routes` API and the persisted route files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Why a route URI or route object is not usable.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("bad route URI {uri:?}: {reason}")]
    BadUri { uri: String, reason: String },
    #[error("bad adapter: {0}")]
    BadAdapter(String),
    #[error("bad transport: {0}")]
    BadTransport(String),
    #[error("multiline: adapter must have a sub-adapter, eg: multiline+raw+tcp")]
    MultilineWithoutSubAdapter,
    #[error("address {0}: missing port in address")]
    MissingPort(String),
    #[error("address {0}: invalid port (must be 1 to 65535)")]
    BadPort(String),
    #[error("bad route id {0:?}: must be 1 to {MAX_ROUTE_ID_LEN} letters, digits, '-' or '_'")]
    BadId(String),
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A route as the original's `router.Route` serialises it (field order kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filter_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_labels: Vec<String>,
    #[serde(default)]
    pub adapter: String,
    #[serde(default)]
    pub address: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// What a route writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    Syslog,
    Raw,
    /// `json`: one JSON object per line with container metadata.
    Json,
    /// `gelf`: GELF 1.1 as Docker's `gelf` log driver sends it.
    Gelf,
    /// `logstash`: the event the `logspout-logstash` module writes.
    Logstash,
}

/// How a route reaches its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    /// `relp://`: RELP over TCP, every message acknowledged (see [`crate::relp`]).
    Relp,
    /// `relp+tls://`: RELP over TLS.
    RelpTls,
}

impl Transport {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "udp" => Some(Self::Udp),
            "tcp" => Some(Self::Tcp),
            "tls" => Some(Self::Tls),
            _ => None,
        }
    }

    pub fn is_stream(self) -> bool {
        self != Self::Udp
    }

    /// True for the RELP transports (the sender waits for each message's acknowledgement).
    pub fn is_relp(self) -> bool {
        matches!(self, Self::Relp | Self::RelpTls)
    }

    /// True when the connection is TLS (`…+tls`, `relp+tls`).
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Tls | Self::RelpTls)
    }
}

/// The resolved adapter of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterSpec {
    pub kind: AdapterKind,
    pub transport: Transport,
    /// `multiline+…`: lines are merged before the sub-adapter renders them.
    pub multiline: bool,
}

impl AdapterSpec {
    /// Resolves an adapter string (`syslog+tcp`, `tcp`, …). Returns the spec and the adapter
    /// string the route shows afterwards (`tcp` becomes `raw+tcp`, as in the original).
    ///
    /// Unlike the original, a suffix after `udp`/`tcp`/`tls` is rejected: `tcp+tls` used to
    /// send plaintext TCP silently.
    pub fn resolve(adapter: &str) -> Result<(Self, String), RouteError> {
        if adapter == "multiline" {
            return Err(RouteError::MultilineWithoutSubAdapter);
        }
        if let Some(sub) = adapter.strip_prefix("multiline+") {
            let (spec, _) = Self::resolve(sub)?;
            if spec.multiline {
                return Err(RouteError::BadAdapter(adapter.to_owned()));
            }
            let spec = Self {
                multiline: true,
                ..spec
            };
            return Ok((spec, adapter.to_owned()));
        }
        let parts: Vec<&str> = adapter.split('+').collect();
        let bad_transport = || RouteError::BadTransport(adapter.to_owned());
        match parts.as_slice() {
            [
                kind @ ("syslog" | "raw" | "json" | "gelf" | "logstash"),
                rest @ ..,
            ] => {
                let transport = match rest {
                    [] => Transport::Udp,
                    [name] => Transport::parse(name).ok_or_else(bad_transport)?,
                    _ => return Err(bad_transport()),
                };
                let kind = match *kind {
                    "syslog" => AdapterKind::Syslog,
                    "json" => AdapterKind::Json,
                    "gelf" => AdapterKind::Gelf,
                    "logstash" => AdapterKind::Logstash,
                    _ => AdapterKind::Raw,
                };
                let spec = Self {
                    kind,
                    transport,
                    multiline: false,
                };
                Ok((spec, adapter.to_owned()))
            }
            // RELP carries syslog lines: the syslog adapter's rendering, acknowledged delivery.
            ["relp", rest @ ..] => {
                let transport = match rest {
                    [] => Transport::Relp,
                    ["tls"] => Transport::RelpTls,
                    _ => return Err(bad_transport()),
                };
                let spec = Self {
                    kind: AdapterKind::Syslog,
                    transport,
                    multiline: false,
                };
                Ok((spec, adapter.to_owned()))
            }
            [name @ ("udp" | "tcp" | "tls"), rest @ ..] => {
                if !rest.is_empty() {
                    return Err(bad_transport());
                }
                let transport = Transport::parse(name).ok_or_else(bad_transport)?;
                let spec = Self {
                    kind: AdapterKind::Raw,
                    transport,
                    multiline: false,
                };
                Ok((spec, format!("raw+{name}")))
            }
            _ => Err(RouteError::BadAdapter(adapter.to_owned())),
        }
    }
}

impl Route {
    /// Parses one route URI (after `$VAR` expansion).
    pub fn from_uri(uri: &str) -> Result<Self, RouteError> {
        let bad = |reason: &str| RouteError::BadUri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(uri).map_err(|e| bad(&e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host:port"))?;
        let address = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => return Err(RouteError::MissingPort(host.to_owned())),
        };
        let mut route = Self {
            adapter: parsed.scheme().to_owned(),
            address,
            ..Self::default()
        };
        let mut seen = std::collections::HashSet::new();
        for (key, value) in parsed.query_pairs() {
            // Go's url.Values.Get: the first value of each key wins.
            if !seen.insert(key.to_string()) {
                continue;
            }
            match key.as_ref() {
                "filter.id" => route.filter_id = value.into_owned(),
                "filter.name" => route.filter_name = value.into_owned(),
                "filter.labels" => route.filter_labels = split_list(&value),
                "filter.sources" => route.filter_sources = split_list(&value),
                _ => {
                    route.options.insert(key.into_owned(), value.into_owned());
                }
            }
        }
        Ok(route)
    }

    /// Checks the adapter, canonicalises its name and gives the route an ID if it has none.
    pub fn validate(mut self) -> Result<(Self, AdapterSpec), RouteError> {
        let (spec, adapter) = AdapterSpec::resolve(&self.adapter)?;
        self.adapter = adapter;
        let Some((_, port)) = self.address.rsplit_once(':') else {
            return Err(RouteError::MissingPort(self.address));
        };
        // The API and route files give any string: a port the sender could never dial is an
        // error now, not a route that retries forever.
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(RouteError::BadPort(self.address));
        }
        if self.id.is_empty() {
            self.id = new_route_id();
        } else if !is_valid_route_id(&self.id) {
            return Err(RouteError::BadId(self.id));
        }
        Ok((self, spec))
    }
}

/// Longest route ID accepted from the API or a route file.
pub const MAX_ROUTE_ID_LEN: usize = 64;

/// True for an ID that is safe as the file name `ROUTESPATH/<id>.json`: ASCII letters, digits,
/// `-` and `_` only (no `/`, no `.`, so no `..`, no hidden file), 1 to [`MAX_ROUTE_ID_LEN`] long.
pub fn is_valid_route_id(id: &str) -> bool {
    (1..=MAX_ROUTE_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::to_owned).collect()
}

/// 12 random hex digits, like the original's route IDs.
pub fn new_route_id() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// Splits a `ROUTE_URIS` value (or the first argument) into route URIs, expanding `$VAR` and
/// `${VAR}` with `lookup` first (unset → empty), like Go's `os.ExpandEnv`.
pub fn split_route_uris(value: &str, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    value
        .split(',')
        .filter(|piece| !piece.trim().is_empty())
        .map(|piece| expand_env(piece, &lookup))
        .collect()
}

/// Go's `os.Expand` for `$NAME` and `${NAME}`.
pub fn expand_env(text: &str, lookup: &impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) if end > 0 => {
                    out.push_str(&lookup(&braced[..end]).unwrap_or_default());
                    rest = &braced[end + 1..];
                }
                // Bad syntax: Go eats the characters.
                Some(end) => rest = &braced[end + 1..],
                None => rest = "",
            }
            continue;
        }
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len == 0 {
            out.push('$');
            rest = after;
        } else {
            out.push_str(&lookup(&after[..name_len]).unwrap_or_default());
            rest = &after[name_len..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_port_that_can_be_dialled() {
        for address in ["h:99999", "h:0", "h:", "h:-1", "h:x", "[::1]:65536"] {
            let route = Route {
                adapter: "syslog".into(),
                address: address.into(),
                ..Route::default()
            };
            let err = route.validate().unwrap_err().to_string();
            assert!(err.contains("invalid port"), "{address}: {err}");
        }
        for address in ["h:1", "[::1]:514", "127.0.0.1:65535"] {
            let route = Route {
                adapter: "syslog".into(),
                address: address.into(),
                ..Route::default()
            };
            assert!(route.validate().is_ok(), "{address}");
        }
    }

    #[test]
    fn route_ids_cannot_name_paths() {
        let route = |id: &str| Route {
            id: id.into(),
            adapter: "raw".into(),
            address: "127.0.0.1:9".into(),
            ..Route::default()
        };
        for good in ["abc123def456", "web-logs_2", &"a".repeat(64)] {
            assert_eq!(route(good).validate().unwrap().0.id, good);
        }
        for bad in [
            "../x",
            "..",
            ".",
            "a/b",
            "/etc/passwd",
            "a.json",
            ".hidden",
            "a b",
            "a\\b",
            "\0",
            "é",
            &"a".repeat(65),
        ] {
            let err = route(bad).validate().err().unwrap().to_string();
            assert!(err.starts_with("bad route id"), "{bad:?}: {err}");
        }
        assert_eq!(route("").validate().unwrap().0.id.len(), 12);
    }

    #[test]
    fn uris_parse_into_routes() {
        let r = Route::from_uri(
            "syslog+tcp://logs.example.local:514/ignored?filter.name=*_db&filter.labels=a:x*%2Cb:*y\
             &filter.sources=stderr&filter.id=abc&append_tag=.app&filter.name=second",
        )
        .unwrap();
        assert_eq!(r.adapter, "syslog+tcp");
        assert_eq!(r.address, "logs.example.local:514");
        assert_eq!(r.filter_name, "*_db");
        assert_eq!(r.filter_id, "abc");
        assert_eq!(r.filter_labels, ["a:x*", "b:*y"]);
        assert_eq!(r.filter_sources, ["stderr"]);
        assert_eq!(
            r.options.get("append_tag").map(String::as_str),
            Some(".app")
        );
        let v6 = Route::from_uri("syslog://[::1]:514").unwrap();
        assert_eq!(v6.address, "[::1]:514");
    }

    #[test]
    fn adapters_resolve_like_the_original() {
        let ok = [
            ("syslog", AdapterKind::Syslog, Transport::Udp, "syslog"),
            (
                "syslog+udp",
                AdapterKind::Syslog,
                Transport::Udp,
                "syslog+udp",
            ),
            (
                "syslog+tcp",
                AdapterKind::Syslog,
                Transport::Tcp,
                "syslog+tcp",
            ),
            (
                "syslog+tls",
                AdapterKind::Syslog,
                Transport::Tls,
                "syslog+tls",
            ),
            ("raw", AdapterKind::Raw, Transport::Udp, "raw"),
            ("json", AdapterKind::Json, Transport::Udp, "json"),
            ("json+udp", AdapterKind::Json, Transport::Udp, "json+udp"),
            ("json+tcp", AdapterKind::Json, Transport::Tcp, "json+tcp"),
            ("json+tls", AdapterKind::Json, Transport::Tls, "json+tls"),
            ("gelf", AdapterKind::Gelf, Transport::Udp, "gelf"),
            ("gelf+tcp", AdapterKind::Gelf, Transport::Tcp, "gelf+tcp"),
            ("gelf+tls", AdapterKind::Gelf, Transport::Tls, "gelf+tls"),
            (
                "logstash",
                AdapterKind::Logstash,
                Transport::Udp,
                "logstash",
            ),
            (
                "logstash+tcp",
                AdapterKind::Logstash,
                Transport::Tcp,
                "logstash+tcp",
            ),
            (
                "multiline+json+tcp",
                AdapterKind::Json,
                Transport::Tcp,
                "multiline+json+tcp",
            ),
            ("raw+tcp", AdapterKind::Raw, Transport::Tcp, "raw+tcp"),
            ("udp", AdapterKind::Raw, Transport::Udp, "raw+udp"),
            ("tcp", AdapterKind::Raw, Transport::Tcp, "raw+tcp"),
            ("tls", AdapterKind::Raw, Transport::Tls, "raw+tls"),
            (
                "multiline+raw+tcp",
                AdapterKind::Raw,
                Transport::Tcp,
                "multiline+raw+tcp",
            ),
            (
                "multiline+syslog",
                AdapterKind::Syslog,
                Transport::Udp,
                "multiline+syslog",
            ),
            (
                "multiline+tcp",
                AdapterKind::Raw,
                Transport::Tcp,
                "multiline+tcp",
            ),
            ("relp", AdapterKind::Syslog, Transport::Relp, "relp"),
            (
                "relp+tls",
                AdapterKind::Syslog,
                Transport::RelpTls,
                "relp+tls",
            ),
            (
                "multiline+relp",
                AdapterKind::Syslog,
                Transport::Relp,
                "multiline+relp",
            ),
        ];
        for (adapter, kind, transport, shown) in ok {
            let (spec, name) = AdapterSpec::resolve(adapter).unwrap();
            assert_eq!(
                (spec.kind, spec.transport, name.as_str()),
                (kind, transport, shown)
            );
            assert_eq!(spec.multiline, adapter.starts_with("multiline+"));
        }
        let bad = [
            ("foo", "bad adapter: foo"),
            ("", "bad adapter: "),
            ("syslog+foo", "bad transport: syslog+foo"),
            ("json+foo", "bad transport: json+foo"),
            ("gelf+tcp+x", "bad transport: gelf+tcp+x"),
            ("tcp+json", "bad transport: tcp+json"),
            ("syslog+tcp+x", "bad transport: syslog+tcp+x"),
            ("tcp+tls", "bad transport: tcp+tls"),
            ("udp+tcp", "bad transport: udp+tcp"),
            ("relp+tcp", "bad transport: relp+tcp"),
            ("relp+tls+x", "bad transport: relp+tls+x"),
            ("syslog+relp", "bad transport: syslog+relp"),
            ("multiline+foo", "bad adapter: foo"),
            (
                "multiline+multiline+raw",
                "bad adapter: multiline+multiline+raw",
            ),
            (
                "multiline",
                "multiline: adapter must have a sub-adapter, eg: multiline+raw+tcp",
            ),
        ];
        for (adapter, message) in bad {
            assert_eq!(
                AdapterSpec::resolve(adapter).unwrap_err().to_string(),
                message
            );
        }
    }

    #[test]
    fn malformed_uris_are_errors() {
        for (uri, start) in [
            ("syslog://host", "address host: missing port"),
            ("not a uri", "bad route URI"),
            ("syslog:///nohost", "bad route URI"),
            ("syslog://h:99999", "bad route URI"),
        ] {
            let err = Route::from_uri(uri)
                .and_then(Route::validate)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(start), "{uri}: {err}");
        }
    }

    #[test]
    fn route_json_has_the_original_shape() {
        let (route, _) = Route::from_uri("tcp://127.0.0.1:5000?filter.name=web")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(route.id.len(), 12);
        let json = serde_json::to_string_pretty(&Route {
            id: "0123456789ab".into(),
            ..route
        })
        .unwrap();
        assert_eq!(
            json,
            "{\n  \"id\": \"0123456789ab\",\n  \"filter_name\": \"web\",\n  \"adapter\": \"raw+tcp\",\n  \"address\": \"127.0.0.1:5000\"\n}"
        );
    }

    #[test]
    fn route_lists_expand_env_like_go() {
        let env = |name: &str| match name {
            "DEST" => Some("127.0.0.1:514".to_owned()),
            "PORT" => Some("6000".to_owned()),
            _ => None,
        };
        assert_eq!(
            split_route_uris("raw://$DEST,syslog://h:${PORT}?x=$UNSET,", env),
            ["raw://127.0.0.1:514", "syslog://h:6000?x="]
        );
        assert_eq!(expand_env("a$ b$", &env), "a$ b$");
    }
}
