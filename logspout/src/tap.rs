//! Live taps for the `/logs` HTTP stream: ad-hoc, unpersisted subscribers with the stream's
//! filters. A slow client loses lines (its buffer, bounded in lines and bytes, is full); nobody
//! else waits for it. At most `LOGSPOUT_MAX_TAPS` taps are open at once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::mpsc;

use crate::filter::glob_match;
use crate::message::Message;

/// Lines a `/logs` client may have in flight before it starts losing lines.
const TAP_BUFFER: usize = 1024;
/// Bytes of line data a `/logs` client may have in flight before it starts losing lines.
pub const TAP_BUFFER_BYTES: usize = 1024 * 1024;
/// Default of `LOGSPOUT_MAX_TAPS`: `/logs` streams open at once.
pub const DEFAULT_MAX_TAPS: usize = 32;

/// What one `/logs` client wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TapFilter {
    /// `id:` — the container's 12-character ID must start with it.
    pub id: Option<String>,
    /// `name:` — glob on the name without `/`.
    pub name: Option<String>,
    /// `sources=` — exact source name.
    pub source: Option<String>,
}

impl TapFilter {
    pub fn matches(&self, message: &Message) -> bool {
        let c = &message.container;
        self.id
            .as_ref()
            .is_none_or(|id| c.short_id().starts_with(id.as_str()))
            && self
                .name
                .as_ref()
                .is_none_or(|n| glob_match(n, c.bare_name()))
            && self
                .source
                .as_ref()
                .is_none_or(|s| s == message.source.as_str())
    }
}

#[derive(Debug)]
struct Tap {
    key: u64,
    filter: TapFilter,
    tx: mpsc::Sender<Message>,
    /// Bytes of line data queued for this tap and not yet received.
    queued_bytes: Arc<AtomicUsize>,
}

/// The counters of the taps.
#[derive(Debug, Clone)]
pub struct TapMetrics {
    /// `/logs` streams open now.
    pub open: IntGauge,
    /// `/logs` requests refused because `LOGSPOUT_MAX_TAPS` streams were open.
    pub refused: IntCounter,
    /// Lines a `/logs` client lost because it read too slowly.
    pub dropped: IntCounter,
}

/// Every open `/logs` stream.
#[derive(Debug)]
pub struct Taps {
    taps: ArcSwap<Vec<Arc<Tap>>>,
    changes: Mutex<()>,
    next: AtomicU64,
    max: usize,
    metrics: TapMetrics,
}

/// The lines of one tap, in order.
#[derive(Debug)]
pub struct TapReceiver {
    rx: mpsc::Receiver<Message>,
    queued_bytes: Arc<AtomicUsize>,
}

impl TapReceiver {
    /// The next line; `None` once the tap is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        let message = self.rx.recv().await?;
        self.queued_bytes
            .fetch_sub(message.data.len(), Ordering::Relaxed);
        Some(message)
    }
}

/// `LOGSPOUT_MAX_TAPS` streams are open already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many /logs streams open (LOGSPOUT_MAX_TAPS={0})")]
pub struct TooManyTaps(pub usize);

/// Removes its tap when dropped (the client went away).
#[derive(Debug)]
pub struct TapGuard {
    taps: Arc<Taps>,
    key: u64,
}

impl Drop for TapGuard {
    fn drop(&mut self) {
        self.taps.remove(self.key);
    }
}

impl Taps {
    /// No taps yet; at most `max` open at once.
    pub fn new(max: usize, metrics: TapMetrics) -> Self {
        Self {
            taps: ArcSwap::from_pointee(Vec::new()),
            changes: Mutex::new(()),
            next: AtomicU64::new(0),
            max,
            metrics,
        }
    }

    /// Opens a tap; lines arrive on the receiver until the guard is dropped. Refused (and
    /// counted) when `max` taps are open.
    pub fn open(
        self: &Arc<Self>,
        filter: TapFilter,
    ) -> Result<(TapReceiver, TapGuard), TooManyTaps> {
        let _lock = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let mut taps = self.taps.load().as_ref().clone();
        if taps.len() >= self.max {
            self.metrics.refused.inc();
            return Err(TooManyTaps(self.max));
        }
        let (tx, rx) = mpsc::channel(TAP_BUFFER);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        taps.push(Arc::new(Tap {
            key,
            filter,
            tx,
            queued_bytes: queued_bytes.clone(),
        }));
        self.metrics
            .open
            .set(i64::try_from(taps.len()).unwrap_or(i64::MAX));
        self.taps.store(Arc::new(taps));
        let receiver = TapReceiver { rx, queued_bytes };
        let guard = TapGuard {
            taps: self.clone(),
            key,
        };
        Ok((receiver, guard))
    }

    /// Taps open now.
    pub fn len(&self) -> usize {
        self.taps.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, key: u64) {
        let _lock = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let taps = self
            .taps
            .load()
            .iter()
            .filter(|t| t.key != key)
            .cloned()
            .collect::<Vec<_>>();
        self.metrics
            .open
            .set(i64::try_from(taps.len()).unwrap_or(i64::MAX));
        self.taps.store(Arc::new(taps));
    }

    /// Offers a line to every matching tap without waiting.
    pub fn offer(&self, message: &Message) {
        let taps = self.taps.load();
        for tap in taps.iter() {
            if !tap.filter.matches(message) {
                continue;
            }
            let size = message.data.len();
            // Reserve the bytes first: the receiver may take the line at once.
            let before = tap.queued_bytes.fetch_add(size, Ordering::Relaxed);
            let fits = before == 0 || before + size <= TAP_BUFFER_BYTES;
            if !fits || tap.tx.try_send(message.clone()).is_err() {
                tap.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                self.metrics.dropped.inc();
            }
        }
    }
}
