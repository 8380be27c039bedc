//! The bounded queue in front of each route's sender: pumps never wait for a destination; when
//! the byte bound is hit the oldest messages are dropped and counted.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Bytes>,
    /// Sequence number of `items[0]`.
    head: u64,
    bytes: usize,
    closed: bool,
}

/// What [`RouteQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Messages dropped (oldest first) to make room.
    pub dropped: usize,
}

/// A FIFO of rendered messages bounded in bytes. The sender reads a batch without removing it
/// and acknowledges it once written, so a failed write is retried after the reconnect.
#[derive(Debug)]
pub struct RouteQueue {
    inner: Mutex<Inner>,
    ready: Notify,
    capacity: usize,
}

impl RouteQueue {
    /// A queue holding at most `capacity` bytes (one message larger than that is still kept).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a message, dropping the oldest ones while over the bound, and wakes the sender.
    pub fn push(&self, message: Bytes) -> Pushed {
        let pushed = self.push_quietly(message);
        self.ready.notify_one();
        pushed
    }

    /// [`push`](Self::push) without waking the sender: for a producer that has more messages
    /// at hand and calls [`wake`](Self::wake) once it has none, so that the sender writes them
    /// in one batch instead of waking for every message.
    pub fn push_quietly(&self, message: Bytes) -> Pushed {
        let mut dropped = 0;
        {
            let mut inner = self.lock();
            while !inner.items.is_empty() && inner.bytes + message.len() > self.capacity {
                if let Some(old) = inner.items.pop_front() {
                    inner.bytes -= old.len();
                    inner.head += 1;
                    dropped += 1;
                }
            }
            inner.bytes += message.len();
            inner.items.push_back(message);
        }
        Pushed { dropped }
    }

    /// Wakes the sender for what was pushed quietly.
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// Up to `max_bytes` (at least one message) starting at sequence `from` (or the oldest
    /// still queued), with the sequence number of the first. Waits while empty; `None` once
    /// the queue is closed and everything was acknowledged.
    pub async fn batch(&self, from: u64, max_bytes: usize) -> Option<(u64, Vec<Bytes>)> {
        loop {
            {
                let inner = self.lock();
                let start = from.max(inner.head);
                let offset = usize::try_from(start - inner.head).unwrap_or(usize::MAX);
                if offset < inner.items.len() {
                    let mut size = 0;
                    let batch: Vec<Bytes> = inner
                        .items
                        .iter()
                        .skip(offset)
                        .take_while(|m| {
                            let take = size == 0 || size + m.len() <= max_bytes;
                            size += m.len();
                            take
                        })
                        .cloned()
                        .collect();
                    return Some((start, batch));
                }
                if inner.closed && inner.items.is_empty() {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Removes every message before sequence `upto` (those are delivered).
    pub fn ack(&self, upto: u64) {
        let mut inner = self.lock();
        while inner.head < upto {
            match inner.items.pop_front() {
                Some(old) => {
                    inner.bytes -= old.len();
                    inner.head += 1;
                }
                None => break,
            }
        }
    }

    /// No more pushes are coming: [`batch`](Self::batch) returns `None` once drained.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_are_kept_until_acknowledged() {
        let q = RouteQueue::new(1024);
        for m in ["a", "b", "c"] {
            q.push(Bytes::from(m));
        }
        let (start, batch) = q.batch(0, 2).await.unwrap();
        assert_eq!(
            (start, batch),
            (0, vec![Bytes::from("a"), Bytes::from("b")])
        );
        // Not acknowledged: the same batch comes again (a retry after reconnect).
        assert_eq!(q.batch(0, 2).await.unwrap().1.len(), 2);
        q.ack(2);
        assert_eq!(q.batch(2, 100).await.unwrap(), (2, vec![Bytes::from("c")]));
        q.ack(3);
        assert!(q.is_empty());
        q.close();
        assert_eq!(q.batch(3, 100).await, None);
    }

    #[tokio::test]
    async fn overflow_drops_the_oldest_and_counts() {
        let q = RouteQueue::new(10);
        let mut dropped = 0;
        for i in 0..10 {
            dropped += q.push(Bytes::from(format!("m{i}"))).dropped;
        }
        assert_eq!(dropped, 5);
        assert_eq!(q.len(), 5);
        let (start, batch) = q.batch(0, 100).await.unwrap();
        assert_eq!(start, 5, "the sender skips what was dropped");
        assert_eq!(batch.first(), Some(&Bytes::from("m5")));
        assert_eq!(batch.last(), Some(&Bytes::from("m9")));
        // A message larger than the bound is still delivered.
        assert_eq!(q.push(Bytes::from(vec![b'x'; 50])).dropped, 5);
        assert_eq!(q.len(), 1);
    }

    #[tokio::test]
    async fn quiet_pushes_wait_for_the_wake() {
        let q = std::sync::Arc::new(RouteQueue::new(100));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.batch(0, 100).await }
        });
        tokio::task::yield_now().await;
        q.push_quietly(Bytes::from("a"));
        q.push_quietly(Bytes::from("b"));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "woken without a wake");
        q.wake();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Some((0, vec![Bytes::from("a"), Bytes::from("b")])));
    }

    #[tokio::test]
    async fn a_waiting_sender_wakes_on_push() {
        let q = std::sync::Arc::new(RouteQueue::new(100));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.batch(0, 100).await }
        });
        tokio::task::yield_now().await;
        q.push(Bytes::from("x"));
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Some((0, vec![Bytes::from("x")])));
    }
}
