//! The NATS backplane (issue 18, docs/fanout.md "Across instances"): carries
//! publishes between gateway instances so that a subscriber on any replica
//! receives a message published on any other.
//!
//! - **Interest**: the hub tells [`Backplane::interest`] when a channel gets
//!   its first local subscriber or loses its last; the backplane subscribes
//!   to the channel's subject only while this instance has an audience for
//!   it. Changes are coalesced per channel and applied by one task.
//! - **Publish**: the hub hands every accepted publish to
//!   [`Backplane::publish`], which only queues it (bounded, drop and count
//!   when full) — local delivery never waits for NATS. The publishing
//!   instance delivers its own subscribers itself (at once, without the
//!   NATS round trip) and its connection is opened with `no_echo`, so NATS
//!   never hands the message back: each instance delivers exactly once.
//! - **Faults**: an unreachable NATS never stops the gateway (the client
//!   connects in the background); publishes while disconnected are dropped
//!   and counted (core NATS is at-most-once anyway); after a reconnect the
//!   client re-sends every subscription, and the task counts them.
//!
//! - **Thread**: the client and both tasks run on a thread of their own,
//!   so a publish leaves for NATS while the worker is still writing it to
//!   its own subscribers (`thread`).
//!
//! `subject`: the channel ↔ subject and header rules; `connect`: client
//! options; `interest`: pending changes and applying them; `task`: the
//! subscribe/receive and publish loops; `thread`; `metrics`.

pub mod connect;
mod interest;
pub mod metrics;
pub mod subject;
mod task;
mod thread;

use super::{ChannelHook, Hub};
use crate::config::backplane::BackplaneConfig;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

pub use metrics::BackplaneMetrics;

/// Where messages received from other instances are delivered: the hub's
/// local delivery. Returns the number of local subscribers reached.
pub trait LocalDelivery: Send + Sync {
    fn deliver(&self, channel: &str, text: bool, payload: &[u8]) -> usize;
}

/// One publish on its way to NATS.
struct Outgoing {
    channel: Box<str>,
    text: bool,
    payload: Bytes,
    published_micros: u64,
}

/// The running backplane: a cheap, non-blocking front for the hub, and the
/// tasks that own the NATS client.
pub struct Backplane {
    /// `backplane.required`: `/readyz` waits for the connection.
    required: bool,
    client: async_nats::Client,
    /// Interest changes not yet applied, coalesced per channel.
    pending: interest::Pending,
    /// Wakes the subscription task when `pending` changes.
    wake: Notify,
    /// The publish queue (`publish_queue` entries).
    outgoing: mpsc::Sender<Outgoing>,
    pub metrics: BackplaneMetrics,
}

impl Backplane {
    /// Set up the client (it connects in the background, retrying for
    /// ever) and start the backplane's tasks on a thread of their own
    /// (`thread`); they end with `stop`. Messages from other instances are
    /// delivered by a task on the calling runtime.
    pub async fn start(
        config: &BackplaneConfig,
        metrics: BackplaneMetrics,
        local: Arc<dyn LocalDelivery>,
        stop: CancellationToken,
    ) -> Result<Arc<Backplane>, connect::SetupError> {
        let inbound_dropped = metrics.drop_counter(metrics::Drop::InboundFull);
        let local = thread::deliver_here(local, inbound_dropped, stop.clone());
        let config = config.clone();
        let started = thread::spawn(stop.clone(), move |done| async move {
            let _ = done.send(Backplane::start_here(&config, metrics, local, stop).await);
        })
        .map_err(connect::SetupError::Thread)?;
        started.await.map_err(|_| {
            connect::SetupError::Thread(std::io::Error::other("the backplane thread ended"))
        })?
    }

    /// `start`, on the backplane thread's runtime: the client's own
    /// connection task and the backplane's tasks are spawned there.
    async fn start_here(
        config: &BackplaneConfig,
        metrics: BackplaneMetrics,
        local: Arc<dyn LocalDelivery>,
        stop: CancellationToken,
    ) -> Result<Arc<Backplane>, connect::SetupError> {
        let instance = crate::mux::instance_id();
        let (events_tx, events) = mpsc::channel(connect::EVENT_QUEUE);
        let client = connect::options(config, &instance, events_tx)?
            .connect(config.servers.clone())
            .await?;
        let (outgoing, publishes) = mpsc::channel(config.publish_queue);
        let backplane = Arc::new(Backplane {
            required: config.required,
            client,
            pending: interest::Pending::default(),
            wake: Notify::new(),
            outgoing,
            metrics,
        });
        let ctx = task::Context {
            backplane: Arc::clone(&backplane),
            prefix: config.subject_prefix.clone(),
            instance,
            stop,
        };
        tokio::spawn(task::publisher(ctx.clone(), publishes));
        tokio::spawn(task::subscriptions(ctx, events, local));
        tracing::info!(servers = ?config.servers, "fan-out backplane: NATS client started");
        Ok(backplane)
    }

    /// The NATS connection is up.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// What `/readyz` needs from the backplane.
    pub fn ready(&self) -> bool {
        !self.required || self.connected()
    }

    /// `channel` got its first local subscriber (`true`) or lost its last
    /// (`false`). Never blocks: called under the hub's registry lock.
    pub fn interest(&self, channel: &str, wanted: bool) {
        self.pending.set(channel, wanted);
        self.wake.notify_one();
    }

    /// Forward a publish accepted on this instance to the others. Never
    /// blocks: a full queue drops the message and counts it.
    pub fn publish(&self, channel: &str, text: bool, payload: &[u8]) {
        let out = Outgoing {
            channel: channel.into(),
            text,
            payload: Bytes::copy_from_slice(payload),
            published_micros: subject::now_micros(),
        };
        if self.outgoing.try_send(out).is_err() {
            self.metrics.dropped(metrics::Drop::QueueFull);
        }
    }
}

/// Start the backplane and hook it into `hub`. A client that cannot even be
/// set up is logged and leaves fan-out local (never a crash); `/readyz`
/// then follows `backplane.required`.
pub async fn attach(
    hub: &Arc<Hub>,
    config: &BackplaneConfig,
    metrics: &crate::metrics::Metrics,
    stop: CancellationToken,
) -> Option<Arc<Backplane>> {
    let m = BackplaneMetrics::new(&metrics.registry);
    let local: Arc<dyn LocalDelivery> = Arc::clone(hub) as Arc<dyn LocalDelivery>;
    match Backplane::start(config, m, local, stop).await {
        Ok(b) => {
            hub.set_hook(Arc::clone(&b) as Arc<dyn ChannelHook>);
            Some(b)
        }
        Err(e) => {
            tracing::error!(error = %e, reason = e.label(), "fan-out backplane not started: fan-out stays local");
            None
        }
    }
}

impl ChannelHook for Backplane {
    fn first_local(&self, channel: &str) {
        self.interest(channel, true);
    }

    fn last_local(&self, channel: &str) {
        self.interest(channel, false);
    }

    fn published(&self, channel: &str, text: bool, payload: &[u8]) {
        self.publish(channel, text, payload);
    }
}

/// What other instances publish is delivered like a local publish, to
/// every local subscriber (the `except` session of a mux PUBLISH exists
/// only on the instance that published).
impl LocalDelivery for Hub {
    fn deliver(&self, channel: &str, text: bool, payload: &[u8]) -> usize {
        self.deliver_local(channel, text, payload, None)
    }
}
