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
//! no message is held whole. Control frames pass through re-framed, but
//! for the pongs that answer the gateway's own pings.
//!
//! Kept apart from `relay` so sessions without edge compression keep the
//! byte relay unchanged. It has the relay's duties too (`duties`):
//! keepalive pings with a pong deadline, the idle timeout, token expiry
//! (1008), drain (1001), the close timeout, metrics and the access line.
//!
//! This file holds the session's shape — what runs when, how it ends;
//! `direction` reads one side's frames, `message` carries one data message
//! through its codec, `frames` writes and reads frames.

mod direction;
mod duties;
mod frames;
mod lazy;
mod message;

use super::codec::{Deflater, Inflater};
use super::edge::{EdgeConfig, Reservation, MIN_ZLIB_BITS};
use super::params::{Params, WindowBits, MAX_WINDOW_BITS};
use crate::access::{Closer, Record};
use crate::frame::Violation;
use crate::io::Io;
use crate::metrics::RouteMetrics;
use crate::relay::Settings;
use duties::{Activity, Duty, Stamp, CLIENT, UPSTREAM};
use frames::{send_close, writer, Way, Writer};
use message::Codec;
use std::future::Future;
use std::io::Cursor;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
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
    /// Fan-out: the channels this session is subscribed to. Published
    /// messages go to the client between the upstream's messages,
    /// compressed like them (`direction`, `message::published`).
    pub feed: Option<Arc<crate::fanout::Subscriber>>,
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
        let started = Instant::now();
        let access = self.access.take();
        let activity = Arc::new(Activity::new());
        let (cr, cw) = tokio::io::split(client);
        let (ur, uw) = tokio::io::split(upstream);
        let (cw, uw) = (
            writer(cw, CLIENT, &activity),
            writer(uw, UPSTREAM, &activity),
        );
        let (mut inflater, mut deflater) = self.codecs();
        let read = |bytes, r, side| {
            let r = Stamp::new(Cursor::new(bytes).chain(r), &activity, side);
            lazy::LazyBuf::new(READ_BUF, r)
        };
        let way = |dst, from| Way {
            dst,
            activity: &activity,
            from,
        };
        // The directions and the timers live in this block: a write
        // they were waiting in when the session ended holds its writer,
        // so they are gone before the writers are shut down below.
        let ended = {
            let c2u = direction::run(
                read(from_client, cr, CLIENT),
                way(&uw, CLIENT),
                Codec::Inflate(&mut inflater),
                &self,
            );
            let u2c = direction::run(
                read(from_upstream, ur, UPSTREAM),
                way(&cw, UPSTREAM),
                Codec::Deflate(&mut deflater, self.config.min_size),
                &self,
            );
            let timers = duties::run(&self.settings, self.expires_at, &activity, [&cw, &uw]);
            tokio::pin!(c2u, u2c, timers);
            let ended = tokio::select! {
                // Client side ended first: close the upstream accordingly.
                e = &mut c2u => Ended::Direction(CLIENT, e),
                // Upstream side ended first.
                e = &mut u2c => Ended::Direction(UPSTREAM, e),
                // A timer: keepalive, idle timeout, token expiry.
                d = &mut timers => Ended::Timer(d),
                // Drain: both sides hear 1001.
                _ = draining.cancelled() => Ended::Drain,
                // Fan-out, `close` policy: the client fell too far behind.
                () = self.overflow() => Ended::SlowSubscriber,
            };
            // Boxed: only the ending session holds what closing it needs.
            Box::pin(self.wind_down(ended, [&cw, &uw], [c2u, u2c])).await;
            ended
        };
        for w in [&cw, &uw] {
            // Bounded: a TLS peer that does not read cannot take the
            // close_notify either.
            let shutdown = async { w.lock().await.shutdown().await };
            let _ = tokio::time::timeout(self.settings.close_timeout, shutdown).await;
        }
        self.finish(started.elapsed(), &activity, access, self.closer(ended));
    }

    /// Ready when the fan-out queue overflowed under the `close` policy,
    /// whether or not the client takes bytes; never without a feed.
    async fn overflow(&self) {
        match &self.feed {
            Some(feed) => {
                std::future::poll_fn(|cx| match feed.overflowed(cx) {
                    true => std::task::Poll::Ready(()),
                    false => std::task::Poll::Pending,
                })
                .await
            }
            None => std::future::pending().await,
        }
    }

    /// The inflater of the client's messages and the deflater of the
    /// upstream's, by the negotiated parameters.
    fn codecs(&self) -> (Inflater, Deflater) {
        let p = &self.params;
        let client_bits = match p.client_max_window_bits {
            Some(WindowBits::Bits(b)) => b.max(MIN_ZLIB_BITS),
            _ => MAX_WINDOW_BITS,
        };
        let server_bits = p.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS);
        (
            Inflater::new(client_bits, !p.client_no_context_takeover),
            Deflater::new(
                self.config.level,
                server_bits,
                !p.server_no_context_takeover,
            ),
        )
    }

    /// The session ended as `ended` says: tell the sides that still listen,
    /// and give the direction(s) still running (`dirs`, by the side they
    /// read) the close timeout to finish the closing handshake. The
    /// gateway's own Closes go out while those directions run, under the
    /// same timeout: a direction writing to a peer that does not read holds
    /// that peer's writer, and a Close must queue behind its frame, not
    /// wait for it forever (a slow subscriber, a drain).
    async fn wind_down(
        &self,
        ended: Ended,
        writers: [&Writer; 2],
        mut dirs: [Pin<&mut (dyn Future<Output = End> + Send + '_)>; 2],
    ) {
        let closes = self.gateway_closes(ended, writers);
        let [c2u, u2c] = &mut dirs;
        let running = async {
            match ended {
                // The direction reading `side` is done (or its peer is
                // silent): the other one finishes.
                Ended::Direction(side, _) | Ended::Timer(Duty::PingTimeout(side)) => {
                    let _ = [c2u, u2c][1 - side].as_mut().await;
                }
                _ => {
                    tokio::join!(c2u.as_mut(), u2c.as_mut());
                }
            }
        };
        let both = async { tokio::join!(closes, running) };
        let _ = tokio::time::timeout(self.settings.close_timeout, both).await;
    }

    /// The Closes of the gateway's own for the way the session ended, and
    /// their metrics.
    async fn gateway_closes(&self, ended: Ended, [cw, uw]: [&Writer; 2]) {
        match ended {
            Ended::Direction(side, end) => {
                let (src, dst) = if side == CLIENT { (cw, uw) } else { (uw, cw) };
                self.after_end(side == CLIENT, end, src, dst).await;
            }
            Ended::Timer(Duty::PingTimeout(side)) => {
                // The silent peer hears nothing more; the other is told why.
                let (other, code, why) = if side == CLIENT {
                    self.metrics.ping_timeout_client.inc();
                    (uw, 1001, "client ping timeout")
                } else {
                    self.metrics.ping_timeout_upstream.inc();
                    (cw, 1014, "upstream ping timeout")
                };
                self.metrics.close("gateway", Some(code));
                send_close(other, side == CLIENT, code, why).await;
            }
            Ended::Timer(_) | Ended::Drain | Ended::SlowSubscriber => {
                let (client_code, upstream_code) = match ended {
                    Ended::Timer(Duty::Expired) | Ended::SlowSubscriber => (1008, 1001),
                    _ => (1001, 1001),
                };
                if let (Ended::SlowSubscriber, Some(feed)) = (ended, &self.feed) {
                    feed.hub().metrics.slow_closes.inc();
                    feed.leave();
                }
                let reason = self.closer(ended).1;
                self.metrics.close("gateway", Some(client_code));
                tokio::join!(
                    send_close(cw, false, client_code, reason),
                    send_close(uw, true, upstream_code, reason)
                );
            }
        }
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
            Ended::SlowSubscriber => (Closer::Gateway, "slow subscriber"),
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
        if let Some(feed) = &self.feed {
            // Unsubscribed from every channel (the gauge goes back down).
            feed.leave();
        }
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
            self.metrics.close("gateway", Some(code));
            send_close(src, !from_client, code, reason).await;
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
    /// The fan-out queue overflowed (`close` policy): 1008 to the client.
    SlowSubscriber,
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
