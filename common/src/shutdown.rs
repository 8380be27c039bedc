//! The shutdown signal: SIGTERM or SIGINT cancels one token that every task of a component
//! watches. A second signal while shutting down exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Exit status used when a second signal cuts a graceful shutdown short (128 + SIGINT).
pub const FORCED_EXIT_CODE: i32 = 130;

/// Installs SIGTERM and SIGINT handlers and returns the token they cancel.
///
/// The handlers are registered before this returns, so a signal sent right after is not lost.
/// Must be called inside a Tokio runtime.
pub fn install() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let cancel = token.clone();
    tokio::spawn(async move {
        for round in 0.. {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            if round == 0 {
                tracing::info!(signal = name, "shutting down");
                cancel.cancel();
            } else {
                tracing::warn!(
                    signal = name,
                    "second signal, exiting without finishing shutdown"
                );
                std::process::exit(FORCED_EXIT_CODE);
            }
        }
    });
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[allow(unsafe_code)]
    fn raise(sig: libc::c_int) {
        // SAFETY: sending a signal to our own process has no memory-safety preconditions.
        let rc = unsafe { libc::kill(libc::getpid(), sig) };
        assert_eq!(rc, 0);
    }

    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let token = install().unwrap();
        assert!(!token.is_cancelled());
        raise(libc::SIGTERM);
        tokio::time::timeout(Duration::from_secs(10), token.cancelled())
            .await
            .expect("token cancelled after SIGTERM");
    }
}
