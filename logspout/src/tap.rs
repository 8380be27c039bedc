//! Live taps for the `/logs` HTTP stream: ad-hoc, unpersisted subscribers with the stream's
//! filters. A slow client loses lines (its bounded channel is full); nobody else waits for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use crate::filter::glob_match;
use crate::message::Message;

/// Lines a `/logs` client may have in flight before it starts losing lines.
const TAP_BUFFER: usize = 1024;

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
}

/// Every open `/logs` stream.
#[derive(Debug, Default)]
pub struct Taps {
    taps: ArcSwap<Vec<Arc<Tap>>>,
    changes: Mutex<()>,
    next: AtomicU64,
}

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
    /// Opens a tap; lines arrive on the receiver until the guard is dropped.
    pub fn open(self: &Arc<Self>, filter: TapFilter) -> (mpsc::Receiver<Message>, TapGuard) {
        let (tx, rx) = mpsc::channel(TAP_BUFFER);
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let _lock = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let mut taps = self.taps.load().as_ref().clone();
        taps.push(Arc::new(Tap { key, filter, tx }));
        self.taps.store(Arc::new(taps));
        (
            rx,
            TapGuard {
                taps: self.clone(),
                key,
            },
        )
    }

    fn remove(&self, key: u64) {
        let _lock = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let taps = self
            .taps
            .load()
            .iter()
            .filter(|t| t.key != key)
            .cloned()
            .collect();
        self.taps.store(Arc::new(taps));
    }

    /// Offers a line to every matching tap without waiting.
    pub fn offer(&self, message: &Message) {
        let taps = self.taps.load();
        for tap in taps.iter() {
            if tap.filter.matches(message) {
                let _ = tap.tx.try_send(message.clone());
            }
        }
    }
}
