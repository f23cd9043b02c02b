//! The session's own deadlines: the token's expiry and the drain moment
//! (the gateway's Close), the keepalive ping and its pong timeout, and
//! the next moment the session's single timer must fire.

use super::MuxSession;
use crate::access::Closer;
use crate::frame::Opcode;
use bytes::Bytes;
use std::time::Duration;
use tokio::time::Instant;

impl MuxSession {
    pub(super) fn timers(&mut self, now: Instant) {
        if let Some(at) = self.close_at {
            if now >= at && !self.close_sent {
                let (code, reason) = if self.expiring {
                    (1008, "token expired")
                } else {
                    (1001, "gateway draining")
                };
                let why = if self.expiring {
                    "token expired"
                } else {
                    "going away"
                };
                self.log_close(Closer::Gateway, None, why);
                self.close_client(code, reason, now);
                self.close_app(code, reason);
            }
        }
        if let Some(idle) = self.route.idle_timeout {
            if now >= self.last_data() + idle && !self.close_sent {
                self.log_close(Closer::Gateway, None, "idle timeout");
                self.close_client(1001, "idle timeout", now);
                self.close_app(1001, "idle timeout");
            }
        }
        if let Some(interval) = self.route.ping_interval {
            match self.ping_sent {
                true if now >= self.last_rx + self.route.pong_timeout
                    && !self.close_sent
                    && self.client_paused()
                    && self.out_empty() =>
                {
                    // The client takes our bytes (the ping left) but we
                    // stopped reading it: its pong may be waiting in our
                    // receive buffer. Wait a full pong timeout more.
                    self.last_rx = now;
                }
                true if now >= self.last_rx + self.route.pong_timeout && !self.close_sent => {
                    self.route.metrics.ping_timeout_client.inc();
                    self.log_close(Closer::Gateway, None, "ping timeout");
                    self.client_done = true;
                    self.close_app(1006, "client ping timeout");
                    self.close_client(1001, "ping timeout", now);
                }
                false if now >= self.last_rx + interval && !self.close_sent => {
                    self.ping_sent = true;
                    self.last_rx = now;
                    self.queue_client(true, Opcode::Ping, Bytes::new());
                }
                _ => {}
            }
        }
    }

    /// A complete data message went either way (the idle timeout).
    pub(super) fn data_seen(&mut self, now: Instant) {
        self.last_data_ms = now.saturating_duration_since(self.started).as_millis() as u64;
    }

    fn last_data(&self) -> Instant {
        self.started + Duration::from_millis(self.last_data_ms)
    }

    pub(super) fn next_deadline(&self) -> Instant {
        let far = self.started + Duration::from_secs(365 * 24 * 3600);
        let mut next = far;
        let mut at = |d: Option<Instant>| {
            if let Some(d) = d {
                next = next.min(d);
            }
        };
        at(self.deadline_close);
        at(self.close_at.filter(|_| !self.close_sent));
        if !self.close_sent {
            at(self.route.idle_timeout.map(|i| self.last_data() + i));
        }
        if let Some(interval) = self.route.ping_interval {
            at(Some(if self.ping_sent {
                self.last_rx + self.route.pong_timeout
            } else {
                self.last_rx + interval
            }));
        }
        if self.resume.is_some() {
            // Look for a connection again soon.
            at(Some(Instant::now() + Duration::from_millis(20)));
        }
        next
    }
}
