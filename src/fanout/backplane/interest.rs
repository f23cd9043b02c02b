//! Interest changes on their way to NATS: the hub's first-subscriber and
//! last-subscriber events, coalesced per channel ([`Pending`]), and
//! [`apply`], which turns a batch of them into SUBs and UNSUBs and
//! confirms them with a flush.
//!
//! A batch may fail (a refused SUB) or time out (a stalled server: the
//! client's command queue or the flush's PONG never comes). Either way
//! `apply` compares the batch with what it actually did and puts back
//! every change it did not make — the desired state of each channel is
//! known, so nothing waits for that channel to change again — and the
//! subscription task re-applies it after [`RETRY_DELAY`].

use super::metrics::BackplaneMetrics;
use super::subject;
use async_nats::Message;
use futures_util::Stream;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio_stream::StreamMap;

/// How long one batch of subscription changes may take to be confirmed by
/// the server (SUBs then a PING/PONG flush) before it is given up.
pub(super) const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause before a failed or timed-out batch's missing changes are applied
/// again (a change or a reconnect meanwhile applies them sooner).
pub(super) const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Interest changes not yet applied: channel → wanted. Coalesced, so it
/// holds at most one entry per channel (bounded by `fanout.max_channels`).
#[derive(Default)]
pub(super) struct Pending(Mutex<HashMap<Box<str>, bool>>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, bool>> {
        // Plain map operations only under this lock: a panic cannot leave
        // it half-changed.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest wish for `channel`; it replaces an unapplied earlier one.
    pub fn set(&self, channel: &str, wanted: bool) {
        self.lock().insert(channel.into(), wanted);
    }

    fn take(&self) -> HashMap<Box<str>, bool> {
        std::mem::take(&mut *self.lock())
    }

    /// Put back changes that were not applied, unless a newer change for
    /// the same channel arrived meanwhile.
    fn restore(&self, changes: HashMap<Box<str>, bool>) {
        let mut pending = self.lock();
        for (channel, wanted) in changes {
            pending.entry(channel).or_insert(wanted);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// What [`apply`] needs from the NATS client: the real one, or a fake in
/// the tests (which stalls and fails on demand).
pub(super) trait Subscriptions: Sync {
    /// One subject's messages.
    type Sub: Stream<Item = Message> + Unpin + Send;
    type Error: std::fmt::Display;
    fn connected(&self) -> bool;
    fn subscribe(
        &self,
        subject: String,
    ) -> impl Future<Output = Result<Self::Sub, Self::Error>> + Send;
    /// `true` once the server has answered a PING sent after everything
    /// before it.
    fn flush(&self) -> impl Future<Output = bool> + Send;
}

impl Subscriptions for async_nats::Client {
    type Sub = async_nats::Subscriber;
    type Error = async_nats::SubscribeError;

    fn connected(&self) -> bool {
        self.connection_state() == async_nats::connection::State::Connected
    }

    async fn subscribe(&self, subject: String) -> Result<Self::Sub, Self::Error> {
        async_nats::Client::subscribe(self, subject).await
    }

    async fn flush(&self) -> bool {
        async_nats::Client::flush(self).await.is_ok()
    }
}

/// How a call of [`apply`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// Every pending change is applied (or there was none).
    Done,
    /// Disconnected: nothing sent; the changes wait for `Connected`.
    Waiting,
    /// Some changes were not made; they are pending again for a retry.
    Retry,
}

/// Apply the pending interest changes: subscribe and unsubscribe, then
/// flush so that the server has them before the gauge says so; give up on
/// the batch after `limit` ([`APPLY_TIMEOUT`]; shorter in the tests).
pub(super) async fn apply<C: Subscriptions>(
    client: &C,
    pending: &Pending,
    prefix: &str,
    streams: &mut StreamMap<Box<str>, C::Sub>,
    metrics: &BackplaneMetrics,
    limit: Duration,
) -> Applied {
    if !client.connected() {
        return Applied::Waiting;
    }
    let changes = pending.take();
    if changes.is_empty() {
        return Applied::Done;
    }
    let work = async {
        for (channel, &wanted) in &changes {
            if !wanted {
                // Dropping the subscriber sends the UNSUB.
                streams.remove(channel);
                continue;
            }
            if streams.contains_key(channel) {
                continue;
            }
            match client.subscribe(subject::subject(prefix, channel)).await {
                Ok(sub) => {
                    streams.insert(channel.clone(), sub);
                }
                Err(e) => tracing::warn!(error = %e, "fan-out backplane: subscribe failed"),
            }
        }
        client.flush().await
    };
    // On timeout the loop above is dropped wherever it was waiting; a SUB
    // whose command was not queued was not sent (the queue's send is
    // cancel-safe), so `streams` says exactly what was done.
    let confirmed = tokio::time::timeout(limit, work).await.unwrap_or(false);
    metrics.subjects.set(streams.len() as i64);
    let missed: HashMap<Box<str>, bool> = changes
        .into_iter()
        .filter(|(channel, wanted)| streams.contains_key(channel) != *wanted)
        .collect();
    if !confirmed || !missed.is_empty() {
        metrics.subscribe_failures.inc();
    }
    if missed.is_empty() {
        return Applied::Done;
    }
    tracing::warn!(
        channels = missed.len(),
        "fan-out backplane: subscription changes not applied; retrying"
    );
    pending.restore(missed);
    Applied::Retry
}

#[cfg(test)]
mod tests;
