//! Which containers are attached at all (`LOGSPOUT=ignore`, `EXCLUDE_LABEL(S)`, TTY, log
//! driver), and which attached containers and lines a route takes (`filter.*`).

use glob::{MatchOptions, Pattern};

use crate::message::{ContainerInfo, Source};
use crate::route::Route;

/// Log drivers Docker can read logs back from, as the original accepts them.
pub const SUPPORTED_LOG_DRIVERS: [&str; 3] = ["json-file", "journald", "db"];

/// The container-exclusion settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusions {
    /// `ALLOW_TTY=true`.
    pub allow_tty: bool,
    /// `EXCLUDE_LABELS` if non-empty, else `EXCLUDE_LABEL`.
    pub exclude_labels: Option<String>,
}

impl Exclusions {
    /// Why `container` is not attached, or `None` if it is.
    pub fn reason(&self, container: &ContainerInfo) -> Option<String> {
        if container.tty && !self.allow_tty {
            return Some("it has a TTY (set ALLOW_TTY=true to attach)".into());
        }
        if container
            .env_var("LOGSPOUT")
            .is_some_and(|v| v.eq_ignore_ascii_case("ignore"))
        {
            return Some("LOGSPOUT=ignore".into());
        }
        if let Some(label) = self.excluded_label(container) {
            return Some(format!("excluded label {label}"));
        }
        if !SUPPORTED_LOG_DRIVERS.contains(&container.log_driver.as_str()) {
            return Some(format!(
                "log driver {:?} cannot be read back",
                container.log_driver
            ));
        }
        None
    }

    /// The original's `EXCLUDE_LABEL(S)` walk: entries are `;`-separated; an entry with exactly
    /// one `:` sets key and expected value, any other entry re-tests the previous pair (which
    /// starts as the whole value and `true`).
    fn excluded_label(&self, container: &ContainerInfo) -> Option<String> {
        let value = self.exclude_labels.as_deref().filter(|v| !v.is_empty())?;
        let mut key = value;
        let mut expected = "true";
        for entry in value.split(';') {
            let parts: Vec<&str> = entry.split(':').collect();
            if let [k, v] = parts.as_slice() {
                key = k;
                expected = v;
            }
            if container
                .labels
                .get(key)
                .is_some_and(|actual| actual.eq_ignore_ascii_case(expected))
            {
                return Some(format!("{key}={expected}"));
            }
        }
        None
    }
}

/// Go's `path.Match`: `*` does not cross `/`; a malformed pattern matches nothing.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let options = MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    Pattern::new(pattern).is_ok_and(|p| p.matches_with(text, options))
}

/// Whether `route` takes lines of `container` (evaluated when the container is attached).
pub fn route_matches_container(route: &Route, container: &ContainerInfo) -> bool {
    if !route.filter_id.is_empty() && !container.short_id().starts_with(&route.filter_id) {
        return false;
    }
    if !route.filter_name.is_empty() && !glob_match(&route.filter_name, container.bare_name()) {
        return false;
    }
    route.filter_labels.iter().all(|entry| {
        let Some((key, pattern)) = entry.split_once(':') else {
            return true;
        };
        if pattern.is_empty() {
            return true;
        }
        let value = container.labels.get(key).map_or("", String::as_str);
        glob_match(pattern, value)
    })
}

/// Whether `route` takes a line from `source`.
pub fn route_matches_source(route: &Route, source: Source) -> bool {
    route.filter_sources.is_empty() || route.filter_sources.iter().any(|s| s == source.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, labels: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo {
            id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            name: format!("/{name}"),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            log_driver: "json-file".into(),
            ..ContainerInfo::default()
        }
    }

    #[test]
    fn exclude_label_cases_of_the_spec() {
        let single = Exclusions {
            exclude_labels: Some("logspout.exclude".into()),
            ..Exclusions::default()
        };
        let multi = Exclusions {
            exclude_labels: Some("k:v;ns:default".into()),
            ..Exclusions::default()
        };
        let cases = [
            (&single, &[("logspout.exclude", "true")][..], true),
            (&single, &[("logspout.exclude", "TRUE")][..], true),
            (&single, &[("logspout.exclude", "false")][..], false),
            (&single, &[][..], false),
            (&multi, &[("ns", "default")][..], true),
            (&multi, &[("ns", "kube")][..], false),
            (&multi, &[("k", "V")][..], true),
            (&multi, &[("other", "true")][..], false),
        ];
        for (rules, labels, skipped) in cases {
            assert_eq!(
                rules.reason(&container("web", labels)).is_some(),
                skipped,
                "{rules:?} {labels:?}"
            );
        }
        let no_colons = Exclusions {
            exclude_labels: Some("a;b".into()),
            ..Exclusions::default()
        };
        assert!(
            no_colons
                .reason(&container("web", &[("a", "true"), ("b", "true")]))
                .is_none()
        );
        assert!(
            no_colons
                .reason(&container("web", &[("a;b", "true")]))
                .is_some()
        );
    }

    #[test]
    fn tty_ignore_env_and_log_drivers() {
        let rules = Exclusions::default();
        let mut c = container("web", &[]);
        assert_eq!(rules.reason(&c), None);
        c.env = vec!["LOGSPOUT=IGNORE".into()];
        assert!(rules.reason(&c).is_some());
        c.env = vec!["LOGSPOUT=yes".into()];
        assert_eq!(rules.reason(&c), None);
        c.tty = true;
        assert!(rules.reason(&c).is_some());
        assert_eq!(
            Exclusions {
                allow_tty: true,
                ..rules.clone()
            }
            .reason(&c),
            None
        );
        c.tty = false;
        for (driver, skipped) in [
            ("none", true),
            ("local", true),
            ("syslog", true),
            ("journald", false),
        ] {
            c.log_driver = driver.into();
            assert_eq!(rules.reason(&c).is_some(), skipped, "{driver}");
        }
    }

    #[test]
    fn route_filters_of_the_spec() {
        let route = |uri: &str| Route::from_uri(uri).unwrap();
        let db = container("app_db", &[("a", "xx"), ("b", "yy")]);
        let web = container("app_web", &[("a", "xx")]);
        let cases = [
            ("raw://h:1?filter.name=*_db", true, false),
            ("raw://h:1?filter.name=app_?eb", false, true),
            ("raw://h:1?filter.name=[", false, false),
            ("raw://h:1?filter.labels=a:x*%2Cb:*y", true, false),
            ("raw://h:1?filter.labels=a:*", true, true),
            ("raw://h:1?filter.labels=c:*", true, true),
            ("raw://h:1?filter.labels=b:%2Cc", true, true),
            ("raw://h:1?filter.id=012345", true, true),
            (
                "raw://h:1?filter.id=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                false,
                false,
            ),
            ("raw://h:1", true, true),
        ];
        for (uri, db_matches, web_matches) in cases {
            let r = route(uri);
            assert_eq!(route_matches_container(&r, &db), db_matches, "{uri} db");
            assert_eq!(route_matches_container(&r, &web), web_matches, "{uri} web");
        }
        assert!(!glob_match("a*", "a/b"));
        let stderr_only = route("raw://h:1?filter.sources=stderr");
        assert!(route_matches_source(&stderr_only, Source::Stderr));
        assert!(!route_matches_source(&stderr_only, Source::Stdout));
    }
}
