//! Reassembles lines from the frames of a Docker log stream (`timestamps=1`): strips Docker's
//! timestamp, joins Docker's 16 KiB partial chunks into whole lines, and splits lines longer
//! than `LOGSPOUT_MAX_LINE_BYTES`.

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};

use crate::message::Source;
use crate::position::split_timestamp;

/// Default of `LOGSPOUT_MAX_LINE_BYTES`: the longest line shipped as one message; longer
/// lines become several messages.
pub const MAX_LINE: usize = 64 * 1024;
/// Smallest and largest `LOGSPOUT_MAX_LINE_BYTES` accepted (a container's partial line is
/// held in memory up to this size per stream).
pub const MAX_LINE_RANGE: std::ops::RangeInclusive<usize> = 1024..=16 * 1024 * 1024;

/// Largest UDP payload over IPv4 (65,535 − 20 bytes of IP header − 8 of UDP header; IPv6
/// allows 20 more). A UDP route sends a message that renders larger than this as several
/// datagrams (see `routes`), since a full [`MAX_LINE`] piece plus its syslog header cannot go
/// out as one.
pub const MAX_DATAGRAM: usize = 65_507;

/// One complete line (or piece of an over-long line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub source: Source,
    pub time: DateTime<Utc>,
    pub data: Bytes,
    /// The frame carried its own timestamp (false for the later lines of a TTY chunk).
    pub stamped: bool,
}

/// Per-attach line assembly state.
#[derive(Debug)]
pub struct LineAssembler {
    partial: [BytesMut; 2],
    last_time: Option<DateTime<Utc>>,
    max_line: usize,
    /// Pieces shipped because a line was longer than `max_line` (one per cut).
    splits: u64,
}

impl Default for LineAssembler {
    fn default() -> Self {
        Self::new(MAX_LINE)
    }
}

fn slot(source: Source) -> usize {
    match source {
        Source::Stdout => 0,
        Source::Stderr => 1,
    }
}

impl LineAssembler {
    /// An assembler that ships lines of up to `max_line` bytes whole.
    pub fn new(max_line: usize) -> Self {
        Self {
            partial: [BytesMut::new(), BytesMut::new()],
            last_time: None,
            max_line: max_line.max(1),
            splits: 0,
        }
    }

    /// The cuts made in over-long lines since the last call (for `logspout_lines_split_total`).
    pub fn take_splits(&mut self) -> u64 {
        std::mem::take(&mut self.splits)
    }

    /// Feeds one frame of `source`; complete lines are appended to `out`.
    pub fn push(&mut self, source: Source, frame: Bytes, out: &mut Vec<Line>) {
        let (time, payload, stamped) = match split_timestamp(&frame) {
            Some((time, skip)) => (time, frame.slice(skip..), true),
            // A TTY chunk holding several lines: only the first carries a timestamp.
            None => (self.last_time.unwrap_or_else(Utc::now), frame, false),
        };
        self.last_time = Some(time);
        let partial = &mut self.partial[slot(source)];
        let complete = payload.last() == Some(&b'\n');
        let body = if complete {
            payload.slice(..payload.len() - 1)
        } else {
            payload
        };
        let max = self.max_line;
        if partial.is_empty() && complete && body.len() <= max {
            out.push(Line {
                source,
                time,
                data: body,
                stamped,
            });
            return;
        }
        partial.extend_from_slice(&body);
        while partial.len() > max || (partial.len() == max && !complete) {
            let piece = partial.split_to(max).freeze();
            self.splits += 1;
            out.push(Line {
                source,
                time,
                data: piece,
                stamped: false,
            });
        }
        if complete {
            let rest = partial.split().freeze();
            out.push(Line {
                source,
                time,
                data: rest,
                stamped: false,
            });
        }
    }

    /// At the end of a container's output: the last lines that had no final newline.
    pub fn finish(&mut self, out: &mut Vec<Line>) {
        let time = self.last_time.unwrap_or_else(Utc::now);
        for source in [Source::Stdout, Source::Stderr] {
            let partial = &mut self.partial[slot(source)];
            if !partial.is_empty() {
                out.push(Line {
                    source,
                    time,
                    data: partial.split().freeze(),
                    stamped: false,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_pieces_are_joined_up_to_the_maximum_and_cuts_are_counted() {
        let piece = |n: usize, end: bool| {
            let mut frame = b"2024-05-01T10:00:00.1Z ".to_vec();
            frame.extend(std::iter::repeat_n(b'x', n));
            if end {
                frame.push(b'\n');
            }
            frame
        };
        // 100,000 bytes as Docker hands them over: six 16 KiB pieces and the rest.
        let frames: Vec<Vec<u8>> = (0..6)
            .map(|_| piece(16 * 1024, false))
            .chain([piece(100_000 - 6 * 16 * 1024, true)])
            .collect();
        for (max, sizes, cuts) in [
            (1024 * 1024, vec![100_000], 0),
            (MAX_LINE, vec![65_536, 34_464], 1),
            (40_000, vec![40_000, 40_000, 20_000], 2),
        ] {
            let mut a = LineAssembler::new(max);
            let mut out = Vec::new();
            for frame in &frames {
                a.push(Source::Stdout, Bytes::from(frame.clone()), &mut out);
            }
            let got: Vec<usize> = out.iter().map(|l| l.data.len()).collect();
            assert_eq!(got, sizes, "max {max}");
            assert_eq!(a.take_splits(), cuts, "max {max}");
            assert_eq!(a.take_splits(), 0);
        }
    }

    fn feed(assembler: &mut LineAssembler, source: Source, frame: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        assembler.push(source, Bytes::copy_from_slice(frame), &mut out);
        out
    }

    #[test]
    fn lines_lose_timestamp_and_newline_but_keep_cr() {
        let mut a = LineAssembler::default();
        let out = feed(&mut a, Source::Stdout, b"2024-05-01T10:00:00.1Z hello\r\n");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, Bytes::from_static(b"hello\r"));
        assert_eq!(out[0].time.timestamp_subsec_millis(), 100);
        let empty = feed(&mut a, Source::Stderr, b"2024-05-01T10:00:00.2Z \n");
        assert_eq!((empty[0].source, empty[0].data.len()), (Source::Stderr, 0));
        // A TTY line without its own timestamp inherits the previous one.
        let tty = feed(&mut a, Source::Stdout, b"second\n");
        assert_eq!(tty[0].data, Bytes::from_static(b"second"));
        assert_eq!(tty[0].time.timestamp_subsec_millis(), 200);
    }

    #[test]
    fn partial_chunks_are_joined_per_stream() {
        let mut a = LineAssembler::default();
        assert!(feed(&mut a, Source::Stdout, b"2024-05-01T10:00:00.1Z abc").is_empty());
        let other = feed(&mut a, Source::Stderr, b"2024-05-01T10:00:00.2Z err\n");
        assert_eq!(other[0].data, Bytes::from_static(b"err"));
        let out = feed(&mut a, Source::Stdout, b"2024-05-01T10:00:00.3Z def\n");
        assert_eq!(out[0].data, Bytes::from_static(b"abcdef"));
        assert_eq!(out[0].time.timestamp_subsec_millis(), 300);
        assert!(feed(&mut a, Source::Stdout, b"2024-05-01T10:00:00.4Z tail").is_empty());
        let mut rest = Vec::new();
        a.finish(&mut rest);
        assert_eq!(rest[0].data, Bytes::from_static(b"tail"));
    }

    #[test]
    fn over_long_lines_are_split() {
        let mut a = LineAssembler::default();
        let mut frame = b"2024-05-01T10:00:00.1Z ".to_vec();
        frame.extend(std::iter::repeat_n(b'x', MAX_LINE * 2 + 10));
        frame.push(b'\n');
        let out = feed(&mut a, Source::Stdout, &frame);
        let sizes: Vec<usize> = out.iter().map(|l| l.data.len()).collect();
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 10]);
        let mut exact = b"2024-05-01T10:00:00.1Z ".to_vec();
        exact.extend(std::iter::repeat_n(b'y', MAX_LINE));
        exact.push(b'\n');
        assert_eq!(feed(&mut a, Source::Stdout, &exact).len(), 1);
    }
}
