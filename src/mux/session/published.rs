//! Fan-out → client: published frames move from the session's subscriber
//! queue into its client queue, between the application's messages (never
//! inside a fragmented one), and only while the client queue is at most
//! half full — a client that does not read leaves them in the subscriber
//! queue, where the route's slow-subscriber policy applies, instead of
//! tripping the session's own slow-consumer close.
//!
//! And the session's side of direct writes ([`crate::io::direct`]), which
//! publishes and the connection reader's replies share: when they may
//! happen, and counting them.

use super::{MuxSession, ToClient};
use crate::fanout::Next;
use crate::frame::HeaderBytes;
use crate::io::direct::{Direct, Sent};
use std::task::Context;
use tokio::time::Instant;

impl MuxSession {
    /// Make the session's direct-write handle (once) and give it to the
    /// inbox, where the connection reader and a subscriber find it. Not
    /// for an edge-compressed session: its frames are compressed here.
    pub(super) fn ensure_direct(&mut self) {
        let compressed = self.q.as_ref().is_some_and(|q| q.edge.is_some());
        let q = self.q.get_or_insert_with(Box::default);
        if q.direct_tried || compressed {
            return;
        }
        q.direct_tried = true;
        // A mux client holds one descriptor, its socket.
        if let Some(d) = Direct::attach(&self.client, 1) {
            self.inbox.set_direct(&d, self.route.direct_replies);
            q.direct = Some(d);
        }
    }

    /// Tell the direct-write handle whether a reply or a publish may be
    /// written to the client directly (`idle`: the session is about to
    /// wait). Only with nothing on its way to the client, outside an
    /// application message, on a connection (not resuming), before any
    /// Close, without edge compression.
    pub(super) fn direct_clear(&mut self, idle: bool) {
        let Some(q) = self.q.as_ref() else {
            // Never carried data: nothing to write directly yet.
            return;
        };
        if idle && q.direct.is_none() && !q.direct_tried && self.route.direct_replies {
            self.ensure_direct();
        }
        let Some(d) = self.q.as_ref().and_then(|q| q.direct.as_ref()) else {
            return;
        };
        let clear = idle
            && !self.app_in_message
            && !self.close_sent
            && !self.client_done
            && self.resume.is_none()
            && self.q.as_ref().is_some_and(|q| q.edge.is_none())
            && self.out_empty();
        d.set_clear(clear);
    }

    /// What was written directly since the last call: count it, and
    /// queue first the tail of a frame the socket took only in part
    /// (nothing else was queued since: the session was idle and has not
    /// run).
    pub(super) fn take_direct_rest(&mut self) {
        let Some(d) = self.q.as_ref().and_then(|q| q.direct.as_ref()) else {
            return;
        };
        let (rest, sent) = d.take_rest();
        self.count_direct(sent);
        if let Some(payload) = rest {
            // It waits for the client: it must not hold the connection's
            // read buffer.
            let t = ToClient {
                header: HeaderBytes::EMPTY,
                payload: crate::mux::detach(payload),
            };
            self.route.mux_metrics.queued_bytes.add(t.cost() as i64);
            let q = self.queues();
            q.out_bytes += t.cost();
            q.out.push_front(t);
        }
    }

    /// Direct writes into the route's counters, as if queued and written
    /// here (a published frame counts as a message to the client, as in
    /// `take_published`).
    fn count_direct(&mut self, sent: Sent) {
        let m = &self.route.metrics;
        if sent.published + sent.messages > 0 {
            m.messages_u2c.inc_by(sent.published + sent.messages);
        }
        if sent.messages > 0 {
            m.bytes_u2c.inc_by(sent.bytes);
            self.route.mux_metrics.direct_messages.inc_by(sent.messages);
            if let Some(a) = &mut self.access {
                a.to_client(sent.messages, sent.bytes);
            }
        }
    }

    /// The session ends: count the last direct writes, close the handle.
    pub(super) fn end_direct(&mut self) {
        let Some(d) = self.q.as_mut().and_then(|q| q.direct.take()) else {
            return;
        };
        let (_, sent) = d.take_rest();
        d.close();
        self.count_direct(sent);
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
                    sub.hub().metrics.slow_closes.inc();
                    self.log_close(crate::access::Closer::Gateway, None, "slow subscriber");
                    self.close_client(1008, "slow subscriber", now);
                    self.close_app(1008, "slow subscriber");
                    self.client_done = true;
                    return true;
                }
            }
        }
        moved
    }
}
