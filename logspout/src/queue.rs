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
    /// Messages known lost (dropped while being written, then the write failed), not yet
    /// taken by [`RouteQueue::take_lost`].
    lost: usize,
    /// End (exclusive) of the batch last handed to the sender: it may be on its way.
    in_flight_end: u64,
    /// Messages of that batch dropped from the queue to make room. They are counted only once
    /// the sender asks for them again (the write failed: they are lost); an `ack` says they
    /// were delivered after all.
    evicted_in_flight: usize,
}

/// What [`RouteQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// Messages dropped (oldest first) to make room; those of the batch being written are
    /// counted later, by [`RouteQueue::take_lost`], if that write fails.
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
                    if inner.head < inner.in_flight_end {
                        inner.evicted_in_flight += 1;
                    } else {
                        dropped += 1;
                    }
                    inner.head += 1;
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
                let mut inner = self.lock();
                // Asked again for a batch that was being written: that write failed, and
                // whatever of it was dropped meanwhile is lost. Nothing is in flight now.
                inner.lost += std::mem::take(&mut inner.evicted_in_flight);
                inner.in_flight_end = 0;
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
        // Whatever of the batch was dropped from the queue meanwhile went out all the same.
        inner.evicted_in_flight = 0;
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

    /// The sender is about to write the `count` messages from `start` (a batch it got from
    /// [`batch`](Self::batch)): from now until the next `batch` or `ack`, dropping one of them
    /// to make room is counted only if the write fails. False when the queue no longer starts
    /// at or before `start` (messages were dropped meanwhile, and counted): take a new batch.
    pub fn writing(&self, start: u64, count: usize) -> bool {
        let mut inner = self.lock();
        if inner.head > start {
            return false;
        }
        inner.in_flight_end = start + count as u64;
        inner.evicted_in_flight = 0;
        true
    }

    /// Messages dropped to make room while they were being written, whose write then failed:
    /// lost, and not yet counted by [`push`](Self::push). Resets the count.
    pub fn take_lost(&self) -> usize {
        std::mem::take(&mut self.lock().lost)
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
        assert!(q.writing(start, batch.len()));
        // A message larger than the bound is still delivered. It pushes out the batch being
        // written; the write fails, so those five are lost, counted when the sender retries.
        assert_eq!(q.push(Bytes::from(vec![b'x'; 50])).dropped, 0);
        assert_eq!(q.len(), 1);
        assert_eq!(q.batch(5, 100).await.unwrap().0, 10);
        assert_eq!(q.take_lost(), 5);
    }

    #[tokio::test]
    async fn messages_dropped_while_being_written_count_only_if_the_write_fails() {
        let q = RouteQueue::new(4);
        for m in ["a", "b"] {
            q.push(Bytes::from(m));
        }
        // "a" and "b" are being written when two more push them out of the queue.
        let (start, batch) = q.batch(0, 100).await.unwrap();
        assert_eq!((start, batch.len()), (0, 2));
        assert!(q.writing(start, batch.len()));
        assert_eq!(q.push(Bytes::from("cc")).dropped, 0);
        assert_eq!(q.push(Bytes::from("dd")).dropped, 0);
        // The write worked: delivered, not dropped.
        q.ack(2);
        assert_eq!(q.take_lost(), 0);
        let (start, batch) = q.batch(2, 100).await.unwrap();
        assert_eq!((start, batch.len()), (2, 2));
        assert!(q.writing(start, batch.len()));
        assert_eq!(q.push(Bytes::from("ee")).dropped, 0, "cc is in flight");
        // The write failed: the sender asks again from 2; cc was pushed out meanwhile: lost.
        let (start, batch) = q.batch(2, 100).await.unwrap();
        assert_eq!(
            (start, batch),
            (3, vec![Bytes::from("dd"), Bytes::from("ee")])
        );
        assert_eq!(q.take_lost(), 1);
        assert_eq!(q.take_lost(), 0);
        // Taken but not being written (the sender is still connecting): counted at once, and
        // the sender, told so, takes a new batch.
        assert_eq!(q.push(Bytes::from("ff")).dropped, 1);
        assert!(!q.writing(start, 2));
        let (start, batch) = q.batch(3, 100).await.unwrap();
        assert_eq!((start, batch.len()), (4, 2));
        assert!(q.writing(start, batch.len()));
        q.ack(6);
        assert!(q.is_empty());
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
