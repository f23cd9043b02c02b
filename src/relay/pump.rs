//! The I/O half of a passthrough session: move bytes both ways through the
//! per-thread scratch buffer, scan what passes, keep what the other side
//! cannot take yet (backpressure), tally it, and finish both sockets once
//! the close handshakes are done.

use super::close::Inserted;
use super::leg::{Leg, Side};
use super::scan::Limits;
use super::{close, Session, ROUNDS_PER_POLL, SCRATCH_BUF};
use crate::fanout::Closing;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

impl Session {
    /// Move bytes both ways until nothing moves. Returns true if it stopped
    /// only because the round budget ran out.
    pub(super) fn run_io(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        // A leg whose read came back Pending has the waker registered;
        // asking it again within this poll would only register it again.
        let mut waiting = [false; 2];
        for _ in 0..ROUNDS_PER_POLL {
            let a = self.pump(Side::Client, cx, now, &mut waiting[0]);
            let b = self.pump(Side::Upstream, cx, now, &mut waiting[1]);
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
    /// `waiting`: `from` has no data for this poll (set when its read is
    /// Pending).
    fn pump(&mut self, from: Side, cx: &mut Context<'_>, now: Instant, waiting: &mut bool) -> bool {
        let limits = self.limits(from);
        // Field-wise split so `self.metrics` stays usable below.
        let (src, dst) = match from {
            Side::Client => (&mut self.client, &mut self.upstream),
            Side::Upstream => (&mut self.upstream, &mut self.client),
        };
        let was_blocked = dst.blocked();
        let mut progress = dst.flush(cx);
        if was_blocked && progress {
            // The peer takes what had backed up: it is alive (keepalive).
            dst.last_rx = now;
        }
        if dst.blocked() {
            // A subscriber whose client does not read still hears of its
            // overflow (`close` policy).
            if let (Side::Upstream, Some(feed)) = (from, &self.feed) {
                if feed.overflowed(cx) {
                    self.subscriber_closes(now);
                    return true;
                }
            }
            // Backpressure: do not read what cannot be passed on.
            return progress;
        }
        if let Some(code) = close::insert_own_frames(src, dst, cx) {
            progress = true;
            if code != 0 {
                self.metrics.close("gateway", Some(code));
            }
        }
        if let (Side::Upstream, Some(feed)) = (from, &self.feed) {
            match close::insert_published(src, dst, feed, cx) {
                Inserted::Nothing => {}
                Inserted::Frames => progress = true,
                Inserted::Overflowed => {
                    self.subscriber_closes(now);
                    return true;
                }
            }
        }
        if dst.blocked() || src.rx_done || src.rx_stopped || *waiting {
            return progress;
        }
        let read = SCRATCH_BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            let pre = src.scanner.copy_stash(&mut buf);
            let mut rb = ReadBuf::new(&mut buf[pre..]);
            match Pin::new(&mut src.io).poll_read(cx, &mut rb) {
                Poll::Pending => Read::Pending,
                Poll::Ready(Err(_)) => Read::Eof,
                Poll::Ready(Ok(())) if rb.filled().is_empty() => Read::Eof,
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    src.last_rx = now;
                    forward_chunk(src, dst, &buf[..pre + n], limits, cx);
                    Read::Data
                }
            }
        });
        match read {
            Read::Pending => {
                *waiting = true;
                progress
            }
            Read::Eof => {
                self.on_eof(from, now);
                true
            }
            Read::Data => {
                self.after_forward(from, now);
                true
            }
        }
    }

    /// The subscriber must close (the `close` slow-subscriber policy, or
    /// a lost direct send): close once, and leave the channels so nothing
    /// more is queued.
    fn subscriber_closes(&mut self, now: Instant) {
        let Some(feed) = self.feed.take() else {
            return;
        };
        let why = feed.closing();
        if why == Closing::Slow {
            feed.hub().metrics.slow_closes.inc();
        }
        feed.leave();
        self.close_each(why.code(), 1001, why.reason(), now);
    }

    /// Bytes received before the relay started.
    pub(super) fn preload(&mut self, from: Side, data: &[u8], now: Instant) {
        if data.is_empty() {
            return;
        }
        let limits = self.limits(from);
        let (src, dst) = self.legs(from);
        let (n, stop) = src.scanner.scan(data, limits);
        dst.queue(&data[..close::forwardable(src, dst, n, stop)]);
        src.pending_stop = stop;
        self.after_forward(from, now);
    }

    /// Flush the per-connection tallies into the route's counters.
    pub(super) fn count(&mut self, now: Instant) {
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
        if let Some(a) = &mut self.access {
            a.from_client(m_c2u, b_c2u);
            a.to_client(m_u2c, b_u2c);
        }
    }

    /// Both close handshakes are over: the server side (client leg) closes
    /// its TCP connection first; on the upstream leg, where the gateway is
    /// the client, wait for the upstream to close (RFC 6455 §7.1.1).
    pub(super) fn poll_finish(&mut self, cx: &mut Context<'_>) -> bool {
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

/// Scan a chunk read from `src` and pass on what the scanner allows; what
/// it stopped at is acted on by `after_forward` once `src`/`dst` are free.
fn forward_chunk(src: &mut Leg, dst: &mut Leg, chunk: &[u8], limits: Limits, cx: &mut Context<'_>) {
    let (n, stop) = src.scanner.scan(chunk, limits);
    // After a Close to `dst` nothing else may follow it.
    if !dst.close_out {
        dst.send(cx, &chunk[..close::forwardable(src, dst, n, stop)]);
    }
    src.pending_stop = stop;
}

/// What one read from a leg gave.
enum Read {
    Pending,
    /// End of stream or a read error.
    Eof,
    /// Bytes were read and passed on.
    Data,
}
