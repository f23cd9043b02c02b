//! The passthrough relay: after both handshakes, carry frames between the
//! client and its upstream until the session ends.
//!
//! It forwards the bytes it reads, unchanged — a masked client frame is
//! valid as-is towards the upstream (where the gateway is the client), an
//! upstream frame is valid as-is towards the client — and only scans frame
//! headers as they pass (see `scan`). Reads go through one per-thread 64 KiB
//! scratch buffer; a session keeps bytes of its own only while the other
//! side cannot take them, and stops reading the sending side until they
//! drain. So an idle session holds two sockets, two scanners and a timer,
//! and a message costs one read and one write per direction.
//!
//! The session is one hand-written future (`Session::poll`) rather than an
//! `async` block, so its size is what is written below and nothing more.

mod close;
pub mod leg;
mod pump;
pub mod scan;
mod timers;

pub(crate) use timers::silence_excused;

use crate::io::Io;
use crate::metrics::RouteMetrics;
use crate::shutdown::DrainSignal;
use leg::{Leg, Side};
use scan::Limits;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// Bytes read per system call: a typical message in one read.
pub const SCRATCH: usize = 64 * 1024;

/// Passes through I/O and timers per wake-up: a pass repeats only when a
/// deadline passed while it ran; after this many the session yields (and
/// wakes itself) rather than hold the thread while its timers keep firing.
const TIMER_PASSES_PER_POLL: usize = 4;

/// Rounds of read/write per wake-up before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 32;

thread_local! {
    /// Shared by every session on this worker thread; only borrowed inside
    /// one synchronous poll, never across an await.
    pub(crate) static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; scan::MAX_STASH + SCRATCH]);
}

/// Per-route relay settings, shared by the route's sessions.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Limits on frames from the client.
    pub client_limits: Limits,
    /// Limits on frames from the upstream.
    pub upstream_limits: Limits,
    pub ping_interval: Option<Duration>,
    pub pong_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub close_timeout: Duration,
    pub drain_spread: Duration,
}

/// How the session ended, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub client_close: Option<u16>,
    pub upstream_close: Option<u16>,
    pub reason: &'static str,
}

pub struct Session {
    client: Leg,
    upstream: Leg,
    settings: Arc<Settings>,
    metrics: Arc<RouteMetrics>,
    started: Instant,
    /// Last completed data message either way (idle timeout).
    last_data: Instant,
    /// Set once a close is under way: when the session is torn down anyway.
    close_deadline: Option<Instant>,
    /// Drain: when this session sends its Close 1001.
    drain_at: Option<Instant>,
    /// Edge auth: when the client's token expires (JWT `exp` + grace); the
    /// client then gets Close 1008 "token expired", the upstream 1001.
    expires_at: Option<Instant>,
    draining: bool,
    /// The timer was polled since its last reset, with `waker`.
    timer_polled: bool,
    /// Data and vtable addresses of the waker of the last poll.
    waker: (usize, usize),
    /// Both close handshakes are done; shutting sockets down.
    finishing: bool,
    client_shut: bool,
    /// First cause of the end, for logs: it starts with the side that
    /// ended the session (`client …`, `upstream …`), else the gateway did.
    reason: &'static str,
    /// The access-log record; `None` unless this session is logged
    /// (`access::Record::start`), so unlogged sessions pay one word.
    access: Option<Box<crate::access::Record>>,
    /// Fan-out: published frames for the client, inserted at frame
    /// boundaries of the upstream's stream (`None`: not subscribed).
    feed: Option<Arc<crate::fanout::Subscriber>>,
}

impl Session {
    /// `from_client` / `from_upstream`: bytes that arrived behind the
    /// handshakes and must be relayed first. `compressed`: permessage-deflate
    /// was negotiated end to end (RSV1 passes on data messages' first
    /// frames; payloads stay as they are).
    pub fn new(
        (client, upstream): (Io, Io),
        from_client: &[u8],
        from_upstream: &[u8],
        compressed: bool,
        settings: Arc<Settings>,
        metrics: Arc<RouteMetrics>,
    ) -> Session {
        let now = Instant::now();
        let mut s = Session {
            client: Leg::new(client, Side::Client, now),
            upstream: Leg::new(upstream, Side::Upstream, now),
            settings,
            metrics,
            started: now,
            last_data: now,
            close_deadline: None,
            drain_at: None,
            expires_at: None,
            draining: false,
            timer_polled: false,
            waker: (0, 0),
            finishing: false,
            client_shut: false,
            reason: "closed",
            access: None,
            feed: None,
        };
        s.client.scanner.allow_compressed(compressed);
        s.upstream.scanner.allow_compressed(compressed);
        s.preload(Side::Client, from_client, now);
        s.preload(Side::Upstream, from_upstream, now);
        s
    }

    /// End the session when the client's credential expires.
    pub fn expire_at(mut self, at: Option<Instant>) -> Session {
        self.expires_at = at;
        self
    }

    /// Keep an access-log record and write its line when the session ends.
    pub fn log_access(mut self, record: Option<Box<crate::access::Record>>) -> Session {
        self.access = record;
        self
    }

    /// Deliver this subscriber's published frames to the client; it
    /// leaves its channels when the session ends.
    pub fn fanout(mut self, feed: Option<Arc<crate::fanout::Subscriber>>) -> Session {
        if let Some(f) = &feed {
            f.attach(&self.client.io);
        }
        self.feed = feed;
        self
    }

    /// Tell the fan-out feed whether a publish may write to the client
    /// directly (`idle`: the session is about to wait): only at a frame
    /// boundary of the upstream's stream outside a message, with nothing
    /// waiting for the client and no Close or ping of ours due.
    fn feed_clear(&self, idle: bool) {
        let Some(feed) = &self.feed else {
            return;
        };
        let (c, up) = (&self.client, &self.upstream);
        let clear = idle
            && !self.finishing
            && !c.dead
            && !c.close_out
            && c.close_wanted.is_none()
            && !c.ping_wanted
            && !c.blocked()
            && up.pending_stop.is_none()
            && up.scanner.at_boundary()
            && !up.scanner.in_message();
        feed.set_clear(clear);
    }

    /// The tail of a published frame a publish wrote only in part goes to
    /// the client before anything else.
    fn feed_rest(&mut self, cx: &mut Context<'_>) {
        if let Some(feed) = &self.feed {
            if let (Some(rest), _) = feed.take_rest() {
                self.client.send(cx, &rest);
            }
        }
    }

    /// The session as a task: this future is all a relayed connection
    /// holds while it lives (the session, one timer, the drain signal and
    /// the connection-cap permit).
    pub fn run(self, drain: DrainSignal, permit: OwnedSemaphorePermit) -> Running {
        self.metrics.active.inc();
        Running {
            session: self,
            sleep: tokio::time::sleep(Duration::from_secs(3600)),
            drain,
            _permit: permit,
        }
    }

    fn legs(&mut self, from: Side) -> (&mut Leg, &mut Leg) {
        match from {
            Side::Client => (&mut self.client, &mut self.upstream),
            Side::Upstream => (&mut self.upstream, &mut self.client),
        }
    }

    fn limits(&self, from: Side) -> Limits {
        match from {
            Side::Client => self.settings.client_limits,
            Side::Upstream => self.settings.upstream_limits,
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut sleep: Pin<&mut Sleep>,
        mut drain: Pin<&mut DrainSignal>,
    ) -> Poll<Outcome> {
        // The drain future and the timer keep the waker they were last
        // polled with. A spawned task's waker stays the same, so while it
        // does they are polled again only when their moment may have come
        // (each poll clones the waker or takes a lock).
        let waker = (
            cx.waker().data() as usize,
            cx.waker().vtable() as *const _ as usize,
        );
        let same_waker = waker == self.waker;
        self.waker = waker;
        self.feed_clear(false);
        self.feed_rest(cx);
        for _ in 0..TIMER_PASSES_PER_POLL {
            let now = Instant::now();
            // Drain: pick this session's moment within the spread window.
            if !self.draining && drain.as_mut().begun(cx, !same_waker) {
                self.draining = true;
                let spread = self.settings.drain_spread.as_millis() as u64;
                let delay = if spread == 0 {
                    0
                } else {
                    rand::random::<u64>() % spread
                };
                self.drain_at = Some(now + Duration::from_millis(delay));
            }
            if self.finishing {
                if self.poll_finish(cx) {
                    return Poll::Ready(self.outcome());
                }
            } else {
                let mut busy = self.run_io(cx, now);
                self.count(now);
                if self.check_timers(now) {
                    // A timer queued a ping or a Close: send it now, not at
                    // the next wake-up.
                    busy |= self.run_io(cx, now);
                }
                if self.client.done() && self.upstream.done() {
                    self.finishing = true;
                    let deadline = now + self.settings.close_timeout;
                    self.close_deadline =
                        Some(self.close_deadline.map_or(deadline, |d| d.min(deadline)));
                    continue;
                }
                if busy {
                    // Still data to move: yield so other sessions run, then resume.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            let next = self.next_deadline();
            // Re-arm only to move the timer earlier (or once it has fired):
            // a later deadline is found when the early one fires, which
            // keeps timer-wheel updates off the per-message path.
            if next < sleep.deadline() || sleep.is_elapsed() {
                sleep.as_mut().reset(next);
                self.timer_polled = false;
            }
            if self.timer_polled && same_waker {
                self.feed_clear(true);
                return Poll::Pending;
            }
            // Timer arm: a deadline passed (ping due, pong late, idle, drain,
            // close handshake over time); loop to act on it.
            if sleep.as_mut().poll(cx).is_pending() {
                self.timer_polled = true;
                self.feed_clear(true);
                return Poll::Pending;
            }
            if self.finishing && self.close_deadline.is_some_and(|d| d <= Instant::now()) {
                return Poll::Ready(self.outcome());
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn outcome(&self) -> Outcome {
        Outcome {
            client_close: self.client.close_in.flatten(),
            upstream_close: self.upstream.close_in.flatten(),
            reason: self.reason,
        }
    }
}

pin_project_lite::pin_project! {
    /// A running session (see [`Session::run`]).
    pub struct Running {
        session: Session,
        // Timer arm: the next keepalive, idle, drain or close deadline.
        #[pin]
        sleep: Sleep,
        // Drain arm: fires once when the gateway starts draining.
        #[pin]
        drain: DrainSignal,
        // Held for the session's life: one slot of `limits.max_connections`.
        _permit: OwnedSemaphorePermit,
    }
}

impl Future for Running {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.project();
        let session = this.session;
        let outcome = std::task::ready!(session.poll(cx, this.sleep, this.drain));
        if let Some(feed) = session.feed.take() {
            feed.leave();
        }
        let m = &session.metrics;
        m.active.dec();
        m.session.observe(session.started.elapsed().as_secs_f64());
        m.close("client", outcome.client_close);
        m.close("upstream", outcome.upstream_close);
        tracing::debug!(?outcome, "session ended");
        if let Some(a) = &mut session.access {
            a.codes(outcome.client_close, outcome.upstream_close);
            a.closed(closer(outcome.reason), None, outcome.reason);
            a.emit(&m.name, "passthrough", session.started.elapsed());
        }
        Poll::Ready(outcome)
    }
}

/// Who ended the session, from the first cause recorded in `reason`.
fn closer(reason: &str) -> crate::access::Closer {
    use crate::access::Closer;
    if reason.starts_with("client") {
        Closer::Client
    } else if reason.starts_with("upstream") {
        Closer::Upstream
    } else {
        Closer::Gateway
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("reason", &self.reason)
            .finish()
    }
}

#[cfg(test)]
mod tests;
