//! Accepting TCP connections within a bound, shared by every server of the project (skydns's
//! DNS over TCP, the HTTP side of all three): at most `max` connections at once, a connection
//! beyond them closed at once and counted, accept errors (out of file descriptors) paused on
//! instead of spun on, and both logged once and then summarised.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::ratelimit::{RateLimitedLog, Report};

/// Pause after a failed accept before the next one.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A listener that admits at most `max` connections at once.
#[derive(Debug)]
pub struct BoundedListener {
    listener: TcpListener,
    /// What the log calls these connections, e.g. `"DNS over TCP"`, and the setting of the bound.
    what: &'static str,
    max: usize,
    slots: Arc<Semaphore>,
    refused: Option<IntCounter>,
    refusals: RateLimitedLog,
    accept_errors: RateLimitedLog,
}

impl BoundedListener {
    pub fn new(
        listener: TcpListener,
        what: &'static str,
        max: usize,
        refused: Option<IntCounter>,
    ) -> Self {
        Self {
            listener,
            what,
            max,
            slots: Arc::new(Semaphore::new(max)),
            refused,
            refusals: RateLimitedLog::default(),
            accept_errors: RateLimitedLog::default(),
        }
    }

    /// The next connection with its slot (held until the permit is dropped); connections
    /// beyond the bound are closed and counted on the way. `None` once `shutdown` is cancelled.
    pub async fn accept(
        &self,
        shutdown: &CancellationToken,
    ) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return None,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if self.accept_errors.event(Instant::now()) != Report::Quiet {
                        tracing::warn!(what = self.what, %error, "cannot accept a connection");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            };
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => return Some((stream, peer, slot)),
                Err(_) => {
                    drop(stream);
                    if let Some(refused) = &self.refused {
                        refused.inc();
                    }
                    self.report_refusal(peer);
                }
            }
        }
    }

    fn report_refusal(&self, client: SocketAddr) {
        let (what, limit) = (self.what, self.max);
        match self.refusals.event(Instant::now()) {
            Report::First => tracing::warn!(
                %client, limit,
                "{what}: connection limit reached, closing new connections until one ends"
            ),
            Report::Summary { count, over } => tracing::warn!(
                limit,
                "{what}: {count} connections refused at the limit in the last {}s",
                over.as_secs()
            ),
            Report::Quiet => {}
        }
    }
}
