//! The `multiline+…` routes: consecutive lines of one container stream that belong together
//! (a stack trace) are merged into one message before the sub-adapter renders them.
//!
//! Unlike the original, a group is flushed when no line arrived for `MULTILINE_FLUSH_AFTER`
//! (the original's inverted comparison flushed young groups), stdout and stderr are grouped
//! separately, and merging never changes the message other routes see. A group that reaches
//! `MULTILINE_MAX_BYTES` is sent at once (counted), so a container that prints continuation
//! lines faster than the flush interval cannot grow one without limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use prometheus::IntCounter;
use regex::bytes::Regex;

use crate::lines::MAX_LINE;
use crate::message::{Message, Source};

/// Default of `MULTILINE_MAX_BYTES`: the largest merged message, as large as one line may be.
pub const DEFAULT_MAX_GROUP_BYTES: usize = MAX_LINE;

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
    #[error(
        "multiline: invalid value for MULTILINE_MAX_BYTES (must be a number of bytes, at least 1): {0}"
    )]
    MaxBytes(String),
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
    /// `MULTILINE_MAX_BYTES`: a group that would grow beyond this is sent first.
    pub max_bytes: usize,
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
            max_bytes: DEFAULT_MAX_GROUP_BYTES,
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
        if let Some(v) = var("MULTILINE_MAX_BYTES") {
            settings.max_bytes = v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(MultilineError::MaxBytes(v))?;
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
    /// Groups sent because they reached `max_bytes`.
    capped: Option<IntCounter>,
}

impl Merger {
    pub fn new(settings: MultilineSettings) -> Self {
        Self {
            settings,
            groups: Mutex::new(HashMap::new()),
            capped: None,
        }
    }

    /// Counts the groups sent because they reached `MULTILINE_MAX_BYTES` in `counter`.
    pub fn counting(self, counter: IntCounter) -> Self {
        Self {
            capped: Some(counter),
            ..self
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
        // Whether this line still fits into `group` (else the group is sent first, counted).
        let fits = |group: &Group| {
            let fits = group.data.len() + s.separator.len() + message.data.len() <= s.max_bytes;
            if !fits {
                if let Some(capped) = &self.capped {
                    capped.inc();
                }
            }
            fits
        };
        if matched && s.match_first_line {
            if let Some(old) = groups.insert(key, start()) {
                emit(&old.into_message());
            }
        } else if matched {
            // The line ends its group.
            match groups.remove(&key) {
                Some(mut group) if fits(&group) => {
                    append(&mut group);
                    emit(&group.into_message());
                }
                Some(group) => {
                    emit(&group.into_message());
                    emit(message);
                }
                None => emit(message),
            }
        } else {
            // The line continues a group (or starts one).
            match groups.get_mut(&key) {
                Some(group) if fits(group) => append(group),
                _ => {
                    if let Some(old) = groups.insert(key, start()) {
                        emit(&old.into_message());
                    }
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
    fn a_group_is_sent_when_it_reaches_max_bytes() {
        // A container printing continuation lines without pause: 10,000 lines of 100 bytes
        // (1 MB) never idle long enough for the flush; each group stays within the bound.
        for vars in [&[][..], &[("MULTILINE_MAX_BYTES", "1000")][..]] {
            let settings = settings(vars);
            let max = settings.max_bytes;
            let capped = IntCounter::new("capped", "test").unwrap();
            let merger = Merger::new(settings).counting(capped.clone());
            let continuation = format!(" {}", "c".repeat(99));
            let mut out = Vec::new();
            merger.feed(&line(&[], "Exception"), |m| out.push(m.data.clone()));
            for _ in 0..10_000 {
                merger.feed(&line(&[], &continuation), |m| out.push(m.data.clone()));
            }
            assert!(out.len() > 1, "{vars:?}: the group grew to its end");
            assert!(out.iter().all(|d| d.len() <= max), "{vars:?}");
            assert_eq!(capped.get(), out.len() as u64, "{vars:?}");
            merger.flush_idle(true, |m| out.push(m.data.clone()));
            let total: usize = out.iter().map(|d| d.len()).sum();
            // Nothing is lost: every line is in some message (separators where merged).
            let lines = out
                .iter()
                .map(|d| d.split(|b| *b == b'\n').count())
                .sum::<usize>();
            assert_eq!(lines, 10_001, "{vars:?}");
            assert!(total >= 9 + 10_000 * 100, "{vars:?}");
        }
        // `last` mode: a line that would overflow the group ends it, and goes out alone.
        let merger = Merger::new(settings(&[
            ("MULTILINE_MATCH", "last"),
            ("MULTILINE_PATTERN", "!$"),
            ("MULTILINE_MAX_BYTES", "10"),
        ]));
        let mut out = Vec::new();
        for l in ["aaaa", "bbbb", "cccc!"] {
            merger.feed(&line(&[], l), |m| {
                out.push(String::from_utf8_lossy(&m.data).into_owned())
            });
        }
        assert_eq!(out, ["aaaa\nbbbb", "cccc!"]);
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
            err(&[("MULTILINE_MAX_BYTES", "0")])
                .starts_with("multiline: invalid value for MULTILINE_MAX_BYTES")
        );
        assert!(
            err(&[("MULTILINE_ENABLE_DEFAULT", "yes")])
                .starts_with("multiline: invalid value for MULTILINE_ENABLE_DEFAULT")
        );
    }
}
