//! A session's inbox: what mux connection readers hand to one client
//! session. The reader never waits on it — it appends and moves on — so a
//! slow client cannot stall the shared connection; the bound
//! (`mux.session_queue_bytes`, charged per message with its header cost, so
//! empty messages count) turns a client that does not keep up into a
//! slow-consumer close instead of unbounded memory.
//!
//! Hand-made rather than a channel: an idle session's inbox is one small
//! allocation with an empty queue (a tokio channel allocates a block of
//! slots up front, which would dominate the memory of an idle client).
//!
//! Direct replies (`mux.direct_replies`): a whole application message for
//! a session whose task is idle with nothing queued either side is
//! written by the reader
//! straight to the client's socket ([`crate::io::direct`]: same thread,
//! plain TCP, not mid-message, no edge compression) instead of being
//! queued here and waking the task — a reply then costs the send and
//! nothing else. The session counts such messages when it next runs.

use super::conn::Conn;
use super::QUEUED_FRAME_COST;
use crate::fanout::{Access, Hub, Refusal, Subscriber};
use crate::frame::{encode_header, Opcode};
use crate::io::direct::{Direct, Outcome, Sent};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::thread::ThreadId;
use tidegate_mux::codec::{FLAG_FIN, KIND_BINARY, KIND_MASK, KIND_TEXT};
use tidegate_mux::{AcceptBody, Close, RejectBody};

/// What happened to a session, in arrival order.
pub enum Event {
    /// A MESSAGE: `flags` as on the wire (FIN, kind).
    Message {
        flags: u8,
        payload: Bytes,
    },
    /// CLOSE from the application.
    Close(Close),
    Accept {
        conn: Arc<Conn>,
        body: AcceptBody,
    },
    Reject(RejectBody),
    /// The connection the session was on is gone (`goaway`: the
    /// application handed it back) — move to another one.
    Lost {
        conn_id: u64,
        goaway: bool,
    },
    /// The application broke the protocol for this session only.
    Broken,
    /// The gateway started draining: wake up and look at the token.
    Drain,
    /// Fan-out: the session became a subscriber; its published frames
    /// wait in this handle.
    Subscribed(Arc<crate::fanout::Subscriber>),
}

impl Event {
    /// What the event is charged against the bound: a MESSAGE its payload
    /// plus the per-frame cost, so empty messages fill the inbox too; the
    /// other events are few per session and always arrive.
    fn bytes(&self) -> usize {
        match self {
            Event::Message { payload, .. } => payload.len() + QUEUED_FRAME_COST,
            _ => 0,
        }
    }
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    /// Bytes charged for `events` (payload plus `QUEUED_FRAME_COST` per
    /// message).
    bytes: usize,
    /// Set when a push went over the bound; the session then closes the
    /// client as a slow consumer.
    overflow: bool,
    /// The session's client is not taking bytes: small payloads pushed
    /// now will wait, so they are copied out of the connection's read
    /// buffer here ([`super::detach`]).
    stalled: bool,
    waker: Option<Waker>,
    /// Fan-out: the session's subscriber, made at its first subscription
    /// (from SUBSCRIBE, the ACCEPT header or the token's claim).
    subscriber: Option<Arc<Subscriber>>,
    /// The session is over: no subscriber may be made any more.
    fanout_done: bool,
    /// The client's socket for direct replies (see the module header);
    /// made by the session at its first data, shared with its subscriber.
    direct: Option<Arc<Direct>>,
    /// Replies may be written through `direct` (`mux.direct_replies`);
    /// else it serves the subscriber's publishes only.
    direct_replies: bool,
}

#[derive(Default)]
pub struct Inbox {
    queue: Mutex<Queue>,
    /// Fan-out policy and grants of the session's route (`None`: the
    /// session cannot subscribe).
    access: Option<Arc<Access>>,
}

impl Inbox {
    pub fn new(access: Option<Arc<Access>>) -> Inbox {
        Inbox {
            queue: Mutex::default(),
            access,
        }
    }

    /// Subscribe session `id` to `channel` (made a subscriber first if it
    /// is not one yet). Refusals are counted by the hub.
    pub fn subscribe(&self, hub: &Arc<Hub>, id: u32, channel: &[u8]) -> Result<bool, Refusal> {
        let sub = {
            let mut q = self.lock();
            if q.fanout_done {
                return Err(Refusal::Closed);
            }
            match (&q.subscriber, &self.access) {
                (Some(s), _) => Arc::clone(s),
                (None, Some(access)) => {
                    let s = hub.subscriber(Some(id), Arc::clone(access));
                    if let Some(d) = &q.direct {
                        s.share_direct(d);
                    }
                    q.subscriber = Some(Arc::clone(&s));
                    q.events.push_back(Event::Subscribed(Arc::clone(&s)));
                    if let Some(w) = q.waker.take() {
                        w.wake();
                    }
                    s
                }
                (None, None) => {
                    hub.count_refusal(Refusal::Unsupported);
                    return Err(Refusal::Unsupported);
                }
            }
        };
        sub.subscribe(channel)
    }

    /// UNSUBSCRIBE; unknown subscriptions are ignored.
    pub fn unsubscribe(&self, channel: &[u8]) {
        let sub = self.lock().subscriber.clone();
        if let Some(s) = sub {
            s.unsubscribe(channel);
        }
    }

    /// The channels the session's token grants, subscribed at its start.
    pub fn subscribe_granted(&self, hub: &Arc<Hub>, id: u32) {
        let granted = self.access.as_ref().map_or(&[][..], |a| a.granted());
        for channel in granted {
            let _ = self.subscribe(hub, id, channel.as_bytes());
        }
    }

    /// The session's subscriber, if it has one yet.
    pub fn subscriber(&self) -> Option<Arc<Subscriber>> {
        self.lock().subscriber.clone()
    }

    /// The session is over: leave every channel, refuse new ones.
    pub fn end_fanout(&self) {
        let sub = {
            let mut q = self.lock();
            q.fanout_done = true;
            // The session closes its handle; the reader stops using it.
            q.direct = None;
            q.subscriber.take()
        };
        if let Some(s) = sub {
            s.leave();
        }
    }

    /// The session's direct-write handle: a subscriber (now or later)
    /// writes publishes through it, and the reader replies when `replies`.
    pub fn set_direct(&self, direct: &Arc<Direct>, replies: bool) {
        let mut q = self.lock();
        if q.fanout_done {
            return;
        }
        if let Some(s) = &q.subscriber {
            s.share_direct(direct);
        }
        q.direct = Some(Arc::clone(direct));
        q.direct_replies = replies;
    }

    /// An application MESSAGE for the session: written to the client now
    /// if it is a whole message and the session is idle with nothing
    /// queued (true), else queued as an event and the session woken.
    /// `here` is the reader's thread.
    pub fn push_message(&self, flags: u8, payload: Bytes, limit: usize, here: ThreadId) -> bool {
        let opcode = match flags & KIND_MASK {
            KIND_TEXT => Opcode::Text,
            KIND_BINARY => Opcode::Binary,
            _ => Opcode::Continuation,
        };
        let whole = flags & FLAG_FIN != 0 && opcode != Opcode::Continuation;
        let mut q = self.lock();
        let direct = q.direct.as_ref().filter(|_| q.direct_replies);
        if let Some(d) = direct.filter(|d| whole && d.is_clear()) {
            if q.events.is_empty() {
                let header = encode_header(true, opcode, payload.len(), None);
                let tally = Sent {
                    messages: 1,
                    bytes: payload.len() as u64,
                    ..Sent::default()
                };
                match d.send(header.as_slice(), &payload, here, tally) {
                    Outcome::Sent => return true,
                    Outcome::Partly => {
                        // The session must write the tail before
                        // anything else: wake it.
                        let waker = q.waker.take();
                        drop(q);
                        if let Some(w) = waker {
                            w.wake();
                        }
                        return true;
                    }
                    Outcome::Refused => {}
                }
            }
        }
        self.push_locked(q, Event::Message { flags, payload }, limit);
        false
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock would be a bug in the few lines
        // below; the queue is still consistent, so keep going.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append an event and wake the session. `limit` bounds the bytes
    /// charged for queued messages (`usize::MAX` for events that must
    /// always arrive).
    pub fn push(&self, event: Event, limit: usize) {
        self.push_locked(self.lock(), event, limit)
    }

    fn push_locked(&self, mut q: MutexGuard<'_, Queue>, event: Event, limit: usize) {
        let waker = {
            let n = event.bytes();
            if n > 0 && q.bytes + n > limit {
                q.overflow = true;
            } else {
                q.bytes += n;
                let event = match event {
                    Event::Message { flags, payload } if q.stalled => Event::Message {
                        flags,
                        payload: super::detach(payload),
                    },
                    other => other,
                };
                q.events.push_back(event);
            }
            // Work for the session: a publish or a reply must not be
            // written past it.
            if let Some(d) = &q.direct {
                d.set_clear(false);
            }
            if let Some(sub) = &q.subscriber {
                sub.set_clear(false);
            }
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Move every queued event into `out`; remember the waker if none.
    /// Returns true if the bound was exceeded.
    pub fn drain(&self, out: &mut VecDeque<Event>, cx: &mut Context<'_>) -> bool {
        let mut q = self.lock();
        if q.events.is_empty() {
            if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                q.waker = Some(cx.waker().clone());
            }
        } else if out.is_empty() {
            std::mem::swap(out, &mut q.events);
        } else {
            out.extend(q.events.drain(..));
        }
        q.bytes = 0;
        q.overflow
    }

    /// The session's client stopped (true) or resumed (false) taking
    /// bytes; see `Queue::stalled`.
    pub fn set_stalled(&self, stalled: bool) {
        self.lock().stalled = stalled;
    }

    /// For the handshake phase: take the first event, if any.
    pub fn pop(&self, cx: &mut Context<'_>) -> Option<Event> {
        let mut q = self.lock();
        match q.events.pop_front() {
            Some(e) => {
                q.bytes -= e.bytes();
                if q.events.is_empty() {
                    // An idle session keeps no queue memory.
                    q.events = VecDeque::new();
                }
                Some(e)
            }
            None => {
                q.waker = Some(cx.waker().clone());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Event {
        Event::Message {
            flags: 0,
            payload: Bytes::new(),
        }
    }

    /// Empty messages are not free: the byte bound is a frame bound too
    /// (before, 0-byte messages were never refused and the inbox grew
    /// without limit).
    #[test]
    fn empty_messages_fill_the_bound() {
        let inbox = Inbox::default();
        let limit = 1 << 20;
        let fits = limit / QUEUED_FRAME_COST;
        for _ in 0..fits {
            inbox.push(empty(), limit);
        }
        assert!(!inbox.lock().overflow, "{fits} frames fit in {limit} bytes");
        inbox.push(empty(), limit);
        let q = inbox.lock();
        assert!(q.overflow, "frame {} must overflow", fits + 1);
        assert_eq!(q.events.len(), fits);
    }

    /// Once the client is stalled, a small payload waiting in the inbox no
    /// longer shares the buffer it was cut from.
    #[test]
    fn stalled_inbox_copies_small_payloads() {
        let buffer = Bytes::from(vec![7u8; 256 * 1024]);
        let inbox = Inbox::default();
        let message = |payload: Bytes| Event::Message { flags: 0, payload };
        inbox.push(message(buffer.slice(0..10)), usize::MAX);
        inbox.set_stalled(true);
        inbox.push(message(buffer.slice(10..20)), usize::MAX);
        let big = super::super::COPY_QUEUED_BELOW;
        inbox.push(message(buffer.slice(0..big)), usize::MAX);
        let q = inbox.lock();
        let starts: Vec<*const u8> = q
            .events
            .iter()
            .map(|e| match e {
                Event::Message { payload, .. } => payload.as_ptr(),
                _ => unreachable!("only messages were pushed"),
            })
            .collect();
        assert_eq!(starts[0], buffer[0..].as_ptr(), "not stalled: zero-copy");
        assert_ne!(
            starts[1],
            buffer[10..].as_ptr(),
            "stalled and small: copied"
        );
        assert_eq!(starts[2], buffer[0..].as_ptr(), "large: never copied");
    }

    /// Events that must arrive are never refused, whatever the queue holds.
    #[test]
    fn control_events_always_arrive() {
        let inbox = Inbox::default();
        inbox.push(empty(), QUEUED_FRAME_COST);
        inbox.push(Event::Drain, QUEUED_FRAME_COST);
        assert_eq!(inbox.lock().events.len(), 2);
    }
}
