//! Rate-limited reporting of repeated events (skydns's forward failures and refused
//! connections, logspout's dropped messages): the first event of a run is logged in full, then at most one summary per
//! interval says how many happened since the last line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a run of failures may produce a log line.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What the caller should log for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Log this event on its own: the first one, or the first after a quiet interval.
    First,
    /// Log a summary: `count` events (this one included) over the last `over`.
    Summary { count: u64, over: Duration },
    /// Log nothing; the event is counted for the next summary.
    Quiet,
}

/// Decides which events of a kind are logged; shared by every task that sees them.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_line: Option<Instant>,
    unreported: u64,
}

impl RateLimitedLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(State::default()),
        }
    }

    /// Counts one event at `now` and says what to log for it.
    pub fn event(&self, now: Instant) -> Report {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match state.last_line {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                state.unreported += 1;
                Report::Quiet
            }
            Some(last) if state.unreported > 0 => {
                let count = state.unreported + 1;
                state.unreported = 0;
                state.last_line = Some(now);
                Report::Summary {
                    count,
                    over: now.saturating_duration_since(last),
                }
            }
            _ => {
                state.last_line = Some(now);
                Report::First
            }
        }
    }
}

impl Default for RateLimitedLog {
    fn default() -> Self {
        Self::new(REPORT_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_event_then_one_summary_per_interval() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(log.event(at(0)), Report::First);
        let quiet = (1..1000)
            .filter(|i| log.event(at(*i)) == Report::Quiet)
            .count();
        assert_eq!(quiet, 999);
        assert_eq!(
            log.event(at(10_000)),
            Report::Summary {
                count: 1000,
                over: Duration::from_secs(10)
            }
        );
        assert_eq!(log.event(at(10_001)), Report::Quiet);
        assert_eq!(
            log.event(at(25_000)),
            Report::Summary {
                count: 2,
                over: Duration::from_secs(15)
            }
        );
        // After a quiet interval the next event stands on its own again.
        assert_eq!(log.event(at(40_000)), Report::First);
    }

    #[test]
    fn a_clock_going_backwards_is_quiet_not_a_panic() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        let now = Instant::now() + Duration::from_secs(60);
        assert_eq!(log.event(now), Report::First);
        assert_eq!(log.event(now - Duration::from_secs(30)), Report::Quiet);
    }
}
