//! How a session ends: acting on a Close or a protocol violation the
//! scanner found, on a peer that went away, and on the gateway's own
//! decisions (drain, idle, expiry) — and inserting the gateway's own Close
//! and ping frames at frame boundaries.

use super::leg::{GatewayClose, Leg, Side};
use super::scan::Stop;
use super::Session;
use crate::frame::{write_frame, Opcode};
use std::task::Context;
use tokio::time::Instant;

impl Session {
    /// Act on what the scanner stopped at.
    pub(super) fn after_forward(&mut self, from: Side, now: Instant) {
        let (src, dst) = self.legs(from);
        match src.pending_stop.take() {
            None => {}
            Some(Stop::Close(code)) => {
                if self.reason == "closed" {
                    // The first Close decides who ended the session.
                    self.reason = match from {
                        Side::Client => "client closed",
                        Side::Upstream => "upstream closed",
                    };
                }
                let (src, dst) = self.legs(from);
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
                    dst.close_wanted = Some(GatewayClose::to_other_side(
                        from,
                        ["client protocol error", "upstream protocol error"],
                    ));
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
    pub(super) fn on_eof(&mut self, from: Side, now: Instant) {
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
            dst.close_wanted = Some(GatewayClose::to_other_side(
                from,
                ["client went away", "upstream went away"],
            ));
        }
        if self.reason == "closed" {
            self.reason = match from {
                Side::Client => "client went away",
                Side::Upstream => "upstream went away",
            };
        }
        self.start_closing(now);
    }

    pub(super) fn start_closing(&mut self, now: Instant) {
        if self.close_deadline.is_none() {
            self.close_deadline = Some(now + self.settings.close_timeout);
        }
    }

    /// Close both legs with the same code (drain, idle timeout).
    pub(super) fn close_both(&mut self, code: u16, reason: &'static str, now: Instant) {
        self.close_each(code, code, reason, now);
    }

    /// Gateway-initiated close with a code per leg.
    pub(super) fn close_each(
        &mut self,
        client: u16,
        upstream: u16,
        reason: &'static str,
        now: Instant,
    ) {
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
}

/// How much of a scanned prefix of `n` bytes goes to `dst`: all of it,
/// except a Close from `src` when the gateway has its own Close for `dst`
/// (e.g. 1009 after `dst` sent an oversized message): `src`'s Close is the
/// reply to ours, and `dst` must hear the gateway's code, not an echo.
pub(super) fn forwardable(src: &Leg, dst: &Leg, n: usize, stop: Option<Stop>) -> usize {
    match stop {
        Some(Stop::Close(_)) if dst.close_wanted.is_some() => n - src.scanner.close_len(),
        _ => n,
    }
}

/// Insert the gateway's own ping or Close into `dst`'s stream, if one is
/// wanted and the stream is at a frame boundary. Returns `None` if nothing
/// was written, else the Close code sent (0 for a ping alone).
pub(super) fn insert_own_frames(src: &mut Leg, dst: &mut Leg, cx: &mut Context<'_>) -> Option<u16> {
    if dst.dead || dst.close_out || !src.scanner.at_boundary() {
        return None;
    }
    let mut wrote = None;
    if dst.ping_wanted {
        dst.ping_wanted = false;
        let frame = own_frame(Opcode::Ping, &[], dst.masks());
        dst.send(cx, &frame);
        wrote = Some(0);
    }
    if let Some(close) = dst.close_wanted {
        let other_finished = src.close_in.is_some() || src.dead || src.rx_done;
        if !close.after_other || other_finished {
            dst.close_wanted = None;
            dst.close_out = true;
            let code = close.code.to_be_bytes();
            let frame = own_frame(
                Opcode::Close,
                &[&code, close.reason.as_bytes()],
                dst.masks(),
            );
            dst.send(cx, &frame);
            wrote = Some(close.code);
        }
    }
    wrote
}

/// What [`insert_published`] did.
pub(super) enum Inserted {
    Nothing,
    Frames,
    /// The subscriber's queue overflowed under the `close` policy.
    Overflowed,
}

/// Write published fan-out frames to the client, as its own pings are:
/// only at a frame boundary of the upstream's stream and never inside a
/// fragmented message (they wait for its FIN frame), and only while the
/// client takes bytes — otherwise they stay in the subscriber's bounded
/// queue, where the route's slow-subscriber policy applies. A frame is
/// written from its shared bytes; only what the socket does not take is
/// copied into the leg's buffer.
pub(super) fn insert_published(
    src: &Leg,
    dst: &mut Leg,
    feed: &crate::fanout::Subscriber,
    cx: &mut Context<'_>,
) -> Inserted {
    use crate::fanout::Next;
    if dst.dead || dst.close_out || dst.close_wanted.is_some() {
        return Inserted::Nothing;
    }
    if !src.scanner.at_boundary() || src.scanner.in_message() {
        // The next upstream bytes wake the session again.
        return Inserted::Nothing;
    }
    let mut wrote = Inserted::Nothing;
    while !dst.blocked() {
        match feed.next(cx) {
            Next::Frame(f) => {
                feed.hub()
                    .metrics
                    .latency
                    .observe(f.published().elapsed().as_secs_f64());
                dst.send(cx, f.wire());
                wrote = Inserted::Frames;
            }
            Next::Empty => break,
            Next::Overflowed => return Inserted::Overflowed,
        }
    }
    wrote
}

/// Encode a control frame the gateway originates (payload: `parts`
/// joined), masked with a fresh random key towards an upstream, where the
/// gateway is the client (RFC 6455 §5.3).
pub(super) fn own_frame(opcode: Opcode, parts: &[&[u8]], masked: bool) -> Vec<u8> {
    let mut buf = Vec::new();
    write_frame(&mut buf, true, opcode, parts, masked.then(rand::random));
    buf
}
