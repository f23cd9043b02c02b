//! Client → application: frames held until the connection's write buffer
//! has room (its byte bound) or, while resuming, until a connection takes
//! the session; and the session's CLOSE to the application.

use super::{MuxSession, Queues, ToApp};
use crate::mux::conn::{Full, Out};
use crate::mux::{detach, QUEUED_FRAME_COST};
use std::task::Context;
use tidegate_mux::codec::{Close, Frame, FrameType};

impl MuxSession {
    pub(super) fn queues(&mut self) -> &mut Queues {
        self.q.get_or_insert_with(Box::default)
    }

    pub(super) fn out_bytes(&self) -> usize {
        self.q.as_ref().map_or(0, |q| q.out_bytes)
    }

    pub(super) fn out_empty(&self) -> bool {
        self.q
            .as_ref()
            .is_none_or(|q| q.out.is_empty() && q.pong.is_none())
    }

    /// Drop every frame for the client but the one being written (slow
    /// consumer).
    pub(super) fn drop_out(&mut self) {
        let Some(q) = self.q.as_mut() else {
            return;
        };
        let keep = usize::from(q.written > 0).min(q.out.len());
        let mut dropped = q.pong.take().map_or(0, |p| p.len() + QUEUED_FRAME_COST);
        for t in q.out.drain(keep..) {
            dropped += t.cost();
        }
        q.pong_in_out = q.out.front().is_some_and(|t| t.is_pong());
        q.out_bytes -= dropped;
        self.route.mux_metrics.queued_bytes.sub(dropped as i64);
    }

    pub(super) fn held_empty(&self) -> bool {
        self.q.as_ref().is_none_or(|q| q.held.is_empty())
    }

    pub(super) fn clear_held(&mut self) {
        if let Some(q) = self.q.as_mut() {
            q.held.clear();
            q.held_bytes = 0;
        }
    }

    pub(super) fn queue_app(&mut self, mut frame: Frame) {
        let q = self.queues();
        if q.held_stalled {
            frame.body = detach(std::mem::take(&mut frame.body));
        }
        let t = ToApp { frame };
        q.held_bytes += t.cost();
        q.held.push_back(t);
    }

    /// Tell the application this session is over (once).
    pub(super) fn close_app(&mut self, code: u16, reason: &str) {
        if self.app_done {
            return;
        }
        self.app_done = true;
        let frame = Frame::close(self.id, &Close::new(code, reason));
        // Behind any held data, so the application sees it last.
        if self.conn.is_some() {
            self.queue_app(frame);
        } else if let Some(c) = self
            .resume
            .as_ref()
            .and_then(|r| r.leaving.last().or(r.on.as_ref()))
        {
            c.send(Out::frame(&frame));
        }
    }

    /// Queue held frames on the connection while its budget allows; what
    /// is left waits, so its small payloads are detached from the client's
    /// read arena.
    pub(super) fn flush_held(&mut self, cx: &mut Context<'_>) -> bool {
        let progress = self.hand_on_held(cx);
        if let Some(q) = self.q.as_mut() {
            if q.held.is_empty() {
                q.held_stalled = false;
            } else if !q.held_stalled {
                q.held_stalled = true;
                for t in q.held.iter_mut() {
                    t.frame.body = detach(std::mem::take(&mut t.frame.body));
                }
            }
        }
        progress
    }

    /// Append held frames to the connection's write buffer while it has
    /// room; when this session became the buffer's flusher, write
    /// everything queued (its frames and other sessions') once, after the
    /// whole round rather than per frame.
    fn hand_on_held(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(conn), Some(q)) = (self.conn.as_ref(), self.q.as_mut()) else {
            return false;
        };
        let mut progress = false;
        let mut flusher = false;
        while let Some(front) = q.held.front() {
            let n = front.cost();
            // Every MESSAGE is charged, an empty one too (a client sending
            // millions of them to a slow application would otherwise grow
            // the buffer without limit); a CLOSE is one per session and
            // must never wait behind it.
            let cost = if front.frame.kind == FrameType::Message {
                n
            } else {
                0
            };
            let frame = q.held.pop_front().expect("front exists").frame;
            match conn.queue(frame, cost, cx, &mut self.space_wait) {
                Ok(owner) => flusher |= owner,
                Err(Full(frame)) => {
                    // No room: the backpressure; woken when a write frees
                    // some.
                    q.held.push_front(ToApp { frame });
                    break;
                }
            }
            q.held_bytes -= n;
            progress = true;
        }
        if flusher {
            conn.flush();
        }
        progress
    }
}
