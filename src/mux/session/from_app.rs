//! Application → client: inbox events (messages, CLOSE, ACCEPT/REJECT of a
//! resumed OPEN, a lost or draining connection) and the resume itself.

use super::{MuxSession, Resume};
use crate::access::Closer;
use crate::frame::Opcode;
use crate::mux::conn::Out;
use crate::mux::inbox::Event;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Context;
use tidegate_mux::codec::{self, FLAG_FIN, KIND_MASK};
use tokio::time::Instant;

impl MuxSession {
    pub(super) fn on_events(&mut self, now: Instant, cx: &mut Context<'_>) -> bool {
        let mut events = VecDeque::new();
        let overflow = self.inbox.drain(&mut events, cx);
        let progress = !events.is_empty();
        for e in events {
            self.on_event(e, now);
        }
        if (overflow || self.out_bytes() > self.route.session_queue_bytes) && !self.close_sent {
            // Slow consumer: what is queued is dropped but the frame being
            // written, then Close 1008.
            self.route.mux_metrics.slow_consumer.inc();
            self.drop_out();
            self.close_client(1008, "slow consumer", now);
            self.close_app(1008, "slow consumer");
            self.client_done = true;
        }
        progress
    }

    pub(super) fn on_event(&mut self, e: Event, now: Instant) {
        match e {
            Event::Message { flags, payload } => {
                if self.close_sent {
                    return;
                }
                let kind = flags & KIND_MASK;
                let opcode = match (self.app_in_message, kind) {
                    (false, codec::KIND_TEXT) => Opcode::Text,
                    (false, codec::KIND_BINARY) => Opcode::Binary,
                    (true, codec::KIND_CONTINUATION) => Opcode::Continuation,
                    _ => return self.on_event(Event::Broken, now),
                };
                let fin = flags & FLAG_FIN != 0;
                self.app_in_message = !fin;
                if fin {
                    self.data_seen(now);
                    self.route.metrics.messages_u2c.inc();
                }
                self.route.metrics.bytes_u2c.inc_by(payload.len() as u64);
                if let Some(a) = &mut self.access {
                    a.to_client(fin as u64, payload.len() as u64);
                }
                self.queue_app_message(fin, opcode, payload);
            }
            Event::Close(c) => {
                self.app_done = true;
                self.route.metrics.close("upstream", c.code);
                self.log_close(Closer::Upstream, c.code, "upstream closed");
                match c.code {
                    Some(code) => self.close_client(code, &c.reason, now),
                    None => {
                        if !self.close_sent {
                            self.close_sent = true;
                            self.queue_client(true, Opcode::Close, Bytes::new());
                            self.deadline_close
                                .get_or_insert(now + self.route.close_timeout);
                        }
                    }
                }
            }
            Event::Accept { conn, .. } => {
                let ours = self.resume.as_ref().and_then(|r| r.on.as_ref());
                if ours.is_some_and(|c| c.id == conn.id) {
                    let r = self.resume.take().expect("checked above");
                    self.route.mux_metrics.resumed.inc();
                    r.accepted(self.id);
                    tracing::debug!(session = self.id, conn = conn.id, "session resumed");
                    self.space_wait = 0;
                    self.conn = Some(conn);
                }
            }
            Event::Reject(_) => {
                // Only a resumed OPEN can be rejected here.
                if let Some(r) = self.resume.as_mut() {
                    r.on = None;
                }
                self.app_done = true;
                self.close_client(1011, "rejected on resume", now);
            }
            Event::Lost { conn_id, goaway } => self.on_lost(conn_id, goaway, now),
            // The token is checked at the top of every poll.
            Event::Drain => {}
            Event::Subscribed(sub) => {
                sub.attach(&self.client);
                self.queues().fanout = Some(sub);
            }
            Event::Broken => {
                self.log_close(Closer::Upstream, None, "upstream violation");
                self.close_client(1011, "application broke the mux protocol", now);
                self.close_app(1002, "fragment out of order");
            }
        }
    }

    pub(super) fn on_lost(&mut self, conn_id: u64, goaway: bool, now: Instant) {
        let current = self.conn.as_ref().is_some_and(|c| c.id == conn_id);
        let pending = self
            .resume
            .as_ref()
            .and_then(|r| r.on.as_ref())
            .is_some_and(|c| c.id == conn_id);
        if !(current || pending) || self.app_done {
            return;
        }
        let grace = self.route.resume_grace;
        let r = self.resume.get_or_insert_with(|| {
            Box::new(Resume {
                deadline: now + grace,
                goaway,
                on: None,
                waiting: None,
                leaving: Vec::new(),
            })
        });
        let old = if current {
            self.space_wait = 0;
            self.conn.take()
        } else {
            None
        };
        r.lost(self.id, conn_id, goaway, old);
        r.waiting.get_or_insert_with(|| self.route.pool.waiting());
    }

    /// Resuming: offer the session to another connection, or give up at
    /// the deadline.
    pub(super) fn try_resume(&mut self, now: Instant) {
        let Some(r) = self.resume.as_mut() else {
            return;
        };
        if r.on.is_none() {
            let since = r.deadline - self.route.resume_grace;
            if let Some(conn) = self.route.pool.pick_for_resume(since) {
                if conn.register(self.id, Arc::clone(&self.inbox)) {
                    conn.send(Out::frame(&self.open.resumed_frame(self.id)));
                    r.on = Some(conn);
                    r.waiting = None;
                }
            }
        }
        if now >= r.deadline {
            let goaway = r.goaway;
            self.give_up(goaway, now);
        }
    }

    pub(super) fn give_up(&mut self, goaway: bool, now: Instant) {
        self.route.mux_metrics.resume_failed.inc();
        if let Some(r) = self.resume.take() {
            r.forget(self.id);
        }
        self.app_done = true;
        self.clear_held();
        let (code, reason) = if goaway {
            (1012, "service restart")
        } else {
            (1014, "application connection lost")
        };
        self.close_client(code, reason, now);
    }
}
