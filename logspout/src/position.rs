//! Where a container's log stream resumes: Docker's per-line timestamps, the last one shipped
//! per stream and how many lines carried it, so that a re-attach neither skips nor repeats a
//! line. stdout and stderr are tracked separately: Docker stamps each stream in its own copier,
//! so the two can interleave slightly out of timestamp order in the log.

use chrono::{DateTime, Duration, Utc};

use crate::message::Source;

/// Splits a line of a `timestamps=1` log stream into Docker's timestamp and the payload.
/// Payloads without a timestamp (a TTY chunk holding several lines) return `None`.
pub fn split_timestamp(frame: &[u8]) -> Option<(DateTime<Utc>, usize)> {
    let space = frame.iter().take(40).position(|&b| b == b' ')?;
    let text = std::str::from_utf8(&frame[..space]).ok()?;
    let time = DateTime::parse_from_rfc3339(text).ok()?;
    Some((time.with_timezone(&Utc), space + 1))
}

fn slot(source: Source) -> usize {
    match source {
        Source::Stdout => 0,
        Source::Stderr => 1,
    }
}

/// The resume point of one container, kept across re-attaches and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Lines older than this are not wanted (the start position of the first attach).
    pub not_before: Option<DateTime<Utc>>,
    /// Per stream: timestamp of the last line shipped, and how many shipped lines carried it.
    last: [Option<(DateTime<Utc>, usize)>; 2],
}

impl Position {
    /// Starting at `time` (inclusive).
    pub fn from_time(time: DateTime<Utc>) -> Self {
        Self {
            not_before: Some(time),
            last: [None, None],
        }
    }

    /// A position read back from disk.
    pub fn restore(
        not_before: Option<DateTime<Utc>>,
        last: [Option<(DateTime<Utc>, usize)>; 2],
    ) -> Self {
        Self { not_before, last }
    }

    /// Per stream (stdout, stderr): the last timestamp shipped and how many lines carried it.
    pub fn last(&self) -> [Option<(DateTime<Utc>, usize)>; 2] {
        self.last
    }

    /// The newest timestamp this position knows.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.last
            .iter()
            .flatten()
            .map(|(t, _)| *t)
            .chain(self.not_before)
            .max()
    }

    /// The `since` to ask Docker for (whole seconds, inclusive); 0 = from the beginning. One
    /// second of margin before the older stream's last line covers the streams' interleaving.
    pub fn since_seconds(&self) -> i32 {
        let oldest_last = self.last.iter().flatten().map(|(t, _)| *t).min();
        let time = match oldest_last {
            Some(t) => Some(t - Duration::seconds(1)),
            None => self.not_before,
        };
        time.map_or(0, |t| {
            i32::try_from(t.timestamp()).unwrap_or(i32::MAX).max(0)
        })
    }

    /// A filter for one attach.
    pub fn filter(&self) -> ReplayFilter {
        ReplayFilter {
            initial: self.last,
            equal_seen: [0, 0],
        }
    }

    /// Records that a line of `source` with `time` was shipped.
    pub fn shipped(&mut self, source: Source, time: DateTime<Utc>) {
        let last = &mut self.last[slot(source)];
        *last = match *last {
            Some((t, n)) if t == time => Some((t, n + 1)),
            Some((t, n)) if t > time => Some((t, n)),
            _ => Some((time, 1)),
        };
    }
}

/// Decides, line by line, what an attach must skip because it was shipped before.
#[derive(Debug, Clone, Copy)]
pub struct ReplayFilter {
    /// The position when the attach started.
    initial: [Option<(DateTime<Utc>, usize)>; 2],
    /// Lines seen in this attach with exactly the initial last timestamp.
    equal_seen: [usize; 2],
}

impl ReplayFilter {
    /// True when the line of `source` with `time` is new and must be shipped. `position` is
    /// the current position (it advances during the attach).
    pub fn is_new(&mut self, source: Source, time: DateTime<Utc>, position: &Position) -> bool {
        if position.not_before.is_some_and(|nb| time < nb) {
            return false;
        }
        let i = slot(source);
        match position.last[i] {
            None => true,
            Some((last, _)) if time < last => false,
            Some((last, _)) if time > last => true,
            // Same timestamp as the last line shipped: skip as many as the previous attach
            // shipped with it; any further one is new.
            Some(_) => match self.initial[i] {
                Some((initial, shipped)) if initial == time && self.equal_seen[i] < shipped => {
                    self.equal_seen[i] += 1;
                    false
                }
                _ => true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn timestamps_are_split_off() {
        let (time, skip) = split_timestamp(b"2024-05-01T10:00:00.123456789Z hello\n").unwrap();
        assert_eq!(time, t("2024-05-01T10:00:00.123456789Z"));
        assert_eq!(skip, 31);
        assert!(split_timestamp(b"hello world\n").is_none());
        assert!(split_timestamp(b"").is_none());
        assert!(split_timestamp(b"2024-05-01T10:00:00.1Z").is_none());
    }

    /// Runs one attach over `lines`, stopping after `stop_after` shipped lines.
    fn attach(position: &mut Position, lines: &[(Source, &str)], stop_after: usize) -> Vec<usize> {
        let mut filter = position.filter();
        let mut shipped = Vec::new();
        for (i, (source, time)) in lines.iter().enumerate() {
            if shipped.len() == stop_after {
                break;
            }
            if filter.is_new(*source, t(time), position) {
                position.shipped(*source, t(time));
                shipped.push(i);
            }
        }
        shipped
    }

    #[test]
    fn a_reattach_resumes_exactly_after_the_last_line() {
        use Source::{Stderr, Stdout};
        let lines = [
            (Stdout, "2024-05-01T10:00:00.1Z"),
            (Stdout, "2024-05-01T10:00:00.2Z"),
            (Stdout, "2024-05-01T10:00:00.2Z"),
            // stderr's copier stamped this one earlier but wrote it later.
            (Stderr, "2024-05-01T10:00:00.15Z"),
            (Stdout, "2024-05-01T10:00:00.2Z"),
            (Stderr, "2024-05-01T10:00:01.5Z"),
            (Stdout, "2024-05-01T10:00:01.6Z"),
        ];
        for stop_after in 0..lines.len() {
            let mut position = Position::default();
            let mut all = attach(&mut position, &lines, stop_after);
            assert!(position.since_seconds() <= 1_714_557_600);
            // The re-attach replays everything since that second.
            all.extend(attach(&mut position, &lines, usize::MAX));
            assert_eq!(
                all,
                (0..lines.len()).collect::<Vec<_>>(),
                "stopped after {stop_after}"
            );
        }
    }

    #[test]
    fn lines_replayed_within_one_attach_are_skipped() {
        let mut position = Position::default();
        let lines = [
            (Source::Stdout, "2024-05-01T10:00:00.1Z"),
            (Source::Stdout, "2024-05-01T10:00:00.3Z"),
            (Source::Stdout, "2024-05-01T10:00:00.2Z"),
            (Source::Stdout, "2024-05-01T10:00:00.4Z"),
        ];
        assert_eq!(attach(&mut position, &lines, usize::MAX), [0, 1, 3]);
    }

    #[test]
    fn the_start_position_excludes_older_lines() {
        let mut position = Position::from_time(t("2024-05-01T10:00:00.5Z"));
        assert_eq!(position.since_seconds(), 1_714_557_600);
        let mut filter = position.filter();
        let old = t("2024-05-01T10:00:00.4Z");
        assert!(!filter.is_new(Source::Stdout, old, &position));
        let new = t("2024-05-01T10:00:00.5Z");
        assert!(filter.is_new(Source::Stdout, new, &position));
        position.shipped(Source::Stdout, new);
        assert_eq!(position.since_seconds(), 1_714_557_599);
        assert_eq!(Position::default().since_seconds(), 0);
    }
}
