//! Drain is a state, and one type owns it: [`Shutdown`] holds the signal
//! every long-lived task selects on, the tracker of connection tasks (so
//! the drain knows when the last one is gone), the signal that stops the
//! gateway's own background tasks once the drain is over, and the drain
//! epoch the relay reads on its per-message path.
//!
//! [`Shutdown::begin`] does its steps in the one order that is safe (move
//! the epoch, then cancel), so no caller has to know that order.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

/// Moves whenever a gateway in this process begins to drain. Polling a
/// session's drain future takes a lock, so a relay session polls it only
/// when this has moved since it last looked: the per-message path reads
/// one atomic instead. Process-wide rather than per gateway so that a
/// session keeps no pointer for it (8 bytes per idle connection); a second
/// gateway in the same process (tests) only causes a spurious re-check.
static DRAIN_EPOCH: AtomicU32 = AtomicU32::new(0);

/// How the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection ended.
    Clean,
    /// The grace period ran out with this many tasks left.
    GraceExpired(usize),
}

/// The gateway's drain state.
#[derive(Debug, Default)]
pub struct Shutdown {
    /// Cancelled when draining begins: accept loops stop, sessions close
    /// their clients with 1001.
    draining: CancellationToken,
    /// Cancelled when the drain is over: the admin listener, the mux pools
    /// and the certificate watcher stop.
    stopped: CancellationToken,
    /// Every connection task, handshake or session.
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Begin draining. Returns true for the call that began it (later calls
    /// change nothing).
    pub fn begin(&self) -> bool {
        if self.draining.is_cancelled() {
            return false;
        }
        // Epoch first: a session that sees the token cancelled must also
        // see the epoch moved, or it would not poll its drain future.
        DRAIN_EPOCH.fetch_add(1, Ordering::Release);
        self.draining.cancel();
        true
    }

    /// Has draining begun?
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// The draining signal, for tasks that select on it.
    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    /// Cancelled once the drain is over, for the gateway's own tasks.
    pub fn stopped(&self) -> &CancellationToken {
        &self.stopped
    }

    /// Run a connection task; the drain waits for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// What a relay session polls to learn that the drain has begun.
    pub fn signal(&self) -> DrainSignal {
        DrainSignal {
            cancelled: self.draining.clone().cancelled_owned(),
            // Differs from the epoch now, so the first poll registers.
            epoch: DRAIN_EPOCH.load(Ordering::Relaxed).wrapping_sub(1),
        }
    }

    /// Wait for the drain to begin, then for the last connection task to
    /// end or `grace` to pass; then stop the gateway's own tasks.
    pub async fn finish(&self, grace: Duration) -> Drained {
        self.draining.cancelled().await;
        self.tracker.close();
        let result = match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => Drained::Clean,
            Err(_) => Drained::GraceExpired(self.tracker.len()),
        };
        self.stopped.cancel();
        result
    }
}

pin_project_lite::pin_project! {
    /// A session's view of the drain: the token's future plus the epoch it
    /// last saw, so it is polled only when a drain may have begun.
    pub struct DrainSignal {
        #[pin]
        cancelled: WaitForCancellationFutureOwned,
        epoch: u32,
    }
}

impl DrainSignal {
    /// Has the drain begun? `recheck`: poll the token even if the epoch did
    /// not move (the task's waker changed, so the registered one is stale).
    pub fn begun(self: Pin<&mut Self>, cx: &mut Context<'_>, recheck: bool) -> bool {
        let this = self.project();
        let epoch = DRAIN_EPOCH.load(Ordering::Acquire);
        let moved = epoch != *this.epoch;
        *this.epoch = epoch;
        (moved || recheck) && matches!(this.cancelled.poll(cx), Poll::Ready(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn a_signal_sees_a_drain_that_began_after_it_was_made() {
        let shutdown = Shutdown::new();
        let mut signal = Box::pin(shutdown.signal());
        // First poll registers (epoch differs) and finds no drain.
        assert!(!poll_fn(|cx| Poll::Ready(signal.as_mut().begun(cx, false))).await);
        // Nothing moved, no recheck: the token is not polled again.
        assert!(!poll_fn(|cx| Poll::Ready(signal.as_mut().begun(cx, false))).await);
        assert!(shutdown.begin());
        assert!(!shutdown.begin(), "only the first call begins the drain");
        assert!(poll_fn(|cx| Poll::Ready(signal.as_mut().begun(cx, false))).await);
    }

    #[tokio::test]
    async fn finish_waits_for_tasks_and_then_stops_background_work() {
        let shutdown = Shutdown::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        shutdown.spawn(async move {
            let _ = rx.await;
        });
        shutdown.begin();
        assert!(!shutdown.stopped().is_cancelled());
        tx.send(()).expect("the task is waiting");
        assert_eq!(
            shutdown.finish(Duration::from_secs(30)).await,
            Drained::Clean
        );
        assert!(shutdown.stopped().is_cancelled());
    }

    #[tokio::test]
    async fn finish_reports_tasks_left_when_the_grace_runs_out() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending::<()>());
        shutdown.begin();
        assert_eq!(
            shutdown.finish(Duration::from_millis(10)).await,
            Drained::GraceExpired(1)
        );
    }
}
