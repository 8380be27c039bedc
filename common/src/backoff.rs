//! The one retry policy: exponential backoff with jitter (from `backon`), plus helpers that retry
//! an operation or sleep between reconnects while honouring the shutdown token.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// How long to wait between attempts, and how many attempts to make.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub factor: f32,
    /// Randomise each delay (avoids every host of a cluster reconnecting in the same instant).
    pub jitter: bool,
    /// Give up after this many retries; `None` retries until cancelled.
    pub max_retries: Option<usize>,
}

impl Default for Backoff {
    /// 250 ms doubling to 30 s, with jitter, forever.
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            factor: 2.0,
            jitter: true,
            max_retries: None,
        }
    }
}

/// How a retried operation ended without success.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: usize, last: E },
    #[error("cancelled by shutdown")]
    Cancelled,
}

impl Backoff {
    /// A fixed pause between attempts (registrator's `-retry-interval`), `retries` times
    /// (`None` = forever).
    pub fn fixed(delay: Duration, max_retries: Option<usize>) -> Self {
        Self {
            min_delay: delay,
            max_delay: delay,
            factor: 1.0,
            jitter: false,
            max_retries,
        }
    }

    /// The successive delays of this policy.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        let mut builder = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor);
        builder = match self.max_retries {
            Some(n) => builder.with_max_times(n),
            None => builder.without_max_times(),
        };
        if self.jitter {
            builder = builder.with_jitter();
        }
        builder.build()
    }

    /// Runs `op` until it succeeds, the retries are used up, or `shutdown` is cancelled. Each
    /// failure is logged as a warning naming `what`.
    pub async fn retry<T, E, F, Fut>(
        &self,
        what: &str,
        shutdown: &CancellationToken,
        mut op: F,
    ) -> Result<T, RetryError<E>>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut delays = self.delays();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = tokio::select! {
                _ = shutdown.cancelled() => return Err(RetryError::Cancelled),
                result = op() => result,
            };
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            let Some(delay) = delays.next() else {
                return Err(RetryError::Exhausted {
                    attempts,
                    last: err,
                });
            };
            tracing::warn!(%what, attempt = attempts, retry_in = ?delay, error = %err, "failed, will retry");
            if !sleep_unless_cancelled(delay, shutdown).await {
                return Err(RetryError::Cancelled);
            }
        }
    }
}

/// Sleeps for `delay`; returns false (early) if `shutdown` is cancelled first.
pub async fn sleep_unless_cancelled(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// Waits up to `delay` between two attempts of something that failed because a peer did not
/// answer, asking `probe` every `interval` whether it answers again and ending the wait as soon
/// as it does: work resumes right after an outage instead of after the backoff step. Returns
/// false if `shutdown` was cancelled first.
pub async fn pause_unless<F: std::future::Future<Output = bool>>(
    delay: Duration,
    interval: Duration,
    shutdown: &CancellationToken,
    mut probe: impl FnMut() -> F,
) -> bool {
    let until = tokio::time::Instant::now() + delay;
    loop {
        let now = tokio::time::Instant::now();
        if now >= until {
            return true;
        }
        let step = interval.min(until - now);
        if !sleep_unless_cancelled(step, shutdown).await {
            return false;
        }
        let answered = tokio::select! {
            _ = shutdown.cancelled() => return false,
            answered = probe() => answered,
        };
        if answered {
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn delays_grow_to_the_cap_without_jitter() {
        let policy = Backoff {
            jitter: false,
            max_retries: Some(6),
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            factor: 2.0,
        };
        let delays: Vec<u64> = policy.delays().map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jittered_delays_stay_within_twice_the_cap() {
        let policy = Backoff {
            max_retries: Some(50),
            ..Backoff::default()
        };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 50);
        assert!(
            delays.iter().all(|d| *d <= policy.max_delay * 2),
            "{delays:?}"
        );
    }

    #[test]
    fn the_default_policy_never_runs_out() {
        assert_eq!(Backoff::default().delays().take(1000).count(), 1000);
        let fixed: Vec<Duration> = Backoff::fixed(Duration::from_secs(2), Some(3))
            .delays()
            .collect();
        assert_eq!(fixed, vec![Duration::from_secs(2); 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_succeeds_after_failures() {
        let calls = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let counted = calls.clone();
        let started = tokio::time::Instant::now();
        let result = Backoff::fixed(Duration::from_secs(2), None)
            .retry("test op", &shutdown, || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                async move { if n < 3 { Err("not yet") } else { Ok(n) } }
            })
            .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // Paused clock: exactly three pauses of 2 s elapsed in virtual time.
        assert_eq!(started.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_after_max_retries() {
        let shutdown = CancellationToken::new();
        let result: Result<(), _> = Backoff::fixed(Duration::from_millis(10), Some(2))
            .retry("test op", &shutdown, || async { Err("down") })
            .await;
        match result {
            Err(RetryError::Exhausted { attempts, last }) => {
                assert_eq!(attempts, 3);
                assert_eq!(last, "down");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_when_cancelled() {
        let shutdown = CancellationToken::new();
        let cancel = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            cancel.cancel();
        });
        let result: Result<(), _> = Backoff::default()
            .retry("test op", &shutdown, || async { Err("down") })
            .await;
        assert!(matches!(result, Err(RetryError::Cancelled)));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_returns_early_on_cancel() {
        let shutdown = CancellationToken::new();
        assert!(sleep_unless_cancelled(Duration::from_secs(1), &shutdown).await);
        shutdown.cancel();
        assert!(!sleep_unless_cancelled(Duration::from_secs(3600), &shutdown).await);
    }

    #[tokio::test(start_paused = true)]
    async fn pause_ends_at_the_first_probe_that_answers() {
        let shutdown = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let probes = AtomicUsize::new(0);
        let waited = pause_unless(
            Duration::from_secs(30),
            Duration::from_millis(250),
            &shutdown,
            || std::future::ready(probes.fetch_add(1, Ordering::SeqCst) + 1 == 3),
        )
        .await;
        assert!(waited);
        assert_eq!(probes.load(Ordering::SeqCst), 3);
        assert_eq!(started.elapsed(), Duration::from_millis(750));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_lasts_the_delay_while_nothing_answers_and_stops_on_cancel() {
        let shutdown = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let probes = AtomicUsize::new(0);
        let quiet = || {
            probes.fetch_add(1, Ordering::SeqCst);
            std::future::ready(false)
        };
        assert!(
            pause_unless(
                Duration::from_secs(1),
                Duration::from_millis(300),
                &shutdown,
                quiet
            )
            .await
        );
        // Probed at 300, 600, 900 and (after the last 100 ms) 1,000 ms.
        assert_eq!(probes.load(Ordering::SeqCst), 4);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        shutdown.cancel();
        assert!(
            !pause_unless(
                Duration::from_secs(60),
                Duration::from_millis(250),
                &shutdown,
                || { std::future::ready(false) }
            )
            .await
        );
    }
}
