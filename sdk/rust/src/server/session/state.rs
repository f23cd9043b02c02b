//! The state of one session shared by the application's handles, the
//! connection reader and the resume table: where the session is now
//! (attached to a mux connection, waiting for a resume, finished), its
//! inbound queue and its final close. Every transition of
//! docs/mux-protocol.md §5–§6 as the application side sees it is one
//! method here, taken under one lock.
//!
//! The inbound queue is an inbox under that same lock — a deque (empty,
//! it owns no allocation) and the reader's waker — rather than a channel:
//! a bounded tokio channel allocates its shared state and a block of 32
//! slots per session up front, which dominated the memory of an idle
//! session (issue #20).
//!
//! The transitions are here; the subscriptions a session carries across a
//! resume are in `channels`, the application's receive and send in
//! `traffic`.

mod channels;
mod traffic;

use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use tokio::sync::Notify;

use super::super::outbox::Outbox;
use super::super::table;
use super::{Event, SendError, SessionId};
use crate::codec::{self, AcceptBody, Close, Frame};
use channels::push_channel_op;

/// Where the session is.
pub(crate) enum Link {
    /// On connection `conn`; `accepted` once ACCEPT was queued.
    Attached {
        conn: u64,
        outbox: Arc<Outbox>,
        accepted: bool,
    },
    /// Connection `from` was lost; waiting for a RESUMED OPEN. `close`: the
    /// application closed meanwhile; sent once resumed.
    Detached { from: u64, close: Option<Close> },
    /// Closed; forgotten by the table.
    Finished,
}

struct State {
    /// Where frames for this session go now.
    link: Link,
    /// Inbound messages not yet taken by `recv`.
    inbox: VecDeque<Event>,
    /// Cleared when the session finishes, so `recv` sees the queue end
    /// after the last message.
    inbox_open: bool,
    /// The task waiting in `recv`.
    waker: Option<Waker>,
    /// Channels the application subscribed the session to (extension
    /// `fanout`); the gateway keeps them across a resume, so they stay.
    channels: BTreeSet<String>,
    /// Subscription changes made while detached (channel, subscribed), in
    /// order, sent on the connection the session is resumed on.
    channel_ops: Vec<(String, bool)>,
    /// The session's connection (the last one, while detached)
    /// negotiated `fanout`.
    fanout: bool,
    /// The final event, handed out once the queue has been drained.
    close: Option<Close>,
}

impl State {
    /// No more inbound messages; wake the reader to see the end.
    fn close_inbox(&mut self) -> Option<Waker> {
        self.inbox_open = false;
        self.waker.take()
    }
}

/// Sessions of this process that have finished, ever: a [`super::super::Room`]
/// looks for closed members only when this moved since its last look, so
/// a broadcast to a room where nobody left costs nothing per member.
static FINISHED_EPOCH: AtomicU64 = AtomicU64::new(0);

/// The count of finished sessions (see [`FINISHED_EPOCH`]).
pub(crate) fn finished_epoch() -> u64 {
    FINISHED_EPOCH.load(Ordering::Acquire)
}

/// State shared by the application's handles, the reader and the table.
pub(crate) struct SessionShared {
    /// The key in the resume table.
    pub(crate) id: SessionId,
    /// Link, inbound queue and final close, changed together.
    state: Mutex<State>,
    /// Set before a CLOSE is queued, read under the outbox lock, so no
    /// data frame follows the CLOSE.
    finished: AtomicBool,
    /// Senders waiting for the session to be resumed.
    relinked: Notify,
    /// Bytes of unread inbound messages, for the bound.
    queued_bytes: AtomicUsize,
    /// Bound on `queued_bytes` (one message always fits when empty).
    max_queued_bytes: usize,
    /// Bound on the number of unread messages.
    max_queued_messages: usize,
}

/// What happened to an inbound message.
pub(crate) enum Delivery {
    Queued,
    /// The session is not (any more) on this connection: ignore (§3).
    Gone,
    /// The application is not reading: the session was closed with 1008.
    SlowConsumer,
}

impl SessionShared {
    pub(crate) fn new(
        id: SessionId,
        conn: u64,
        outbox: Arc<Outbox>,
        queue_messages: usize,
        queue_bytes: usize,
    ) -> Arc<SessionShared> {
        let fanout = outbox.fanout;
        let shared = SessionShared {
            id,
            state: Mutex::new(State {
                channels: BTreeSet::new(),
                channel_ops: Vec::new(),
                fanout,
                link: Link::Attached {
                    conn,
                    outbox,
                    accepted: false,
                },
                inbox: VecDeque::new(),
                inbox_open: true,
                waker: None,
                close: None,
            }),
            finished: AtomicBool::new(false),
            relinked: Notify::new(),
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes: queue_bytes,
            max_queued_messages: queue_messages.max(1),
        };
        Arc::new(shared)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state whole; poisoning carries no meaning.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// End the session under the lock: `close` becomes the application's
    /// last event; `send` (if any) is queued to the gateway first.
    fn finish(&self, st: &mut State, app_sees: Close, send: Option<(&Outbox, Close)>) {
        self.mark_finished();
        if let Some((outbox, close)) = send {
            outbox.push_control(Frame::close(self.id.id, &close));
        }
        st.link = Link::Finished;
        st.close = Some(app_sees);
        if let Some(w) = st.close_inbox() {
            w.wake();
        }
    }

    /// Set `finished`, then move the epoch: whoever sees the new epoch
    /// sees the session finished.
    fn mark_finished(&self) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            FINISHED_EPOCH.fetch_add(1, Ordering::Release);
        }
    }

    fn finished_now(self: &Arc<Self>) {
        self.relinked.notify_waiters();
        table::remove(self);
    }

    /// The application accepted the OPEN.
    pub(crate) fn accept(self: &Arc<Self>, body: &AcceptBody) {
        let mut st = self.lock();
        if let Link::Attached {
            outbox, accepted, ..
        } = &mut st.link
        {
            if !*accepted {
                *accepted = true;
                outbox.push_control(Frame::accept(self.id.id, body));
                drop(st);
                table::insert(self.clone());
            }
        }
    }

    /// The application rejected the OPEN (or dropped the `Incoming`).
    pub(crate) fn reject(&self, body: &codec::RejectBody) {
        let mut st = self.lock();
        if let Link::Attached {
            outbox,
            accepted: false,
            ..
        } = &st.link
        {
            outbox.push_control(Frame::reject(self.id.id, body));
            self.finish(&mut st, Close::new(1000, "rejected"), None);
        }
    }

    /// Is the session on connection `conn` right now?
    pub(crate) fn attached_to(&self, conn: u64) -> bool {
        matches!(self.lock().link, Link::Attached { conn: c, .. } if c == conn)
    }

    /// Queue an inbound message for the application (reader side; never
    /// waits).
    pub(crate) fn deliver(self: &Arc<Self>, conn: u64, event: Event) -> Delivery {
        let len = event_len(&event);
        let mut st = self.lock();
        let outbox = match &st.link {
            Link::Attached {
                conn: c, outbox, ..
            } if *c == conn => outbox.clone(),
            _ => return Delivery::Gone,
        };
        if !st.inbox_open {
            return Delivery::Gone;
        }
        let queued = self.queued_bytes.load(Ordering::Acquire);
        let fits = queued == 0 || queued + len <= self.max_queued_bytes;
        if fits && st.inbox.len() < self.max_queued_messages {
            self.queued_bytes.fetch_add(len, Ordering::AcqRel);
            st.inbox.push_back(event);
            if let Some(w) = st.waker.take() {
                drop(st);
                w.wake();
            }
            return Delivery::Queued;
        }
        let close = Close::new(1008, "slow consumer");
        self.finish(&mut st, close.clone(), Some((&outbox, close)));
        drop(st);
        self.finished_now();
        Delivery::SlowConsumer
    }

    /// End the session on this connection with `close`, sent to the
    /// gateway too (a per-session protocol problem, §7).
    pub(crate) fn fail(self: &Arc<Self>, conn: u64, close: Close) {
        let mut st = self.lock();
        if let Link::Attached {
            conn: c, outbox, ..
        } = &st.link
        {
            if *c == conn {
                let outbox = outbox.clone();
                self.finish(&mut st, close.clone(), Some((&outbox, close)));
                drop(st);
                self.finished_now();
            }
        }
    }

    /// The gateway sent CLOSE for the session.
    pub(crate) fn remote_close(self: &Arc<Self>, conn: u64, close: Close) {
        let mut st = self.lock();
        if matches!(st.link, Link::Attached { conn: c, .. } if c == conn) {
            self.finish(&mut st, close, None);
            drop(st);
            self.finished_now();
        }
    }

    /// The application closes the session.
    pub(crate) fn local_close(self: &Arc<Self>, close: Close) -> Result<(), SendError> {
        let mut st = self.lock();
        match &mut st.link {
            Link::Attached { outbox, .. } => {
                let outbox = outbox.clone();
                self.finish(&mut st, close.clone(), Some((&outbox, close)));
            }
            Link::Detached { close: pending, .. } => {
                // Keep the table entry: the CLOSE goes out on resume.
                *pending = Some(close.clone());
                self.mark_finished();
                st.close = Some(close);
                let reader = st.close_inbox();
                drop(st);
                if let Some(w) = reader {
                    w.wake();
                }
                self.relinked.notify_waiters();
                return Ok(());
            }
            Link::Finished => return Err(SendError::Closed),
        }
        drop(st);
        self.finished_now();
        Ok(())
    }

    /// Connection `conn` is gone. True when the session now waits for a
    /// resume (an unanswered OPEN is simply finished).
    pub(crate) fn detach(self: &Arc<Self>, conn: u64) -> bool {
        let mut st = self.lock();
        match st.link {
            Link::Attached {
                conn: c,
                accepted: true,
                ..
            } if c == conn => {
                st.link = Link::Detached {
                    from: conn,
                    close: None,
                };
                true
            }
            Link::Attached { conn: c, .. } if c == conn => {
                self.finish(&mut st, Close::new(1006, "mux connection lost"), None);
                drop(st);
                self.finished_now();
                false
            }
            _ => false,
        }
    }

    /// The resume grace after losing connection `from` ran out.
    pub(crate) fn expire(self: &Arc<Self>, from: u64) {
        let mut st = self.lock();
        if let Link::Detached { from: f, close } = &st.link {
            if *f == from {
                let app_sees = close
                    .clone()
                    .unwrap_or_else(|| Close::new(1006, "mux connection lost"));
                self.finish(&mut st, app_sees, None);
                drop(st);
                self.finished_now();
            }
        }
    }

    /// A RESUMED OPEN for this session arrived on `conn`: answer ACCEPT
    /// there and carry on. False if the session is finished.
    pub(crate) fn reattach(self: &Arc<Self>, conn: u64, outbox: &Arc<Outbox>) -> bool {
        let mut st = self.lock();
        let pending_close = match &mut st.link {
            Link::Finished => return false,
            // GOAWAY: the old connection is still up while the gateway
            // moves the session.
            Link::Attached { accepted, .. } if *accepted => None,
            Link::Attached { .. } => return false,
            Link::Detached { close, .. } => close.take(),
        };
        outbox.push_control(Frame::accept(self.id.id, &AcceptBody::default()));
        st.fanout = outbox.fanout;
        // The gateway kept the subscriptions; only what changed while the
        // session was between connections goes out.
        for (channel, subscribe) in std::mem::take(&mut st.channel_ops) {
            push_channel_op(outbox, self.id.id, &channel, subscribe);
        }
        if let Some(close) = pending_close {
            outbox.push_control(Frame::close(self.id.id, &close));
            st.link = Link::Finished;
            drop(st);
            self.finished_now();
            return true;
        }
        st.link = Link::Attached {
            conn,
            outbox: outbox.clone(),
            accepted: true,
        };
        drop(st);
        self.relinked.notify_waiters();
        true
    }

    /// Has the session finished (either side closed, or lost)?
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

/// Bytes an inbound event counts against `max_queued_bytes`.
fn event_len(event: &Event) -> usize {
    match event {
        Event::Text(t) => t.len(),
        Event::Binary(b) => b.len(),
        Event::Closed(_) => 0,
    }
}
