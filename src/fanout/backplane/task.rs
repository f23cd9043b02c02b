//! The backplane's two long-lived tasks.
//!
//! - `subscriptions`: owns every channel subscription (one stream per
//!   subject in a `StreamMap`), applies the hub's interest changes while
//!   connected (`interest::apply`, retried after a batch that did not
//!   make them all), delivers what other instances publish to the local
//!   subscribers, and watches the client's connection events.
//! - `publisher`: drains the publish queue into NATS in queue order (one
//!   task, one connection: per-publisher order holds end to end). It may
//!   wait on the client; the hub never waits on it.

use super::interest::{self, Applied, APPLY_TIMEOUT, RETRY_DELAY};
use super::metrics::Drop;
use super::{subject, Backplane, LocalDelivery, Outgoing};
use async_nats::{Event, Message, Subscriber};
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::StreamMap;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub(super) struct Context {
    pub backplane: Arc<Backplane>,
    /// `subject_prefix`.
    pub prefix: String,
    /// This instance's id, sent in every message's headers.
    pub instance: String,
    /// The gateway's stop signal.
    pub stop: CancellationToken,
}

pub(super) async fn publisher(ctx: Context, mut queue: mpsc::Receiver<Outgoing>) {
    let bp = &ctx.backplane;
    loop {
        let out = tokio::select! {
            // Stop: the gateway is exiting; what is still queued is lost.
            _ = ctx.stop.cancelled() => return,
            // Next publish, in the order the hub accepted them.
            out = queue.recv() => match out {
                Some(out) => out,
                None => return,
            },
        };
        if !bp.connected() {
            // Drop rather than let the client buffer: messages queued across
            // an outage would arrive late and in bulk, and core NATS promises
            // at-most-once anyway.
            bp.metrics.dropped(Drop::Disconnected);
            continue;
        }
        let headers = subject::headers(&ctx.instance, out.text, out.published_micros);
        let subject = subject::subject(&ctx.prefix, &out.channel);
        match bp
            .client
            .publish_with_headers(subject, headers, out.payload)
            .await
        {
            Ok(()) => bp.metrics.messages_out.inc(),
            Err(e) => {
                tracing::debug!(error = %e, "fan-out backplane: publish failed");
                bp.metrics.dropped(Drop::Error);
            }
        }
    }
}

pub(super) async fn subscriptions(
    ctx: Context,
    mut events: mpsc::Receiver<Event>,
    local: Arc<dyn LocalDelivery>,
) {
    let bp = &ctx.backplane;
    let mut streams: StreamMap<Box<str>, Subscriber> = StreamMap::new();
    // Whether the connection was ever up: the first `Connected` is not a
    // reconnect.
    let mut was_connected = false;
    // When changes a batch did not make are applied again.
    let mut retry_at: Option<Instant> = None;
    loop {
        let retry = async move {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let applied = tokio::select! {
            // Stop: dropping the subscribers unsubscribes them.
            _ = ctx.stop.cancelled() => return,
            // The hub's interest changed.
            _ = bp.wake.notified() => apply(&ctx, &mut streams).await,
            // A batch left changes unmade: re-apply them.
            _ = retry => {
                bp.metrics.subscribe_retries.inc();
                apply(&ctx, &mut streams).await
            }
            // A message from another instance, on one of our channels.
            Some((channel, msg)) = streams.next(), if !streams.is_empty() => {
                receive(&ctx, local.as_ref(), &channel, msg);
                continue;
            }
            // Connection events from the client.
            Some(event) = events.recv() => {
                on_event(&ctx, &event, streams.len(), &mut was_connected);
                if !matches!(event, Event::Connected) {
                    continue;
                }
                apply(&ctx, &mut streams).await
            }
        };
        // Waiting (disconnected): `Connected` applies them, no timer.
        retry_at = (applied == Applied::Retry).then(|| Instant::now() + RETRY_DELAY);
    }
}

async fn apply(ctx: &Context, streams: &mut StreamMap<Box<str>, Subscriber>) -> Applied {
    let bp = &ctx.backplane;
    interest::apply(
        &bp.client,
        &bp.pending,
        &ctx.prefix,
        streams,
        &bp.metrics,
        APPLY_TIMEOUT,
    )
    .await
}

fn receive(ctx: &Context, local: &dyn LocalDelivery, channel: &str, msg: Message) {
    let meta = subject::incoming(msg.headers.as_ref(), &ctx.instance);
    if meta.own {
        return;
    }
    let m = &ctx.backplane.metrics;
    m.messages_in.inc();
    local.deliver(channel, meta.text, &msg.payload);
    if let Some(at) = meta.published_micros {
        let micros = subject::now_micros().saturating_sub(at);
        m.latency.observe(micros as f64 / 1e6);
    }
}

fn on_event(ctx: &Context, event: &Event, subjects: usize, was_connected: &mut bool) {
    let m = &ctx.backplane.metrics;
    match event {
        Event::Connected => {
            m.connected.set(1);
            if *was_connected {
                // The client has re-sent every SUB on the new connection.
                m.resubscribes.inc_by(subjects as u64);
                tracing::info!(
                    subjects,
                    "fan-out backplane: reconnected to NATS, re-subscribed"
                );
            } else {
                tracing::info!("fan-out backplane: connected to NATS");
            }
            *was_connected = true;
        }
        Event::Disconnected => {
            m.connected.set(0);
            m.disconnects.inc();
            tracing::warn!(
                "fan-out backplane: NATS connection lost; cross-instance publishes are dropped \
                 until it is back"
            );
        }
        Event::Closed => m.connected.set(0),
        other => tracing::warn!(event = %other, "fan-out backplane: NATS client event"),
    }
}
