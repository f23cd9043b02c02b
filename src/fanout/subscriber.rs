//! One session as a subscriber: its queue of published frames (bounded in
//! bytes, every frame charged its size plus `QUEUED_FRAME_COST`), the
//! route's policy for when it is full, the waker of the session task, and
//! the channels it is subscribed to.
//!
//! The same handle serves a mux session (which moves frames into its
//! client queue between the application's messages) and a passthrough
//! relay (which writes them at frame boundaries of the upstream's stream).
//! The publisher never waits on a subscriber: a subscriber that does not
//! read fills its own queue and then gets the policy.
//!
//! `direct`: the publisher writing a frame to the client's socket itself,
//! when the session is idle on the publishing thread.

use super::{Access, Hub, SharedFrame, SlowPolicy};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};

mod direct;

pub(in crate::fanout) use direct::Offer;
use direct::Sink;

/// Release the lock, then wake the session's task if it waits: a waker
/// never runs under the subscriber's lock.
fn wake_unlocked(mut s: MutexGuard<'_, State>) {
    let waker = s.waker.take();
    drop(s);
    if let Some(w) = waker {
        w.wake();
    }
}

/// Queue slots a drained subscriber keeps (8 bytes each).
const KEEP_SLOTS: usize = 16;

/// What the session's side finds in its queue.
pub enum Next {
    /// The oldest frame waiting.
    Frame(SharedFrame),
    /// Nothing; the waker is registered.
    Empty,
    /// The session must close (the `close` policy tripped, or a direct
    /// send was lost): [`Subscriber::closing`] says with what.
    Overflowed,
}

/// Why a subscriber's session must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The queue overflowed under the `close` policy.
    Slow,
    /// The outcome of a direct send is unknown (the io_uring batch failed
    /// after the kernel took it, `uring.rs`): the client's stream may hold
    /// part of the frame, so neither resending nor carrying on is safe.
    Lost,
}

impl Closing {
    /// The close code for the client.
    pub fn code(self) -> u16 {
        match self {
            Closing::Slow => 1008,
            Closing::Lost => 1011,
        }
    }

    /// The close reason (also the access log's).
    pub fn reason(self) -> &'static str {
        match self {
            Closing::Slow => "slow subscriber",
            Closing::Lost => "published frame lost",
        }
    }
}

/// The result of offering a frame to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Written to the client's socket by the publisher itself.
    Sent,
    Queued,
    /// Queued, after dropping this many older frames (`drop_oldest`).
    Dropped(usize),
    /// Not queued: the frame alone is larger than the whole bound, so it
    /// is the one dropped (`drop_oldest`).
    Discarded,
    /// Not queued: the subscriber overflowed (`close`) or is gone.
    Refused,
}

#[derive(Default)]
struct State {
    queue: VecDeque<SharedFrame>,
    /// Cost of `queue` ([`SharedFrame::cost`]).
    bytes: usize,
    waker: Option<Waker>,
    /// The channels subscribed to (at most `fanout.max_subscriptions_per_session`).
    channels: Vec<Box<str>>,
    /// The session must close (`close` policy, or `lost`): nothing more
    /// is queued.
    overflowed: bool,
    /// Why, if not the `close` policy: see [`Closing::Lost`].
    lost: bool,
    /// The session ended: no new subscriptions.
    left: bool,
    /// The client's socket, for direct delivery (see the module header).
    sink: Option<Sink>,
    /// The part of a directly sent frame the socket did not take: it goes
    /// to the client before anything else the session writes.
    rest: Option<Bytes>,
    /// Frames sent directly and not yet counted by the session (a
    /// per-session tally, flushed into the route's counters by the session).
    sent: u64,
}

pub struct Subscriber {
    /// Process-unique: a mux session's id, or above `u32::MAX` for a
    /// passthrough session; a publisher's "except" names it.
    pub key: u64,
    /// The route's policy and grants for this session.
    pub access: Arc<Access>,
    /// The registry, to leave every channel when the session ends.
    pub(super) hub: Arc<Hub>,
    state: Mutex<State>,
    /// The session's task is idle with nothing on its way to the client
    /// (not inside a message, nothing queued, not closing): a frame may go
    /// to the socket directly. Set by the session when it goes idle,
    /// cleared when it is polled and by anything handing it work.
    clear: AtomicBool,
    /// The worker the session lives on (`super::worker`; 0: none yet),
    /// set once when it attaches: publishes elsewhere hand it the frame
    /// through that worker's batch.
    pub(super) home: AtomicU32,
}

impl Subscriber {
    pub(super) fn new(hub: Arc<Hub>, key: u64, access: Arc<Access>) -> Subscriber {
        Subscriber {
            key,
            access,
            hub,
            state: Mutex::default(),
            clear: AtomicBool::new(false),
            home: AtomicU32::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only queue operations happen under this lock; a panic there
        // would leave it consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `frame` (the policy when full) and wake the session.
    fn enqueue(&self, mut s: MutexGuard<'_, State>, frame: &SharedFrame) -> Delivery {
        let cost = frame.cost();
        let mut dropped = 0;
        if cost > self.access.queue_bytes && self.access.policy == SlowPolicy::DropOldest {
            return Delivery::Discarded;
        }
        if s.bytes + cost > self.access.queue_bytes {
            match self.access.policy {
                SlowPolicy::DropOldest => {
                    while s.bytes + cost > self.access.queue_bytes {
                        let Some(old) = s.queue.pop_front() else {
                            break;
                        };
                        s.bytes -= old.cost();
                        dropped += 1;
                    }
                }
                SlowPolicy::Close => {
                    s.overflowed = true;
                    s.queue = VecDeque::new();
                    s.bytes = 0;
                    wake_unlocked(s);
                    return Delivery::Refused;
                }
            }
        }
        s.bytes += cost;
        s.queue.push_back(frame.clone());
        wake_unlocked(s);
        if dropped == 0 {
            Delivery::Queued
        } else {
            Delivery::Dropped(dropped)
        }
    }

    /// The session's side: the oldest waiting frame, or register `cx`.
    pub fn next(&self, cx: &mut Context<'_>) -> Next {
        let mut s = self.lock();
        if s.overflowed {
            return Next::Overflowed;
        }
        match s.queue.pop_front() {
            Some(f) => {
                s.bytes -= f.cost();
                if s.queue.is_empty() && s.queue.capacity() > KEEP_SLOTS {
                    // After a burst, give the memory back; a subscriber
                    // that keeps up keeps its few slots, so a delivery to
                    // it allocates nothing.
                    s.queue = VecDeque::new();
                }
                Next::Frame(f)
            }
            None => {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Next::Empty
            }
        }
    }

    /// Has the queue overflowed under the `close` policy? Registers `cx`
    /// when not, so the overflow wakes a session whose client is not
    /// taking bytes (it does not take frames then, but must close).
    pub fn overflowed(&self, cx: &mut Context<'_>) -> bool {
        let mut s = self.lock();
        if !s.overflowed && !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        s.overflowed
    }

    /// Why the session must close, once [`Subscriber::overflowed`] said so.
    pub fn closing(&self) -> Closing {
        match self.lock().lost {
            true => Closing::Lost,
            false => Closing::Slow,
        }
    }

    /// A direct send's outcome is unknown ([`Closing::Lost`]): drop what
    /// waits and wake the session, which closes.
    pub(super) fn lose(&self) {
        let mut s = self.lock();
        s.overflowed = true;
        s.lost = true;
        s.queue = VecDeque::new();
        s.bytes = 0;
        s.rest = None;
        self.clear.store(false, Ordering::Relaxed);
        wake_unlocked(s);
    }

    /// The registry (for its metrics).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Is a frame waiting (without registering a waker)?
    pub fn has_frames(&self) -> bool {
        let s = self.lock();
        !s.queue.is_empty() || s.overflowed
    }

    /// Subscribe to `channel` (checked by the hub).
    pub fn subscribe(self: &Arc<Self>, channel: &[u8]) -> Result<bool, super::Refusal> {
        Arc::clone(&self.hub).subscribe(self, channel)
    }

    /// Unsubscribe from `channel`; unknown subscriptions are ignored.
    pub fn unsubscribe(self: &Arc<Self>, channel: &[u8]) {
        Arc::clone(&self.hub).unsubscribe(self, channel)
    }

    /// The session ended: leave every channel, drop what waits.
    pub fn leave(self: &Arc<Self>) {
        Arc::clone(&self.hub).leave(self)
    }

    // ---- the hub's bookkeeping, under the hub's write lock

    /// Record a new subscription; `Err` if over `max` or already gone.
    pub(super) fn add_channel(&self, name: &str, max: usize) -> Result<bool, super::Refusal> {
        let mut s = self.lock();
        if s.left {
            return Err(super::Refusal::Closed);
        }
        if s.channels.iter().any(|c| &**c == name) {
            return Ok(false);
        }
        if s.channels.len() >= max {
            return Err(super::Refusal::SessionLimit);
        }
        s.channels.push(name.into());
        Ok(true)
    }

    pub(super) fn remove_channel(&self, name: &str) -> bool {
        let mut s = self.lock();
        let before = s.channels.len();
        s.channels.retain(|c| &**c != name);
        s.channels.len() != before
    }

    /// Mark the subscriber gone; its channels, for the hub to leave.
    pub(super) fn take_channels(&self) -> Vec<Box<str>> {
        let mut s = self.lock();
        s.left = true;
        s.queue = VecDeque::new();
        s.bytes = 0;
        s.sink = None;
        s.rest = None;
        self.clear.store(false, Ordering::Relaxed);
        std::mem::take(&mut s.channels)
    }

    /// The channels subscribed to now (tests, debugging).
    pub fn channels(&self) -> Vec<String> {
        self.lock().channels.iter().map(|c| c.to_string()).collect()
    }
}
