//! Fan-out at the edge (issue #17, docs/fanout.md): an application
//! publishes a message to a channel once, and the gateway delivers it to
//! every subscribed client session.
//!
//! - [`Hub`] (this file): the channel registry — channel → subscribers —
//!   with the gateway-wide limits, publish and local delivery, and the
//!   [`ChannelHook`] seam a backplane between instances plugs into.
//! - `frame`: the published message encoded once as a shared WebSocket
//!   frame; `subscriber`: one session's bounded queue and slow-subscriber
//!   policy; `access`: allow patterns and the token's channel grants;
//!   `publish_api`: the HTTP publish listener; `metrics`; `worker`: the
//!   per-worker delivery batches (one wake-up per worker per publish);
//!   `uring`: how a broadcast's direct sends are written (one by one, or
//!   in io_uring batches, `[fanout] send_batch`); `limits`: the
//!   gateway-wide bounds, the slow-subscriber policy and the refusals.
//!
//! Subscriptions come from the application over mux (SUBSCRIBE), from any
//! upstream's 101 (`X-Tidegate-Subscribe`), or from the client's token
//! (`channels_claim`); publishes from the application over mux (PUBLISH)
//! or from back-end jobs over HTTP.

pub mod access;
pub mod backplane;
pub mod frame;
mod limits;
pub mod metrics;
pub mod publish_api;
pub mod subscriber;
mod uring;
pub mod worker;

pub use access::{Access, Pattern};
pub use frame::SharedFrame;
pub use limits::{Limits, Refusal, SendBatch, SlowPolicy};
pub use subscriber::{Closing, Delivery, Next, Subscriber};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use tidegate_mux::codec::valid_channel;

/// The 101 header through which any upstream subscribes its session; the
/// gateway consumes it (the client never sees it).
pub const SUBSCRIBE_HEADER: &str = "x-tidegate-subscribe";

/// Told when a channel gets its first local subscriber and when it loses
/// its last — what a backplane needs to subscribe upstream only to the
/// channels this instance serves. Called under the registry's write lock:
/// it must not block (queue the change and act on it elsewhere).
pub trait ChannelHook: Send + Sync {
    fn first_local(&self, channel: &str);
    fn last_local(&self, channel: &str);
    /// A publish was accepted on this instance (before local delivery,
    /// whether or not it has local subscribers), for a backplane to carry
    /// to the other instances. Must not block.
    fn published(&self, _channel: &str, _text: bool, _payload: &[u8]) {}
}

/// Where a publish came from (metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Mux,
    Http,
}

/// Channel → its subscribers. A list is copied on write: a publish takes
/// a reference to it and sends with the lock released, so a subscribe
/// (on any worker) never waits for a broadcast, and changes the list in
/// place unless a publish still holds it.
type Channels = HashMap<Box<str>, worker::Subscribers>;

/// The channel registry of this gateway.
pub struct Hub {
    limits: Limits,
    channels: RwLock<Channels>,
    pub metrics: metrics::FanoutMetrics,
    hook: OnceLock<Arc<dyn ChannelHook>>,
    /// Itself, for the jobs a publish hands to other workers.
    me: Weak<Hub>,
}

/// Keys of passthrough subscribers start above every mux session id.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1 << 32);

impl Hub {
    pub fn new(limits: Limits, metrics: metrics::FanoutMetrics) -> Arc<Hub> {
        Arc::new_cyclic(|me| Hub {
            limits,
            channels: RwLock::default(),
            metrics,
            hook: OnceLock::new(),
            me: me.clone(),
        })
    }

    /// Install the backplane's hook (once).
    pub fn set_hook(&self, hook: Arc<dyn ChannelHook>) -> bool {
        self.hook.set(hook).is_ok()
    }

    fn read(&self) -> RwLockReadGuard<'_, Channels> {
        // Plain map and vector operations only under this lock.
        self.channels.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Channels> {
        self.channels.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A subscriber handle for a session. `key`: the mux session id, or
    /// `None` for a passthrough session (a fresh key above `u32::MAX`).
    pub fn subscriber(self: &Arc<Self>, key: Option<u32>, access: Arc<Access>) -> Arc<Subscriber> {
        let key = key.map_or_else(|| NEXT_KEY.fetch_add(1, Ordering::Relaxed), u64::from);
        Arc::new(Subscriber::new(Arc::clone(self), key, access))
    }

    /// Subscribe `sub` to `channel`. `Ok(false)`: it already was. Refusals
    /// are counted here.
    pub fn subscribe(&self, sub: &Arc<Subscriber>, channel: &[u8]) -> Result<bool, Refusal> {
        let r = self.try_subscribe(sub, channel);
        if let Err(why) = r {
            self.refused(why, "subscribe");
        }
        r
    }

    fn try_subscribe(&self, sub: &Arc<Subscriber>, channel: &[u8]) -> Result<bool, Refusal> {
        let name = channel_name(channel)?;
        if !sub.access.permits(name) {
            return Err(Refusal::NotGranted);
        }
        let mut map = self.write();
        let exists = map.contains_key(name);
        if !exists && map.len() >= self.limits.max_channels {
            return Err(Refusal::ChannelLimit);
        }
        if !sub.add_channel(name, self.limits.max_subscriptions_per_session)? {
            return Ok(false);
        }
        Arc::make_mut(map.entry(name.into()).or_default()).push(Arc::clone(sub));
        self.metrics.subscriptions.inc();
        if !exists {
            self.metrics.channels.set(map.len() as i64);
            if let Some(h) = self.hook.get() {
                h.first_local(name);
            }
        }
        Ok(true)
    }

    /// Unsubscribe; an unknown subscription is ignored.
    pub fn unsubscribe(&self, sub: &Arc<Subscriber>, channel: &[u8]) {
        let Ok(name) = channel_name(channel) else {
            return;
        };
        let mut map = self.write();
        if sub.remove_channel(name) {
            self.remove(&mut map, sub, name);
        }
    }

    /// The session ended: leave every channel.
    pub fn leave(&self, sub: &Arc<Subscriber>) {
        let channels = sub.take_channels();
        if channels.is_empty() {
            return;
        }
        let mut map = self.write();
        for name in &channels {
            self.remove(&mut map, sub, name);
        }
    }

    fn remove(&self, map: &mut Channels, sub: &Arc<Subscriber>, name: &str) {
        let Some(subs) = map.get_mut(name) else {
            return;
        };
        if let Some(i) = subs.iter().position(|s| Arc::ptr_eq(s, sub)) {
            Arc::make_mut(subs).swap_remove(i);
            self.metrics.subscriptions.dec();
        }
        if subs.is_empty() {
            map.remove(name);
            self.metrics.channels.set(map.len() as i64);
            if let Some(h) = self.hook.get() {
                h.last_local(name);
            }
        }
    }

    /// Publish one whole message: encode it once and deliver it to every
    /// local subscriber of `channel` but `except`. Returns the number of
    /// subscribers it was queued to. A backplane would also forward it
    /// here, and call [`Hub::deliver_local`] for what it receives.
    pub fn publish(
        &self,
        channel: &[u8],
        text: bool,
        payload: &[u8],
        except: Option<u64>,
        source: Source,
    ) -> Result<usize, Refusal> {
        let name = match channel_name(channel) {
            Ok(n) => n,
            Err(why) => {
                self.refused(why, "publish");
                return Err(why);
            }
        };
        match source {
            Source::Mux => self.metrics.publishes_mux.inc(),
            Source::Http => self.metrics.publishes_http.inc(),
        }
        if let Some(h) = self.hook.get() {
            h.published(name, text, payload);
        }
        Ok(self.deliver_local(name, text, payload, except))
    }

    /// Offer the message to every local subscriber of `channel` but
    /// `except`, encoded once — and not at all when the channel has no
    /// local subscriber. The subscriber list is taken under the read lock
    /// and used after it: a subscription made after this started does not
    /// get the frame, and frames of one publisher keep their order on
    /// every subscriber. Subscribers on this thread (or on none) are
    /// offered the frame here; those of each other worker get it through
    /// one job on that worker ([`worker`]). Returns the deliveries made or
    /// handed over.
    pub fn deliver_local(
        &self,
        channel: &str,
        text: bool,
        payload: &[u8],
        except: Option<u64>,
    ) -> usize {
        let Some(subs) = self.read().get(channel).cloned() else {
            return 0;
        };
        let frame = SharedFrame::encode(text, payload);
        let here = std::thread::current().id();
        let mine = worker::current();
        let mut elsewhere: worker::PerWorker = [0; worker::MAX_WORKERS as usize + 1];
        let mut tally = Tally::default();
        let pick = |sub: &Subscriber| {
            if Some(sub.key) == except {
                return false;
            }
            match worker::home(sub) {
                h if h == 0 || h == mine => true,
                h => {
                    elsewhere[h as usize] += 1;
                    false
                }
            }
        };
        uring::offer_all(
            &subs,
            &frame,
            here,
            self.limits.send_batch,
            pick,
            &mut tally,
        );
        let mut reached = tally.reached + tally.sent;
        if elsewhere.iter().any(|n| *n > 0) {
            if let Some(me) = self.me.upgrade() {
                reached += worker::hand_off(&elsewhere, &frame, &subs, except, &me);
            }
        }
        self.count(&tally, &frame);
        reached
    }

    /// Count one publish's deliveries on one thread: once per publish (or
    /// per worker's job), not per delivery. Frames written directly are
    /// handed to the clients' sockets by now: one latency observation
    /// stands for all of them (the last one's); queued frames are observed
    /// as their sessions write them.
    pub(crate) fn count(&self, tally: &Tally, frame: &SharedFrame) {
        if tally.sent > 0 {
            self.metrics
                .latency
                .observe(frame.published().elapsed().as_secs_f64());
        }
        let reached = tally.reached + tally.sent;
        if reached > 0 {
            self.metrics.deliveries.inc_by(reached as u64);
        }
        if tally.dropped > 0 {
            self.metrics.drops.inc_by(tally.dropped as u64);
        }
        if tally.one_by_one {
            self.metrics.send_batch_fallbacks.inc();
        }
        if tally.lost > 0 {
            self.metrics.lost.inc_by(tally.lost as u64);
        }
    }

    fn refused(&self, why: Refusal, what: &'static str) {
        tracing::debug!(reason = why.label(), what, "fan-out request refused");
        self.metrics.rejected(why);
    }

    /// Count a refusal made outside the hub (e.g. fan-out unsupported).
    pub fn count_refusal(&self, why: Refusal) {
        self.refused(why, "subscribe");
    }
}

/// The outcomes of offering one frame to some subscribers.
#[derive(Default)]
pub(crate) struct Tally {
    /// Queued (possibly after dropping older frames).
    reached: usize,
    /// Frames dropped to make room, or not queued at all.
    dropped: usize,
    /// Written to the client's socket directly.
    sent: usize,
    /// `send_batch = "io_uring"`, but sent one by one (no ring here).
    one_by_one: bool,
    /// Sessions closed because a direct send's outcome was lost.
    lost: usize,
}

impl Tally {
    fn add(&mut self, d: Delivery) {
        match d {
            Delivery::Sent => self.sent += 1,
            Delivery::Queued => self.reached += 1,
            Delivery::Dropped(n) => {
                self.reached += 1;
                self.dropped += n;
            }
            Delivery::Discarded => self.dropped += 1,
            Delivery::Refused => {}
        }
    }
}

/// A channel name as text, if valid.
fn channel_name(channel: &[u8]) -> Result<&str, Refusal> {
    if !valid_channel(channel) {
        return Err(Refusal::InvalidName);
    }
    std::str::from_utf8(channel).map_err(|_| Refusal::InvalidName)
}

/// The channels of an `X-Tidegate-Subscribe` value (comma-separated).
pub fn header_channels(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests;
