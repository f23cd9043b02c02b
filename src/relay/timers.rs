//! The session's timers: keepalive pings and pong deadlines on both legs,
//! the idle timeout, token expiry, the drain moment and the limit on the
//! closing handshake — all served by the one `Sleep` in `Running`.
//!
//! Keepalive judges a peer only on what the peer could have done: a leg the
//! gateway itself stopped reading (backpressure from the other leg), or one
//! whose ping the gateway could not send yet, is not timed out for the
//! silence that follows (issue #22).

use super::leg::{GatewayClose, Leg, Side};
use super::Session;
use std::time::Duration;
use tokio::time::Instant;

impl Session {
    /// Act on passed deadlines. Returns true if a frame was queued.
    pub(super) fn check_timers(&mut self, now: Instant) -> bool {
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
                } else if now.duration_since(sent) >= pong_timeout
                    && silence_is_ours(leg, other, sent)
                {
                    // Not the peer's fault: wait a full pong timeout more.
                    leg.ping_sent = Some(now);
                } else if now.duration_since(sent) >= pong_timeout {
                    leg.ping_sent = None;
                    leg.kill();
                    leg.rx_done = true;
                    if !other.close_out {
                        other.close_wanted = Some(GatewayClose::to_other_side(
                            side,
                            ["client ping timeout", "upstream ping timeout"],
                        ));
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
    pub(super) fn next_deadline(&self) -> Instant {
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
}

/// True when a pinged leg's missing pong may be the gateway's own doing, so
/// its pong deadline starts again instead of closing the session (the rule
/// is [`silence_excused`]; here are the legs' facts for it).
fn silence_is_ours(leg: &Leg, other: &Leg, sent: Instant) -> bool {
    let paused = other.blocked();
    let unsent = leg.ping_wanted && other.last_rx >= sent;
    silence_excused(leg.blocked(), paused, unsent)
}

/// The keepalive rule of both relays (this one and the edge-compression
/// relay): a peer that has not answered a ping in time is excused when
///
/// - it is *paused*: the gateway does not read it while the other side
///   holds bytes it has not taken, so a pong the peer sent may be waiting in
///   our own receive buffer (a slow upstream must not get a fast uploader
///   closed, nor a slow client a fast upstream);
/// - the ping is still *unsent*: it waits behind a frame in the other
///   side's stream, and that frame is still on its way, so the peer has not
///   been asked yet.
///
/// Both only while the peer itself takes our bytes (`blocked`: nothing
/// waits for it): a peer that neither reads what we send nor gets read is
/// judged as before, so two stalled peers cannot hold a session open
/// forever (nor can two that both stop in the middle of a frame). A slow
/// reader that does read proves itself alive through its last sign of life
/// (bytes it took count as one).
pub(crate) fn silence_excused(blocked: bool, paused: bool, unsent: bool) -> bool {
    !blocked && (paused || unsent)
}
