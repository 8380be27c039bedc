//! Go's `time.ParseDuration` for the flags and variables the originals read with it
//! (`-rtimeout 2s`, `INACTIVITY_TIMEOUT=1m`, …): one parser for every component.

use std::time::Duration;

/// Why a text is not a duration; the messages read like Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("time: unknown unit {unit:?} in duration {text:?}")]
    UnknownUnit { unit: String, text: String },
}

/// Parses `300ms`, `1h30m`, `1.5s`, `+2s`, `0` (units `ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`,
/// `h`). Negative durations, which Go accepts, are refused: every duration here is a timeout
/// or an interval.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.to_owned());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() || rest.starts_with('-') {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "" => return Err(DurationError::MissingUnit(text.to_owned())),
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_owned(),
                    text: text.to_owned(),
                });
            }
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_reads_them() {
        let ok = [
            ("0", 0.0),
            ("30s", 30.0),
            ("+2s", 2.0),
            ("1m", 60.0),
            ("1h30m", 5400.0),
            ("1m30s", 90.0),
            ("1.5s", 1.5),
            ("300ms", 0.3),
            ("500us", 0.0005),
            ("500µs", 0.0005),
            ("500μs", 0.0005),
            ("7ns", 7e-9),
        ];
        for (text, secs) in ok {
            assert_eq!(
                parse_go_duration(text),
                Ok(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        let bad = [
            ("60", "time: missing unit in duration \"60\""),
            ("", "time: invalid duration \"\""),
            ("-1s", "time: invalid duration \"-1s\""),
            ("s", "time: invalid duration \"s\""),
            ("1x", "time: unknown unit \"x\" in duration \"1x\""),
            ("1..5s", "time: invalid duration \"1..5s\""),
            (
                "99999999999999999999h",
                "time: invalid duration \"99999999999999999999h\"",
            ),
        ];
        for (text, message) in bad {
            assert_eq!(
                parse_go_duration(text).map_err(|e| e.to_string()),
                Err(message.to_owned()),
                "{text}"
            );
        }
    }
}
