//! Fan-out → client: published frames move from the session's subscriber
//! queue into its client queue, between the application's messages (never
//! inside a fragmented one), and only while the client queue is at most
//! half full — a client that does not read leaves them in the subscriber
//! queue, where the route's slow-subscriber policy applies, instead of
//! tripping the session's own slow-consumer close.

use super::{MuxSession, ToClient};
use crate::fanout::{Closing, Next};
use crate::frame::HeaderBytes;
use std::task::Context;
use tokio::time::Instant;

impl MuxSession {
    /// Tell the subscriber whether a publish may write to the client
    /// directly (`idle`: the session is about to wait). Only with nothing
    /// on its way to the client, outside an application message, before
    /// any Close.
    pub(super) fn published_clear(&self, idle: bool) {
        let Some(sub) = self.q.as_ref().and_then(|q| q.fanout.as_ref()) else {
            return;
        };
        let clear = idle
            && !self.app_in_message
            && !self.close_sent
            && !self.client_done
            && self.out_empty();
        sub.set_clear(clear);
    }

    /// Frames a publish wrote directly: count them, and queue first the
    /// tail of one the socket took only in part (nothing else was queued
    /// since: the session was idle and has not run).
    pub(super) fn take_published_rest(&mut self) {
        let Some(sub) = self.q.as_ref().and_then(|q| q.fanout.as_ref()) else {
            return;
        };
        let (rest, sent) = sub.take_rest();
        if sent > 0 {
            self.route.metrics.messages_u2c.inc_by(sent);
        }
        if let Some(payload) = rest {
            let t = ToClient {
                header: HeaderBytes::EMPTY,
                payload,
            };
            self.route.mux_metrics.queued_bytes.add(t.cost() as i64);
            let q = self.queues();
            q.out_bytes += t.cost();
            q.out.push_front(t);
        }
    }

    /// Returns true if a frame moved.
    pub(super) fn take_published(&mut self, now: Instant, cx: &mut Context<'_>) -> bool {
        let Some(sub) = self.q.as_ref().and_then(|q| q.fanout.clone()) else {
            return false;
        };
        // Inside an application message: the FIN brings the session back.
        if self.app_in_message || self.close_sent {
            return false;
        }
        let room = self.route.session_queue_bytes / 2;
        if self.out_bytes() >= room && !sub.overflowed(cx) {
            return false;
        }
        let mut moved = false;
        while self.out_bytes() < room || sub.overflowed(cx) {
            match sub.next(cx) {
                Next::Frame(f) => {
                    let metrics = &sub.hub().metrics;
                    metrics
                        .latency
                        .observe(f.published().elapsed().as_secs_f64());
                    let t = ToClient {
                        header: f.header(),
                        payload: f.payload(),
                    };
                    self.route.metrics.messages_u2c.inc();
                    self.route.mux_metrics.queued_bytes.add(t.cost() as i64);
                    let q = self.queues();
                    q.out_bytes += t.cost();
                    q.out.push_back(t);
                    moved = true;
                }
                Next::Empty => break,
                Next::Overflowed => {
                    let why = sub.closing();
                    if why == Closing::Slow {
                        sub.hub().metrics.slow_closes.inc();
                    }
                    self.log_close(crate::access::Closer::Gateway, None, why.reason());
                    self.close_client(why.code(), why.reason(), now);
                    self.close_app(why.code(), why.reason());
                    self.client_done = true;
                    return true;
                }
            }
        }
        moved
    }
}
