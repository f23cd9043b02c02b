//! The relay of an edge-compressed session: the client speaks
//! permessage-deflate with the gateway, the upstream plain WebSocket.
//!
//! Unlike the zero-copy relay this path must look inside payloads, so it
//! decodes frames: client frames are unmasked and, when RSV1 says so,
//! inflated — checked against the route's message limit after every step,
//! so a zip bomb ends with 1009 after at most the limit's bytes of output —
//! and sent upstream as masked frames; upstream messages are compressed
//! (unless shorter than `min_size`) and sent to the client with RSV1.
//! Messages stream piece by piece (at most [`CHUNK`] of input at a time);
//! no message is held whole. Control frames pass through re-framed.
//!
//! Kept apart from `relay` so sessions without edge compression keep the
//! byte relay unchanged. It has the relay's duties too (`duties`):
//! keepalive pings with a pong deadline, the idle timeout, token expiry
//! (1008), drain (1001), the close timeout, metrics and the access line.

mod duties;
mod frames;
mod lazy;

use super::codec::{Deflater, Inflater, TAIL};
use super::edge::{EdgeConfig, Reservation, MIN_ZLIB_BITS};
use super::params::{Params, WindowBits, MAX_WINDOW_BITS};
use crate::access::{Closer, Record};
use crate::frame::{check_header, Limits, Violation, RSV1};
use crate::io::Io;
use crate::metrics::RouteMetrics;
use crate::relay::Settings;
use duties::{Activity, Duty, Stamp, CLIENT, UPSTREAM};
use frames::{control, read_header, read_piece, send_close, Emitter, Out, Writer};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Input taken per step: bounds what one piece of a message holds.
pub const CHUNK: usize = 16 * 1024;

/// Read buffer per direction while bytes arrive (none while idle):
/// headers and small frames in one read.
const READ_BUF: usize = 512;

/// Why one direction stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// A Close was forwarded.
    Closed,
    /// The peer's stream ended without a Close, or a write failed.
    Gone,
    /// The peer broke a rule: it is closed with the violation's code.
    Broke(Violation),
    /// The client's compressed data did not inflate (1007).
    BadData,
}

/// Everything an edge session needs besides its sockets.
pub struct EdgeSession {
    pub params: Params,
    pub config: Arc<EdgeConfig>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<RouteMetrics>,
    /// Held for the session's life: its share of `limits.deflate_memory`.
    pub reservation: Reservation,
    /// When the client's credential expires (Close 1008), if it does.
    pub expires_at: Option<Instant>,
    /// The access-log record; `None` unless this session is logged.
    pub access: Option<Box<Record>>,
}

impl EdgeSession {
    /// Relay until both sides closed, one broke the protocol or left, a
    /// timer ended it (keepalive, idle, token expiry), or the gateway
    /// drains.
    pub async fn run(
        mut self,
        (client, upstream): (Io, Io),
        (from_client, from_upstream): (Vec<u8>, Vec<u8>),
        draining: CancellationToken,
    ) {
        self.metrics.active.inc();
        let started = tokio::time::Instant::now();
        let access = self.access.take();
        let activity = Activity::new();
        let (cr, cw) = tokio::io::split(client);
        let (ur, uw) = tokio::io::split(upstream);
        let out = |w| Arc::new(Mutex::new(Out { w, closed: false }));
        let (cw, uw): (Writer, Writer) = (out(cw), out(uw));
        let client_bits = match self.params.client_max_window_bits {
            Some(WindowBits::Bits(b)) => b.max(MIN_ZLIB_BITS),
            _ => MAX_WINDOW_BITS,
        };
        let mut inflater = Inflater::new(client_bits, !self.params.client_no_context_takeover);
        let mut deflater = Deflater::new(
            self.config.level,
            self.params
                .server_max_window_bits
                .unwrap_or(MAX_WINDOW_BITS),
            !self.params.server_no_context_takeover,
        );
        let read = |bytes, r, side| {
            let r = Stamp::new(Cursor::new(bytes).chain(r), &activity, side);
            lazy::LazyBuf::new(READ_BUF, r)
        };
        let c2u = client_to_upstream(
            read(from_client, cr, CLIENT),
            (&uw, &activity),
            &mut inflater,
            &self,
        );
        let u2c = upstream_to_client(
            read(from_upstream, ur, UPSTREAM),
            (&cw, &activity),
            &mut deflater,
            &self,
        );
        let timers = duties::run(&self.settings, self.expires_at, &activity, [&cw, &uw]);
        tokio::pin!(c2u, u2c, timers);
        let close_timeout = self.settings.close_timeout;
        let ended = tokio::select! {
            // Client side ended first: close the upstream accordingly.
            e = &mut c2u => Ended::Direction(CLIENT, e),
            // Upstream side ended first.
            e = &mut u2c => Ended::Direction(UPSTREAM, e),
            // A timer: keepalive, idle timeout, token expiry.
            d = &mut timers => Ended::Timer(d),
            // Drain: both sides hear 1001.
            _ = draining.cancelled() => Ended::Drain,
        };
        let (closer, reason) = self.closer(ended);
        match ended {
            Ended::Direction(side, end) => {
                let (broke, other) = if side == CLIENT {
                    (&cw, &uw)
                } else {
                    (&uw, &cw)
                };
                Box::pin(self.after_end(side == CLIENT, end, broke, other)).await;
                let rest = async {
                    if side == CLIENT {
                        (&mut u2c).await
                    } else {
                        (&mut c2u).await
                    }
                };
                let _ = tokio::time::timeout(close_timeout, rest).await;
            }
            Ended::Timer(Duty::PingTimeout(side)) => {
                // The silent peer hears nothing more; the other is told why.
                let (other, code, why) = if side == CLIENT {
                    self.metrics.ping_timeout_client.inc();
                    (&uw, 1001, "client ping timeout")
                } else {
                    self.metrics.ping_timeout_upstream.inc();
                    (&cw, 1014, "upstream ping timeout")
                };
                Box::pin(send_close(other, side == CLIENT, code, why)).await;
                self.metrics.close("gateway", Some(code));
                let rest = async {
                    if side == CLIENT {
                        (&mut u2c).await
                    } else {
                        (&mut c2u).await
                    }
                };
                let _ = tokio::time::timeout(close_timeout, rest).await;
            }
            Ended::Timer(_) | Ended::Drain => {
                let (client_code, upstream_code) = match ended {
                    Ended::Timer(Duty::Expired) => (1008, 1001),
                    _ => (1001, 1001),
                };
                Box::pin(send_close(&cw, false, client_code, reason)).await;
                Box::pin(send_close(&uw, true, upstream_code, reason)).await;
                self.metrics.close("gateway", Some(client_code));
                let both = async { tokio::join!(&mut c2u, &mut u2c) };
                let _ = tokio::time::timeout(close_timeout, both).await;
            }
        }
        for w in [&cw, &uw] {
            let _ = w.lock().await.w.shutdown().await;
        }
        self.finish(started.elapsed(), &activity, access, (closer, reason));
    }

    /// Who ended the session and why, for the access log.
    fn closer(&self, ended: Ended) -> (Closer, &'static str) {
        match ended {
            Ended::Direction(side, end) => {
                let who = [Closer::Client, Closer::Upstream][side];
                let why = match (end, side == CLIENT) {
                    (End::Closed, true) => "client closed",
                    (End::Closed, false) => "upstream closed",
                    (End::Gone, true) => "client went away",
                    (End::Gone, false) => "upstream went away",
                    (_, true) => "client violation",
                    (_, false) => "upstream violation",
                };
                (who, why)
            }
            Ended::Timer(Duty::Idle) => (Closer::Gateway, "idle timeout"),
            Ended::Timer(Duty::Expired) => (Closer::Gateway, "token expired"),
            Ended::Timer(Duty::PingTimeout(_)) => (Closer::Gateway, "ping timeout"),
            Ended::Drain => (Closer::Gateway, "going away"),
        }
    }

    /// Metrics and the access-log line of a session that ended.
    fn finish(
        &self,
        took: Duration,
        activity: &Activity,
        access: Option<Box<Record>>,
        (closer, reason): (Closer, &'static str),
    ) {
        let m = &self.metrics;
        m.active.dec();
        m.session.observe(took.as_secs_f64());
        let codes = (activity.close_code(CLIENT), activity.close_code(UPSTREAM));
        m.close("client", codes.0);
        m.close("upstream", codes.1);
        if let Some(mut a) = access {
            let load = |v: &[AtomicU64; 2], side: usize| v[side].load(Ordering::Relaxed);
            a.from_client(
                load(&activity.messages, CLIENT),
                load(&activity.bytes, CLIENT),
            );
            a.to_client(
                load(&activity.messages, UPSTREAM),
                load(&activity.bytes, UPSTREAM),
            );
            a.codes(codes.0, codes.1);
            a.closed(closer, None, reason);
            a.emit(&m.name, "edge", took);
        }
    }

    /// One direction ended: tell the side(s) that still listen.
    async fn after_end(&self, from_client: bool, end: End, src: &Writer, dst: &Writer) {
        let (code, reason) = match end {
            End::Closed => return,
            End::Gone if from_client => (1001, "client went away"),
            End::Gone => (1014, "upstream went away"),
            End::BadData => (1007, "invalid compressed data"),
            End::Broke(v) => (v.close_code(), v.reason()),
        };
        if matches!(end, End::Broke(_) | End::BadData) {
            // The sender broke the rules: it hears why.
            send_close(src, !from_client, code, reason).await;
            self.metrics.close("gateway", Some(code));
        }
        let (code, reason) = match (end, from_client) {
            (End::Gone, _) => (code, reason),
            (_, true) => (1001, "client protocol error"),
            (_, false) => (1014, "upstream protocol error"),
        };
        send_close(dst, from_client, code, reason).await;
    }
}

/// What ended the session first.
#[derive(Debug, Clone, Copy)]
enum Ended {
    /// The direction reading this side stopped.
    Direction(usize, End),
    Timer(Duty),
    Drain,
}

/// Client frames: unmask, inflate compressed messages within the limit,
/// send upstream masked.
async fn client_to_upstream<R: AsyncRead + Unpin>(
    mut r: R,
    uw: (&Writer, &Activity),
    inflater: &mut Inflater,
    s: &EdgeSession,
) -> End {
    match client_frames(&mut r, uw, inflater, s).await {
        Ok(()) => End::Closed,
        Err(e) => e,
    }
}

async fn client_frames<R: AsyncRead + Unpin>(
    r: &mut R,
    (uw, activity): (&Writer, &Activity),
    inflater: &mut Inflater,
    s: &EdgeSession,
) -> Result<(), End> {
    let dst = (uw, activity, CLIENT);
    loop {
        // Idle sessions wait here. What handling a frame needs is boxed
        // (made per frame, gone after it), so the session's future —
        // allocated for its whole life — stays small.
        let h = read_header(r).await?;
        let op = check_header(&h, true, false, true).map_err(End::Broke)?;
        let closed = if op.is_control() {
            Box::pin(control(r, &h, op, dst)).await?
        } else {
            Box::pin(client_message(r, h, op, dst, inflater, s)).await?
        };
        if closed {
            return Ok(());
        }
    }
}

/// One client data message, from its first frame `h`: unmasked, inflated
/// when compressed, sent upstream. Ok(true): a Close came in between.
async fn client_message<R: AsyncRead + Unpin>(
    r: &mut R,
    mut h: crate::frame::Header,
    op: crate::frame::Opcode,
    dst: (&Writer, &Activity, usize),
    inflater: &mut Inflater,
    s: &EdgeSession,
) -> Result<bool, End> {
    let limits: Limits = s.settings.client_limits;
    // Its frames follow, controls may interleave.
    let compressed = h.rsv & RSV1 != 0;
    let mut out = Emitter::new(dst, true, op, false);
    let (mut wire, mut plain) = (0u64, 0u64);
    loop {
        limits.check(h.len, wire).map_err(End::Broke)?;
        let mut at = 0u64;
        while at < h.len {
            let n = (h.len - at).min(CHUNK as u64) as usize;
            let piece = read_piece(r, n, Some(h.mask), at).await?;
            at += n as u64;
            if compressed {
                inflate_into(inflater, &piece, &mut out, &mut plain, limits.max_message).await?;
            } else {
                plain += n as u64;
                out.push(piece).await?;
            }
        }
        wire += h.len;
        if h.fin {
            break;
        }
        // Next frame of this message, with controls in between.
        h = loop {
            let next = read_header(r).await?;
            let op = check_header(&next, true, true, true).map_err(End::Broke)?;
            if !op.is_control() {
                break next;
            }
            if control(r, &next, op, dst).await? {
                return Ok(true);
            }
        };
    }
    if compressed {
        inflate_into(inflater, &TAIL, &mut out, &mut plain, limits.max_message).await?;
        inflater.end_message();
        s.metrics.deflate_edge_bytes[0].inc_by(wire);
        s.metrics.deflate_edge_bytes[1].inc_by(plain);
    }
    out.finish().await?;
    s.metrics.messages_c2u.inc();
    s.metrics.bytes_c2u.inc_by(plain);
    dst.1.message(CLIENT, plain);
    Ok(false)
}

/// Inflate `input` step by step, each step's output pushed as a piece;
/// the message's inflated size is checked after every step.
async fn inflate_into(
    inflater: &mut Inflater,
    input: &[u8],
    out: &mut Emitter<'_>,
    plain: &mut u64,
    max_message: u64,
) -> Result<(), End> {
    let mut at = 0;
    loop {
        let mut piece = Vec::with_capacity(CHUNK);
        at += inflater
            .step(&input[at..], &mut piece)
            .map_err(|_| End::BadData)?;
        let full = piece.len() == piece.capacity();
        *plain += piece.len() as u64;
        if *plain > max_message {
            return Err(End::Broke(Violation::TooBig));
        }
        if !piece.is_empty() {
            out.push(piece).await?;
        }
        if at == input.len() && !full {
            return Ok(());
        }
    }
}

/// Upstream frames: compress each data message (unless small), send to
/// the client with RSV1 on its first frame.
async fn upstream_to_client<R: AsyncRead + Unpin>(
    mut r: R,
    cw: (&Writer, &Activity),
    deflater: &mut Deflater,
    s: &EdgeSession,
) -> End {
    match upstream_frames(&mut r, cw, deflater, s).await {
        Ok(()) => End::Closed,
        Err(e) => e,
    }
}

async fn upstream_frames<R: AsyncRead + Unpin>(
    r: &mut R,
    (cw, activity): (&Writer, &Activity),
    deflater: &mut Deflater,
    s: &EdgeSession,
) -> Result<(), End> {
    let dst = (cw, activity, UPSTREAM);
    loop {
        // As on the client side: only the header wait is inline.
        let h = read_header(r).await?;
        let op = check_header(&h, false, false, false).map_err(End::Broke)?;
        let closed = if op.is_control() {
            Box::pin(control(r, &h, op, dst)).await?
        } else {
            Box::pin(upstream_message(r, h, op, dst, deflater, s)).await?
        };
        if closed {
            return Ok(());
        }
    }
}

/// One upstream data message, from its first frame `h`: compressed unless
/// small, sent to the client with RSV1 on its first frame. Ok(true): a
/// Close came in between.
async fn upstream_message<R: AsyncRead + Unpin>(
    r: &mut R,
    mut h: crate::frame::Header,
    op: crate::frame::Opcode,
    dst: (&Writer, &Activity, usize),
    deflater: &mut Deflater,
    s: &EdgeSession,
) -> Result<bool, End> {
    let limits: Limits = s.settings.upstream_limits;
    let compress = !(h.fin && h.len < s.config.min_size);
    let mut out = Emitter::new(dst, false, op, compress);
    let mut plain = 0u64;
    loop {
        limits.check(h.len, plain).map_err(End::Broke)?;
        let mut at = 0u64;
        loop {
            let n = (h.len - at).min(CHUNK as u64) as usize;
            let piece = read_piece(r, n, None, at).await?;
            at += n as u64;
            let last = h.fin && at == h.len;
            out.push(if compress {
                deflater.piece(&piece, last)
            } else {
                piece
            })
            .await?;
            if at == h.len {
                break;
            }
        }
        plain += h.len;
        if h.fin {
            break;
        }
        h = loop {
            let next = read_header(r).await?;
            let op = check_header(&next, false, true, false).map_err(End::Broke)?;
            if !op.is_control() {
                break next;
            }
            if control(r, &next, op, dst).await? {
                return Ok(true);
            }
        };
    }
    let sent = out.finish().await?;
    if compress {
        s.metrics.deflate_edge_bytes[2].inc_by(plain);
        s.metrics.deflate_edge_bytes[3].inc_by(sent);
    }
    s.metrics.messages_u2c.inc();
    s.metrics.bytes_u2c.inc_by(plain);
    dst.1.message(UPSTREAM, plain);
    Ok(false)
}

/// Edge compression's answer for a client: `Some((params, reservation))`
/// when the route compresses at the edge, the client offered something
/// the gateway can honour and the memory budget has room.
pub fn negotiate(
    config: &EdgeConfig,
    offers: &[Params],
    budget: &Arc<super::Budget>,
    metrics: &RouteMetrics,
) -> Option<(Params, Reservation)> {
    let params = config.answer(offers)?;
    match budget.reserve(super::edge::session_memory(&params)) {
        Some(r) => {
            metrics.deflate_edge.inc();
            Some((params, r))
        }
        None => {
            metrics.deflate_declined.inc();
            None
        }
    }
}

#[cfg(test)]
mod tests;
