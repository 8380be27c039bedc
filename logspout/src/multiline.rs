//! The `multiline+…` routes: consecutive lines of one container stream that belong together
//! (a stack trace) are merged into one message before the sub-adapter renders them.
//!
//! Unlike the original, a group is flushed when no line arrived for `MULTILINE_FLUSH_AFTER`
//! (the original's inverted comparison flushed young groups), stdout and stderr are grouped
//! separately, and merging never changes the message other routes see.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use regex::bytes::Regex;

use crate::message::{Message, Source};

/// Why a `MULTILINE_*` setting is rejected (messages as in the original).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultilineError {
    #[error("multiline: invalid value for MULTILINE_ENABLE_DEFAULT (must be true|false): {0}")]
    EnableDefault(String),
    #[error("multiline: invalid value for MULTILINE_PATTERN (must be regexp): {0}")]
    Pattern(String),
    #[error(
        "multiline: invalid value for MULTILINE_MATCH (must be one of first|last|nonfirst|nonlast): {0}"
    )]
    Match(String),
    #[error("multiline: invalid value for MULTILINE_FLUSH_AFTER (must be number): {0}")]
    FlushAfter(String),
}

/// The `MULTILINE_*` settings.
#[derive(Debug, Clone)]
pub struct MultilineSettings {
    pub enable_default: bool,
    pub pattern: Regex,
    /// `first`/`nonfirst`: a matching line starts a group; `last`/`nonlast`: it ends one.
    pub match_first_line: bool,
    /// `nonfirst`/`nonlast`: the pattern's result is inverted.
    pub negate: bool,
    pub flush_after: Duration,
    pub separator: String,
}

impl Default for MultilineSettings {
    fn default() -> Self {
        Self {
            enable_default: true,
            pattern: Regex::new(r"^\s").unwrap_or_else(|_| unreachable!("a valid constant")),
            match_first_line: true,
            negate: true,
            flush_after: Duration::from_millis(500),
            separator: "\n".into(),
        }
    }
}

impl MultilineSettings {
    /// Reads the settings (`None` = unset or empty).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, MultilineError> {
        let mut settings = Self::default();
        if let Some(v) = var("MULTILINE_ENABLE_DEFAULT") {
            settings.enable_default = parse_go_bool(&v).ok_or(MultilineError::EnableDefault(v))?;
        }
        if let Some(v) = var("MULTILINE_PATTERN") {
            settings.pattern = Regex::new(&v).map_err(|_| MultilineError::Pattern(v))?;
        }
        if let Some(v) = var("MULTILINE_MATCH") {
            (settings.match_first_line, settings.negate) = match v.to_ascii_lowercase().as_str() {
                "first" => (true, false),
                "last" => (false, false),
                "nonfirst" => (true, true),
                "nonlast" => (false, true),
                _ => return Err(MultilineError::Match(v)),
            };
        }
        if let Some(v) = var("MULTILINE_FLUSH_AFTER") {
            let ms: u64 = v
                .parse()
                .map_err(|_| MultilineError::FlushAfter(v.clone()))?;
            settings.flush_after = Duration::from_millis(ms.max(1));
        }
        if let Some(v) = var("MULTILINE_SEPARATOR") {
            settings.separator = v;
        }
        Ok(settings)
    }

    /// Whether lines of this container are merged (`LOGSPOUT_MULTILINE` in its env).
    fn enabled_for(&self, message: &Message) -> bool {
        match message.container.env_var("LOGSPOUT_MULTILINE") {
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            _ => self.enable_default,
        }
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[derive(Debug)]
struct Group {
    first: Message,
    data: BytesMut,
    last_line: Instant,
}

impl Group {
    fn into_message(self) -> Message {
        Message {
            data: self.data.freeze(),
            ..self.first
        }
    }
}

/// The pending groups of one route, by container and stream.
#[derive(Debug)]
pub struct Merger {
    settings: MultilineSettings,
    groups: Mutex<HashMap<(String, Source), Group>>,
}

impl Merger {
    pub fn new(settings: MultilineSettings) -> Self {
        Self {
            settings,
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// How often [`flush_idle`](Self::flush_idle) should run.
    pub fn tick(&self) -> Duration {
        self.settings.flush_after / 2
    }

    /// Feeds one line; `emit` receives the messages that are complete (while the merger is
    /// locked, so a container's messages reach the queue in order).
    pub fn feed(&self, message: &Message, mut emit: impl FnMut(&Message)) {
        if !self.settings.enabled_for(message) {
            return emit(message);
        }
        let s = &self.settings;
        let matched = s.pattern.is_match(&message.data) != s.negate;
        let key = (message.container.id.clone(), message.source);
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let append = |group: &mut Group| {
            group.data.extend_from_slice(s.separator.as_bytes());
            group.data.extend_from_slice(&message.data);
            group.last_line = Instant::now();
        };
        let start = || Group {
            first: message.clone(),
            data: BytesMut::from(&message.data[..]),
            last_line: Instant::now(),
        };
        if s.match_first_line {
            if matched {
                if let Some(old) = groups.insert(key, start()) {
                    emit(&old.into_message());
                }
            } else {
                match groups.get_mut(&key) {
                    Some(group) => append(group),
                    None => {
                        groups.insert(key, start());
                    }
                }
            }
        } else if matched {
            let merged = match groups.remove(&key) {
                Some(mut group) => {
                    append(&mut group);
                    group.into_message()
                }
                None => message.clone(),
            };
            emit(&merged);
        } else {
            match groups.get_mut(&key) {
                Some(group) => append(group),
                None => {
                    groups.insert(key, start());
                }
            }
        }
    }

    /// Emits the groups that received no line for `MULTILINE_FLUSH_AFTER` (all with `all`).
    pub fn flush_idle(&self, all: bool, mut emit: impl FnMut(&Message)) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let idle: Vec<(String, Source)> = groups
            .iter()
            .filter(|(_, g)| all || g.last_line.elapsed() >= self.settings.flush_after)
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            if let Some(group) = groups.remove(&key) {
                emit(&group.into_message());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ContainerInfo;
    use bytes::Bytes;
    use chrono::Utc;
    use std::sync::Arc;

    fn line(env: &[&str], data: &str) -> Message {
        Message {
            container: Arc::new(ContainerInfo {
                id: "c1".into(),
                env: env.iter().map(|e| (*e).to_owned()).collect(),
                ..ContainerInfo::default()
            }),
            source: Source::Stdout,
            data: Bytes::copy_from_slice(data.as_bytes()),
            time: Utc::now(),
        }
    }

    fn merge(settings: MultilineSettings, env: &[&str], lines: &[&str]) -> Vec<String> {
        let merger = Merger::new(settings);
        let mut out = Vec::new();
        for l in lines {
            merger.feed(&line(env, l), |m| {
                out.push(String::from_utf8_lossy(&m.data).into_owned())
            });
        }
        merger.flush_idle(true, |m| {
            out.push(String::from_utf8_lossy(&m.data).into_owned())
        });
        out
    }

    fn settings(vars: &[(&str, &str)]) -> MultilineSettings {
        MultilineSettings::from_vars(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
    }

    #[test]
    fn the_originals_unit_cases_group_the_same() {
        /// (settings, lines in, messages out)
        type Case<'a> = (&'a [(&'a str, &'a str)], [&'a str; 5], [&'a str; 2]);
        let cases: [Case; 4] = [
            (
                &[],
                ["some", "  multi", "  line", "other", "  multiline"],
                ["some\n  multi\n  line", "other\n  multiline"],
            ),
            (
                &[("MULTILINE_MATCH", "first"), ("MULTILINE_PATTERN", ":$")],
                ["some:", "multi", "line", "other:", "multiline"],
                ["some:\nmulti\nline", "other:\nmultiline"],
            ),
            (
                &[
                    ("MULTILINE_MATCH", "nonlast"),
                    ("MULTILINE_PATTERN", r"\$$"),
                ],
                ["some$", "multi$", "line", "other$", "multiline"],
                ["some$\nmulti$\nline", "other$\nmultiline"],
            ),
            (
                &[("MULTILINE_MATCH", "LAST"), ("MULTILINE_PATTERN", "!$")],
                ["some", "multi", "line!", "other", "multiline!"],
                ["some\nmulti\nline!", "other\nmultiline!"],
            ),
        ];
        for (vars, input, expected) in cases {
            assert_eq!(merge(settings(vars), &[], &input), expected, "{vars:?}");
        }
    }

    #[test]
    fn containers_opt_in_and_out() {
        let lines = ["Exception", "  at a", "next"];
        assert_eq!(
            merge(settings(&[]), &["LOGSPOUT_MULTILINE=false"], &lines),
            lines
        );
        let off = settings(&[("MULTILINE_ENABLE_DEFAULT", "0")]);
        assert_eq!(merge(off.clone(), &[], &lines), lines);
        assert_eq!(
            merge(off, &["LOGSPOUT_MULTILINE=TRUE"], &lines),
            ["Exception\n  at a", "next"]
        );
        let sep = settings(&[("MULTILINE_SEPARATOR", " | ")]);
        assert_eq!(merge(sep, &[], &lines), ["Exception |   at a", "next"]);
    }

    #[test]
    fn only_idle_groups_are_flushed() {
        let merger = Merger::new(settings(&[("MULTILINE_FLUSH_AFTER", "60000")]));
        let mut out = 0;
        merger.feed(&line(&[], "start"), |_| out += 1);
        merger.flush_idle(false, |_| out += 1);
        assert_eq!(out, 0, "a young group stays");
        let quick = Merger::new(settings(&[("MULTILINE_FLUSH_AFTER", "1")]));
        quick.feed(&line(&[], "start"), |_| out += 1);
        std::thread::sleep(Duration::from_millis(5));
        quick.flush_idle(false, |_| out += 1);
        assert_eq!(out, 1);
    }

    #[test]
    fn bad_settings_use_the_originals_messages() {
        let err = |vars: &[(&str, &str)]| {
            MultilineSettings::from_vars(|n| {
                vars.iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| (*v).to_owned())
            })
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            err(&[("MULTILINE_MATCH", "bogus")]),
            "multiline: invalid value for MULTILINE_MATCH (must be one of first|last|nonfirst|nonlast): bogus"
        );
        assert!(
            err(&[("MULTILINE_PATTERN", "(")])
                .starts_with("multiline: invalid value for MULTILINE_PATTERN")
        );
        assert!(
            err(&[("MULTILINE_ENABLE_DEFAULT", "yes")])
                .starts_with("multiline: invalid value for MULTILINE_ENABLE_DEFAULT")
        );
    }
}
