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

pub mod leg;
pub mod scan;

use crate::io::Io;
use crate::metrics::RouteMetrics;
use leg::{GatewayClose, Leg, Side};
use scan::{Limits, Stop};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Bytes read per system call: a typical message in one read.
pub const SCRATCH: usize = 64 * 1024;

/// Rounds of read/write per wake-up before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 32;

thread_local! {
    /// Shared by every session on this worker thread; only borrowed inside
    /// one synchronous poll, never across an await.
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; scan::MAX_STASH + SCRATCH]);
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
    /// Both close handshakes are done; shutting sockets down.
    finishing: bool,
    client_shut: bool,
    /// First cause of the end, for logs.
    reason: &'static str,
}

impl Session {
    /// `from_client` / `from_upstream`: bytes that arrived behind the
    /// handshakes and must be relayed first.
    pub fn new(
        client: Io,
        upstream: Io,
        from_client: &[u8],
        from_upstream: &[u8],
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
            finishing: false,
            client_shut: false,
            reason: "closed",
        };
        s.preload(Side::Client, from_client, now);
        s.preload(Side::Upstream, from_upstream, now);
        s
    }

    /// End the session when the client's credential expires.
    pub fn expire_at(mut self, at: Option<Instant>) -> Session {
        self.expires_at = at;
        self
    }

    /// The session as a task: this future is all a relayed connection
    /// holds while it lives (the session, one timer, the drain signal and
    /// the connection-cap permit).
    pub fn run(self, shutdown: CancellationToken, permit: OwnedSemaphorePermit) -> Running {
        self.metrics.active.inc();
        Running {
            session: self,
            sleep: tokio::time::sleep(Duration::from_secs(3600)),
            cancelled: shutdown.cancelled_owned(),
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
        mut cancelled: Pin<&mut WaitForCancellationFutureOwned>,
    ) -> Poll<Outcome> {
        for _ in 0..4 {
            let now = Instant::now();
            // Drain: pick this session's moment within the spread window.
            if !self.draining && cancelled.as_mut().poll(cx).is_ready() {
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
            }
            // Timer arm: a deadline passed (ping due, pong late, idle, drain,
            // close handshake over time); loop to act on it.
            if sleep.as_mut().poll(cx).is_pending() {
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

    /// Move bytes both ways until nothing moves. Returns true if it stopped
    /// only because the round budget ran out.
    fn run_io(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        for _ in 0..ROUNDS_PER_POLL {
            let a = self.pump(Side::Client, cx, now);
            let b = self.pump(Side::Upstream, cx, now);
            if !(a || b) {
                return false;
            }
            if self.client.done() && self.upstream.done() {
                return false;
            }
        }
        true
    }

    /// One step from `from` to the other leg. Returns true on progress.
    fn pump(&mut self, from: Side, cx: &mut Context<'_>, now: Instant) -> bool {
        let limits = self.limits(from);
        // Field-wise split so `self.metrics` stays usable below.
        let (src, dst) = match from {
            Side::Client => (&mut self.client, &mut self.upstream),
            Side::Upstream => (&mut self.upstream, &mut self.client),
        };
        let mut progress = dst.flush(cx);
        if dst.blocked() {
            // Backpressure: do not read what cannot be passed on.
            return progress;
        }
        if let Some(code) = insert_own_frames(src, dst, cx) {
            progress = true;
            if code != 0 {
                self.metrics.close("gateway", Some(code));
            }
        }
        if dst.blocked() || src.rx_done || src.rx_stopped {
            return progress;
        }
        let read = SCRATCH_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            let pre = src.scanner.copy_stash(&mut buf);
            let mut rb = ReadBuf::new(&mut buf[pre..]);
            match Pin::new(&mut src.io).poll_read(cx, &mut rb) {
                Poll::Pending => None,
                Poll::Ready(Err(_)) => Some(0),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n > 0 {
                        src.last_rx = now;
                        let chunk = &buf[..pre + n];
                        Some(self_forward(src, dst, chunk, limits, cx))
                    } else {
                        Some(0)
                    }
                }
            }
        });
        match read {
            None => progress,
            Some(0) => {
                self.on_eof(from, now);
                true
            }
            Some(_) => {
                self.after_forward(from, now);
                true
            }
        }
    }

    /// Bytes received before the relay started.
    fn preload(&mut self, from: Side, data: &[u8], now: Instant) {
        if data.is_empty() {
            return;
        }
        let limits = self.limits(from);
        let (src, dst) = self.legs(from);
        let (n, stop) = src.scanner.scan(data, limits);
        dst.queue(&data[..forwardable(src, dst, n, stop)]);
        src.pending_stop = stop;
        self.after_forward(from, now);
    }

    /// Act on what the scanner stopped at.
    fn after_forward(&mut self, from: Side, now: Instant) {
        let (src, dst) = self.legs(from);
        match src.pending_stop.take() {
            None => {}
            Some(Stop::Close(code)) => {
                src.close_in = Some(code);
                src.rx_stopped = true;
                if !dst.close_out && !dst.dead && dst.close_wanted.is_none() {
                    // The close went through with the bytes before it.
                    dst.close_out = true;
                }
                self.start_closing(now);
            }
            Some(Stop::Violation(v)) => {
                src.rx_stopped = true;
                src.close_wanted = Some(GatewayClose {
                    code: v.close_code(),
                    reason: v.reason(),
                    after_other: true,
                });
                if !dst.close_out {
                    dst.close_wanted = Some(match from {
                        Side::Client => GatewayClose {
                            code: 1001,
                            reason: "client protocol error",
                            after_other: false,
                        },
                        Side::Upstream => GatewayClose {
                            code: 1014,
                            reason: "upstream protocol error",
                            after_other: false,
                        },
                    });
                }
                self.reason = match from {
                    Side::Client => "client violation",
                    Side::Upstream => "upstream violation",
                };
                self.start_closing(now);
            }
        }
    }

    /// A peer's stream ended (EOF or error).
    fn on_eof(&mut self, from: Side, now: Instant) {
        let (src, dst) = self.legs(from);
        src.rx_done = true;
        if src.close_in.is_some() {
            return;
        }
        // Gone without a close: nothing more can reach it.
        src.kill();
        if !src.scanner.at_boundary() {
            // It died inside a frame; the other side cannot be sent a clean
            // Close after half a frame.
            dst.kill();
        } else if !dst.close_out {
            dst.close_wanted = Some(match from {
                Side::Client => GatewayClose {
                    code: 1001,
                    reason: "client went away",
                    after_other: false,
                },
                Side::Upstream => GatewayClose {
                    code: 1014,
                    reason: "upstream went away",
                    after_other: false,
                },
            });
        }
        if self.reason == "closed" {
            self.reason = match from {
                Side::Client => "client went away",
                Side::Upstream => "upstream went away",
            };
        }
        self.start_closing(now);
    }

    fn start_closing(&mut self, now: Instant) {
        if self.close_deadline.is_none() {
            self.close_deadline = Some(now + self.settings.close_timeout);
        }
    }

    /// Close both legs with the same code (drain, idle timeout).
    fn close_both(&mut self, code: u16, reason: &'static str, now: Instant) {
        self.close_each(code, code, reason, now);
    }

    /// Gateway-initiated close with a code per leg.
    fn close_each(&mut self, client: u16, upstream: u16, reason: &'static str, now: Instant) {
        for (leg, code) in [(&mut self.client, client), (&mut self.upstream, upstream)] {
            if !leg.close_out && !leg.dead {
                leg.close_wanted = Some(GatewayClose {
                    code,
                    reason,
                    after_other: false,
                });
            }
        }
        self.reason = reason;
        self.start_closing(now);
    }

    /// Flush the per-connection tallies into the route's counters.
    fn count(&mut self, now: Instant) {
        let (m_c2u, b_c2u) = self.client.scanner.take_tally();
        let (m_u2c, b_u2c) = self.upstream.scanner.take_tally();
        if m_c2u + m_u2c > 0 {
            self.last_data = now;
        }
        if m_c2u > 0 {
            self.metrics.messages_c2u.inc_by(m_c2u);
        }
        if m_u2c > 0 {
            self.metrics.messages_u2c.inc_by(m_u2c);
        }
        if b_c2u > 0 {
            self.metrics.bytes_c2u.inc_by(b_c2u);
        }
        if b_u2c > 0 {
            self.metrics.bytes_u2c.inc_by(b_u2c);
        }
    }

    /// Act on passed deadlines. Returns true if a frame was queued.
    fn check_timers(&mut self, now: Instant) -> bool {
        let mut queued = false;
        if self.drain_at.is_some_and(|t| t <= now) {
            self.drain_at = None;
            self.close_both(1001, "going away", now);
            queued = true;
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            self.expires_at = None;
            if self.close_deadline.is_none() {
                self.close_each(1008, 1001, "token expired", now);
                queued = true;
            }
        }
        if let Some(d) = self.close_deadline {
            if d <= now {
                // The closing handshake took too long: tear down.
                self.client.kill();
                self.upstream.kill();
            }
            // While closing, keepalive and idle no longer apply.
            return queued;
        }
        if let Some(idle) = self.settings.idle_timeout {
            if now.duration_since(self.last_data) >= idle {
                self.close_both(1001, "idle timeout", now);
                return true;
            }
        }
        let Some(interval) = self.settings.ping_interval else {
            return queued;
        };
        let pong_timeout = self.settings.pong_timeout;
        for side in [Side::Client, Side::Upstream] {
            let (leg, other) = self.legs(side);
            if let Some(sent) = leg.ping_sent {
                if leg.last_rx > sent {
                    leg.ping_sent = None;
                } else if now.duration_since(sent) >= pong_timeout {
                    leg.ping_sent = None;
                    leg.kill();
                    leg.rx_done = true;
                    if !other.close_out {
                        other.close_wanted = Some(match side {
                            Side::Client => GatewayClose {
                                code: 1001,
                                reason: "client ping timeout",
                                after_other: false,
                            },
                            Side::Upstream => GatewayClose {
                                code: 1014,
                                reason: "upstream ping timeout",
                                after_other: false,
                            },
                        });
                    }
                    match side {
                        Side::Client => self.metrics.ping_timeout_client.inc(),
                        Side::Upstream => self.metrics.ping_timeout_upstream.inc(),
                    }
                    self.reason = "ping timeout";
                    self.start_closing(now);
                    return true;
                }
            }
            if leg.ping_sent.is_none() && now.duration_since(leg.last_rx) >= interval {
                leg.ping_wanted = true;
                leg.ping_sent = Some(now);
                queued = true;
            }
        }
        queued
    }

    /// The earliest moment a timer must look again.
    fn next_deadline(&self) -> Instant {
        let far = self.started + Duration::from_secs(365 * 24 * 3600);
        let mut next = far;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = next.min(t);
            }
        };
        consider(self.drain_at);
        consider(self.expires_at);
        consider(self.close_deadline);
        if self.close_deadline.is_none() {
            consider(self.settings.idle_timeout.map(|i| self.last_data + i));
            if let Some(interval) = self.settings.ping_interval {
                for leg in [&self.client, &self.upstream] {
                    consider(Some(match leg.ping_sent {
                        Some(sent) => sent + self.settings.pong_timeout,
                        None => leg.last_rx + interval,
                    }));
                }
            }
        }
        next
    }

    /// Both close handshakes are over: the server side (client leg) closes
    /// its TCP connection first; on the upstream leg, where the gateway is
    /// the client, wait for the upstream to close (RFC 6455 §7.1.1).
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.client_shut && !self.client.dead {
            match Pin::new(&mut self.client.io).poll_shutdown(cx) {
                Poll::Ready(_) => self.client_shut = true,
                Poll::Pending => {}
            }
        }
        while !self.upstream.rx_done && !self.upstream.dead {
            let r = SCRATCH_BUF.with(|cell| {
                let mut buf = cell.borrow_mut();
                let mut rb = ReadBuf::new(&mut buf[..]);
                match Pin::new(&mut self.upstream.io).poll_read(cx, &mut rb) {
                    Poll::Pending => None,
                    Poll::Ready(Ok(())) if !rb.filled().is_empty() => Some(false),
                    Poll::Ready(_) => Some(true),
                }
            });
            match r {
                None => break,
                Some(eof) => self.upstream.rx_done = eof,
            }
        }
        (self.client_shut || self.client.dead) && (self.upstream.rx_done || self.upstream.dead)
    }
}

/// Forward what the scanner allows from a chunk read from `src`.
fn self_forward(
    src: &mut Leg,
    dst: &mut Leg,
    chunk: &[u8],
    limits: Limits,
    cx: &mut Context<'_>,
) -> usize {
    let (n, stop) = src.scanner.scan(chunk, limits);
    // After a Close to `dst` nothing else may follow it.
    if !dst.close_out {
        dst.send(cx, &chunk[..forwardable(src, dst, n, stop)]);
    }
    src.pending_stop = stop;
    chunk.len().max(1)
}

/// How much of a scanned prefix of `n` bytes goes to `dst`: all of it,
/// except a Close from `src` when the gateway has its own Close for `dst`
/// (e.g. 1009 after `dst` sent an oversized message): `src`'s Close is the
/// reply to ours, and `dst` must hear the gateway's code, not an echo.
fn forwardable(src: &Leg, dst: &Leg, n: usize, stop: Option<Stop>) -> usize {
    match stop {
        Some(Stop::Close(_)) if dst.close_wanted.is_some() => n - src.scanner.close_len(),
        _ => n,
    }
}

/// Insert the gateway's own ping or Close into `dst`'s stream, if one is
/// wanted and the stream is at a frame boundary. Returns `None` if nothing
/// was written, else the Close code sent (0 for a ping alone).
fn insert_own_frames(src: &mut Leg, dst: &mut Leg, cx: &mut Context<'_>) -> Option<u16> {
    if dst.dead || dst.close_out || !src.scanner.at_boundary() {
        return None;
    }
    let mut wrote = None;
    if dst.ping_wanted {
        dst.ping_wanted = false;
        let frame = own_frame(
            fastwebsockets::Frame::new(
                true,
                fastwebsockets::OpCode::Ping,
                None,
                fastwebsockets::Payload::Borrowed(&[]),
            ),
            dst.masks(),
        );
        dst.send(cx, &frame);
        wrote = Some(0);
    }
    if let Some(close) = dst.close_wanted {
        let other_finished = src.close_in.is_some() || src.dead || src.rx_done;
        if !close.after_other || other_finished {
            dst.close_wanted = None;
            dst.close_out = true;
            let frame = own_frame(
                fastwebsockets::Frame::close(close.code, close.reason.as_bytes()),
                dst.masks(),
            );
            dst.send(cx, &frame);
            wrote = Some(close.code);
        }
    }
    wrote
}

/// Encode a frame the gateway originates, masked towards an upstream.
fn own_frame(mut frame: fastwebsockets::Frame<'_>, masked: bool) -> Vec<u8> {
    if masked {
        frame.mask();
    }
    let mut buf = Vec::new();
    let len = frame.write(&mut buf).len();
    buf.truncate(len);
    buf
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
        cancelled: WaitForCancellationFutureOwned,
        // Held for the session's life: one slot of `limits.max_connections`.
        _permit: OwnedSemaphorePermit,
    }
}

impl Future for Running {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.project();
        let session = this.session;
        let outcome = std::task::ready!(session.poll(cx, this.sleep, this.cancelled));
        let m = &session.metrics;
        m.active.dec();
        m.session.observe(session.started.elapsed().as_secs_f64());
        m.close("client", outcome.client_close);
        m.close("upstream", outcome.upstream_close);
        tracing::debug!(?outcome, "session ended");
        Poll::Ready(outcome)
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
