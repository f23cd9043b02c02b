//! The one timer of a plain HTTP connection. Every wait of the keep-alive
//! loop is bounded — the idle time before the next request
//! (`http.keepalive_timeout`), the rest of a later request's head
//! (`limits.handshake_timeout`), the upstream's response head
//! (`http_request_timeout`), each read of a response body
//! (`http_idle_timeout`) — and only one of them runs at a time, so they
//! share one timer, re-armed for each wait instead of a new timer per
//! wait.
//!
//! Why: with a timer per wait, a small GET registered two timers in
//! tokio's timer wheel and removed them again (the keep-alive wait and
//! the response head's), each a lock of the driver and a wheel insert and
//! removal (docs/performance.md, "HTTP proxying", seventh round). Moving a
//! registered timer *later* is an atomic store (tokio re-files it when the
//! old deadline comes); moving it *earlier* costs a new place in the
//! wheel. So a wait whose deadline is later than the one armed keeps the
//! armed one: when that fires first, the wait sees that its own deadline
//! has not come and moves the timer on to it. In the steady state of a
//! keep-alive connection no wait touches the wheel.
//!
//! A deadline kept from an earlier wait may fire while nothing waits on
//! it: the connection's task is then polled once for nothing, at most
//! once per timeout period.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Where a fresh timer points before its first wait: later than any
/// configured timeout, so the first wait arms it at its own deadline.
const UNARMED: Duration = Duration::from_secs(366 * 24 * 3600);

/// A wait that ran out of time.
#[derive(Debug, PartialEq, Eq)]
pub struct TimedOut;

/// The connection's timer. Its `Sleep` is boxed, not pinned in the
/// connection's future: that future is the task an idle event stream
/// keeps for its whole life, and the ~100 bytes of a `Sleep` inline took
/// the task into mimalloc's next size class (+512 bytes per idle stream,
/// `bench-http-ab.sh`, docs/performance.md seventh round).
pub struct ConnTimer {
    sleep: Pin<Box<Sleep>>,
}

impl ConnTimer {
    /// A timer not yet armed. Needs a tokio runtime with time enabled.
    pub fn new() -> ConnTimer {
        ConnTimer {
            sleep: Box::pin(tokio::time::sleep(UNARMED)),
        }
    }

    /// Run `fut` for at most `limit`, counted from the moment it first
    /// has to wait: a future ready at once (a head already in the
    /// buffer) never reads the clock or touches the timer.
    pub fn within<F: Future>(&mut self, limit: Duration, fut: F) -> Within<'_, F> {
        Within {
            fut,
            timer: self,
            wait: Wait::For(limit),
        }
    }

    /// Point the timer at `deadline`, unless it already points earlier
    /// and has not fired (see the module's header). Returns `deadline`.
    fn arm(&mut self, deadline: Instant) -> Instant {
        if self.sleep.is_elapsed() || self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        deadline
    }
}

pin_project_lite::pin_project! {
    /// [`ConnTimer::within`]'s future. A named type, not an `async fn`:
    /// that would hold `fut` twice (as the argument and pinned), and it
    /// sits inside the connection's future, whose size an idle stream
    /// keeps for its whole life.
    pub struct Within<'t, F> {
        #[pin]
        fut: F,
        timer: &'t mut ConnTimer,
        wait: Wait,
    }
}

/// A wait's bound: its length until `fut` first waits, then its deadline
/// (one field, not two: this sits in the connection's future).
#[derive(Clone, Copy)]
enum Wait {
    For(Duration),
    Until(Instant),
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The work first: a future that is ready is never timed out.
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let timer = this.timer;
        let deadline = match *this.wait {
            Wait::Until(deadline) => deadline,
            Wait::For(limit) => {
                let deadline = timer.arm(Instant::now() + limit);
                *this.wait = Wait::Until(deadline);
                deadline
            }
        };
        loop {
            if timer.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if timer.sleep.deadline() >= deadline {
                return Poll::Ready(Err(TimedOut));
            }
            // An earlier deadline, kept armed, has come: on to ours.
            timer.sleep.as_mut().reset(deadline);
        }
    }
}

impl Default for ConnTimer {
    fn default() -> Self {
        ConnTimer::new()
    }
}

#[cfg(test)]
mod tests;
