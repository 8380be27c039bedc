//! Go's `time.Time.Format` with reference-time layouts (`2006-01-02T15:04:05.000Z07:00`) and
//! `time.Time.String`.

use chrono::{DateTime, Datelike, FixedOffset, Timelike};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// A layout element, as Go's `nextStdChunk` finds them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    Pm(bool),
    /// `-0700` style zones: (`Z` for UTC, with colons, with hours only, with seconds).
    Zone {
        z: bool,
        colon: bool,
        hours_only: bool,
        seconds: bool,
    },
    Tz,
    /// Fractional seconds: separator, digits, trailing zeros trimmed.
    Frac(u8, usize, bool),
}

/// The next layout element: the literal text before it, the element, the bytes used.
fn next_std(layout: &str) -> Option<(usize, Std, usize)> {
    let b = layout.as_bytes();
    let has = |i: usize, s: &str| layout[i..].starts_with(s);
    // `Month` is not `Mon` + `th`: a name followed by a lower-case letter is text.
    let lower_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_lowercase);
    for i in 0..b.len() {
        let found = match b[i] {
            b'J' if has(i, "January") => Some((Std::LongMonth, 7)),
            b'J' if has(i, "Jan") && !lower_at(i + 3) => Some((Std::Month, 3)),
            b'M' if has(i, "Monday") => Some((Std::LongWeekDay, 6)),
            b'M' if has(i, "Mon") && !lower_at(i + 3) => Some((Std::WeekDay, 3)),
            b'M' if has(i, "MST") => Some((Std::Tz, 3)),
            b'0' if has(i, "002") => Some((Std::ZeroYearDay, 3)),
            b'0' => match b.get(i + 1) {
                Some(b'1') => Some((Std::ZeroMonth, 2)),
                Some(b'2') => Some((Std::ZeroDay, 2)),
                Some(b'3') => Some((Std::ZeroHour12, 2)),
                Some(b'4') => Some((Std::ZeroMinute, 2)),
                Some(b'5') => Some((Std::ZeroSecond, 2)),
                Some(b'6') => Some((Std::Year, 2)),
                _ => None,
            },
            b'1' if has(i, "15") => Some((Std::Hour, 2)),
            b'1' => Some((Std::NumMonth, 1)),
            b'2' if has(i, "2006") => Some((Std::LongYear, 4)),
            b'2' => Some((Std::Day, 1)),
            b'_' if has(i, "_2006") => return Some((i + 1, Std::LongYear, 4)),
            b'_' if has(i, "__2") => Some((Std::UnderYearDay, 3)),
            b'_' if has(i, "_2") => Some((Std::UnderDay, 2)),
            b'3' => Some((Std::Hour12, 1)),
            b'4' => Some((Std::Minute, 1)),
            b'5' => Some((Std::Second, 1)),
            b'P' if has(i, "PM") => Some((Std::Pm(true), 2)),
            b'p' if has(i, "pm") => Some((Std::Pm(false), 2)),
            c @ (b'-' | b'Z') => {
                let z = c == b'Z';
                let zone = |colon, hours_only, seconds| Std::Zone {
                    z,
                    colon,
                    hours_only,
                    seconds,
                };
                if has(i + 1, "070000") {
                    Some((zone(false, false, true), 7))
                } else if has(i + 1, "07:00:00") {
                    Some((zone(true, false, true), 9))
                } else if has(i + 1, "0700") {
                    Some((zone(false, false, false), 5))
                } else if has(i + 1, "07:00") {
                    Some((zone(true, false, false), 6))
                } else if has(i + 1, "07") {
                    Some((zone(false, true, false), 3))
                } else {
                    None
                }
            }
            c @ (b'.' | b',') if matches!(b.get(i + 1), Some(b'0' | b'9')) => {
                let digit = b[i + 1];
                let mut j = i + 1;
                while b.get(j) == Some(&digit) {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    None
                } else {
                    Some((Std::Frac(c, j - i - 1, digit == b'9'), j - i))
                }
            }
            _ => None,
        };
        if let Some((std, len)) = found {
            return Some((i, std, len));
        }
    }
    None
}

/// Appends `t` formatted with Go layout `layout`.
pub(super) fn format(t: &DateTime<FixedOffset>, layout: &str, out: &mut Vec<u8>) {
    let mut rest = layout;
    while let Some((start, std, len)) = next_std(rest) {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        element(t, std, out);
        rest = &rest[start + len..];
    }
    out.extend_from_slice(rest.as_bytes());
}

fn pad(out: &mut Vec<u8>, value: i64, width: usize, fill: u8) {
    let digits = value.unsigned_abs().to_string();
    if value < 0 {
        out.push(b'-');
    }
    for _ in digits.len()..width {
        out.push(fill);
    }
    out.extend_from_slice(digits.as_bytes());
}

fn element(t: &DateTime<FixedOffset>, std: Std, out: &mut Vec<u8>) {
    let hour12 = || match t.hour() % 12 {
        0 => 12,
        h => i64::from(h),
    };
    match std {
        Std::LongMonth => out.extend_from_slice(MONTHS[t.month0() as usize].as_bytes()),
        Std::Month => out.extend_from_slice(&MONTHS[t.month0() as usize].as_bytes()[..3]),
        Std::NumMonth => pad(out, t.month().into(), 0, b'0'),
        Std::ZeroMonth => pad(out, t.month().into(), 2, b'0'),
        Std::LongWeekDay => out.extend_from_slice(weekday(t).as_bytes()),
        Std::WeekDay => out.extend_from_slice(&weekday(t).as_bytes()[..3]),
        Std::Day => pad(out, t.day().into(), 0, b'0'),
        Std::UnderDay => pad(out, t.day().into(), 2, b' '),
        Std::ZeroDay => pad(out, t.day().into(), 2, b'0'),
        Std::UnderYearDay => pad(out, t.ordinal().into(), 3, b' '),
        Std::ZeroYearDay => pad(out, t.ordinal().into(), 3, b'0'),
        Std::Hour => pad(out, t.hour().into(), 2, b'0'),
        Std::Hour12 => pad(out, hour12(), 0, b'0'),
        Std::ZeroHour12 => pad(out, hour12(), 2, b'0'),
        Std::Minute => pad(out, t.minute().into(), 0, b'0'),
        Std::ZeroMinute => pad(out, t.minute().into(), 2, b'0'),
        Std::Second => pad(out, t.second().into(), 0, b'0'),
        Std::ZeroSecond => pad(out, t.second().into(), 2, b'0'),
        Std::LongYear => pad(out, t.year().into(), 4, b'0'),
        Std::Year => pad(out, i64::from(t.year()).rem_euclid(100), 2, b'0'),
        Std::Pm(upper) => {
            let s = match (t.hour() >= 12, upper) {
                (true, true) => "PM",
                (false, true) => "AM",
                (true, false) => "pm",
                (false, false) => "am",
            };
            out.extend_from_slice(s.as_bytes());
        }
        Std::Zone {
            z,
            colon,
            hours_only,
            seconds,
        } => {
            let offset = t.offset().local_minus_utc();
            if z && offset == 0 {
                out.push(b'Z');
                return;
            }
            zone(out, offset, colon, hours_only, seconds);
        }
        Std::Tz => {
            let offset = t.offset().local_minus_utc();
            if offset == 0 {
                out.extend_from_slice(b"UTC");
            } else {
                zone(out, offset, false, false, false);
            }
        }
        Std::Frac(sep, digits, trim) => {
            let nanos = t.nanosecond() % 1_000_000_000;
            let all = format!("{nanos:09}");
            let mut frac = &all[..digits.min(9)];
            if trim {
                frac = frac.trim_end_matches('0');
                if frac.is_empty() {
                    return;
                }
            }
            out.push(sep);
            out.extend_from_slice(frac.as_bytes());
            for _ in 9..digits {
                out.push(b'0');
            }
        }
    }
}

fn zone(out: &mut Vec<u8>, offset: i32, colon: bool, hours_only: bool, seconds: bool) {
    out.push(if offset < 0 { b'-' } else { b'+' });
    let abs = i64::from(offset.unsigned_abs());
    pad(out, abs / 3600, 2, b'0');
    if hours_only {
        return;
    }
    if colon {
        out.push(b':');
    }
    pad(out, abs / 60 % 60, 2, b'0');
    if seconds {
        if colon {
            out.push(b':');
        }
        pad(out, abs % 60, 2, b'0');
    }
}

/// The English name of the weekday (`Monday`).
pub(super) fn weekday(t: &DateTime<FixedOffset>) -> &'static str {
    DAYS[t.weekday().num_days_from_monday() as usize]
}

/// The English name of the month (`December`).
pub(super) fn month(t: &DateTime<FixedOffset>) -> &'static str {
    MONTHS[t.month0() as usize]
}

/// Go's `Time.String()`: `2006-01-02 15:04:05.999999999 -0700 MST`.
pub(super) fn string(t: &DateTime<FixedOffset>, out: &mut Vec<u8>) {
    format(t, "2006-01-02 15:04:05.999999999 -0700 MST", out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(offset_secs: i32, nanos: u32) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(offset_secs)
            .unwrap()
            .with_ymd_and_hms(2021, 12, 6, 15, 4, 5)
            .unwrap()
            .with_nanosecond(nanos)
            .unwrap()
    }

    fn fmt(t: &DateTime<FixedOffset>, layout: &str) -> String {
        let mut out = Vec::new();
        format(t, layout, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Expected values are what Go 1.22's `time.Format` prints for the same instant.
    #[test]
    fn go_layouts() {
        let utc = at(0, 700_000_000);
        let cet = at(3600, 123_456_789);
        let cases = [
            (&utc, "2006-01-02T15:04:05Z07:00", "2021-12-06T15:04:05Z"),
            (
                &cet,
                "2006-01-02T15:04:05Z07:00",
                "2021-12-06T15:04:05+01:00",
            ),
            (
                &utc,
                "2006-01-02T15:04:05.000Z07:00",
                "2021-12-06T15:04:05.700Z",
            ),
            (
                &utc,
                "2006-01-02T15:04:05.999999999Z07:00",
                "2021-12-06T15:04:05.7Z",
            ),
            (
                &cet,
                "2006-01-02T15:04:05.999999999Z07:00",
                "2021-12-06T15:04:05.123456789+01:00",
            ),
            (&cet, "15:04:05,000000", "15:04:05,123456"),
            (&at(0, 0), "05.999", "05"),
            (&utc, "Mon Jan _2 15:04:05 2006", "Mon Dec  6 15:04:05 2021"),
            (
                &utc,
                "Monday, 02-Jan-06 15:04:05 MST",
                "Monday, 06-Dec-21 15:04:05 UTC",
            ),
            (&cet, "02 Jan 06 15:04 -0700", "06 Dec 21 15:04 +0100"),
            (&utc, "3:04PM", "3:04PM"),
            (&utc, "03:04:05 pm", "03:04:05 pm"),
            (&utc, "January 2, 2006 002 __2", "December 6, 2021 340 340"),
            (
                &at(-(5 * 3600 + 1800), 0),
                "-07 -07:00 Z0700",
                "-05 -05:30 -0530",
            ),
            (&utc, "20060102150405", "20211206150405"),
            (&utc, "2006-01-02 literal", "2021-12-06 literal"),
            (&utc, "Month Janx", "Month Janx"),
        ];
        for (t, layout, expected) in cases {
            assert_eq!(fmt(t, layout), expected, "{layout}");
        }
        let mut s = Vec::new();
        string(&utc, &mut s);
        assert_eq!(
            String::from_utf8(s).unwrap(),
            "2021-12-06 15:04:05.7 +0000 UTC"
        );
    }
}
