//! Resume points on disk, so that a restart of logspout itself resumes every container where
//! it stopped: written atomically every few seconds and at shutdown, read at start.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::position::Position;

/// Entries whose newest line is older than this are forgotten (their container is long gone).
const FORGET_AFTER_DAYS: i64 = 7;

/// Why the positions file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("positions file {path}: {reason}")]
pub struct PositionsFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// One container's resume point, times as Unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not_before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stdout: Option<(i64, usize)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stderr: Option<(i64, usize)>,
}

fn nanos(time: DateTime<Utc>) -> i64 {
    time.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl Entry {
    fn from_position(p: &Position) -> Self {
        let [stdout, stderr] = p.last();
        Self {
            not_before: p.not_before.map(nanos),
            stdout: stdout.map(|(t, n)| (nanos(t), n)),
            stderr: stderr.map(|(t, n)| (nanos(t), n)),
        }
    }

    fn to_position(self) -> Position {
        let time = DateTime::from_timestamp_nanos;
        Position::restore(
            self.not_before.map(time),
            [
                self.stdout.map(|(t, n)| (time(t), n)),
                self.stderr.map(|(t, n)| (time(t), n)),
            ],
        )
    }
}

/// Reads the positions saved at `path` (a missing file is an empty map).
pub fn load(path: &Path) -> Result<HashMap<String, Position>, PositionsFileError> {
    let error = |reason: String| PositionsFileError {
        path: path.to_owned(),
        reason,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(error(e.to_string())),
    };
    let entries: HashMap<String, Entry> =
        serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
    Ok(entries
        .into_iter()
        .map(|(id, entry)| (id, entry.to_position()))
        .collect())
}

/// Writes `positions` to `path` atomically (temporary file, then rename).
pub fn save(path: &Path, positions: &HashMap<String, Position>) -> Result<(), PositionsFileError> {
    let error = |reason: String| PositionsFileError {
        path: path.to_owned(),
        reason,
    };
    let horizon = Utc::now() - Duration::days(FORGET_AFTER_DAYS);
    let entries: HashMap<&String, Entry> = positions
        .iter()
        .filter(|(_, p)| p.newest().is_none_or(|t| t >= horizon))
        .map(|(id, p)| (id, Entry::from_position(p)))
        .collect();
    let json = serde_json::to_string(&entries).map_err(|e| error(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|e| error(e.to_string()))?;
    file.write_all(json.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| error(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Source;

    #[test]
    fn positions_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".positions");
        assert!(load(&path).unwrap().is_empty());
        let now = Utc::now();
        let mut position = Position::from_time(now - Duration::seconds(5));
        position.shipped(Source::Stdout, now);
        position.shipped(Source::Stdout, now);
        position.shipped(Source::Stderr, now - Duration::seconds(1));
        let mut old = Position::default();
        old.shipped(Source::Stdout, now - Duration::days(30));
        let positions = HashMap::from([("a".to_owned(), position), ("old".to_owned(), old)]);
        save(&path, &positions).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.len(), 1, "week-old entries are forgotten");
        assert_eq!(loaded["a"], position);
        std::fs::write(&path, "not json").unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .to_string()
                .starts_with("positions file")
        );
    }
}
