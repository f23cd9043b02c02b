//! Where the backplane runs: a thread of its own with a single-threaded
//! runtime, so that a publish reaches NATS while the publishing worker is
//! still writing the message to its own subscribers — on the worker's
//! runtime the NATS write waited behind every local send (one worker
//! writing 1,000 sockets holds it for milliseconds), and that wait was
//! most of the cross-instance latency.
//!
//! What other instances publish comes the other way: the backplane thread
//! hands each message to a task on the runtime that started the backplane
//! (a worker), which delivers it like a local publish — so deliveries to
//! that worker's subscribers keep the direct write (`Subscriber::offer`)
//! and cost one send each, not a cross-thread wake-up per subscriber.

use super::LocalDelivery;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages from other instances waiting for their local delivery; when
/// full (the worker is that far behind) a message is dropped and counted.
pub(super) const INBOUND_QUEUE: usize = 4096;

/// One message from another instance, on its way to the local subscribers.
struct Inbound {
    channel: Box<str>,
    text: bool,
    payload: Bytes,
}

/// The backplane thread's side of local delivery: queue and move on.
pub(super) struct Forward {
    tx: mpsc::Sender<Inbound>,
    dropped: prometheus::IntCounter,
}

impl LocalDelivery for Forward {
    /// Always 0: the delivery happens later, on the worker.
    fn deliver(&self, channel: &str, text: bool, payload: &[u8]) -> usize {
        let msg = Inbound {
            channel: channel.into(),
            text,
            payload: Bytes::copy_from_slice(payload),
        };
        if self.tx.try_send(msg).is_err() {
            self.dropped.inc();
        }
        0
    }
}

/// Start the delivering task on the current runtime; returns what the
/// backplane thread hands messages to. `dropped` counts messages the
/// worker could not take in time.
pub(super) fn deliver_here(
    local: Arc<dyn LocalDelivery>,
    dropped: prometheus::IntCounter,
    stop: CancellationToken,
) -> Arc<dyn LocalDelivery> {
    let (tx, mut rx) = mpsc::channel::<Inbound>(INBOUND_QUEUE);
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = stop.cancelled() => return,
                msg = rx.recv() => match msg {
                    Some(m) => m,
                    None => return,
                },
            };
            local.deliver(&msg.channel, msg.text, &msg.payload);
        }
    });
    Arc::new(Forward { tx, dropped })
}

/// Run `body` on a new thread named `tidegate-backplane`, inside a
/// single-threaded runtime of its own, until `stop`; the value `body`
/// produces first (the started backplane, or why it could not start)
/// comes back through the returned receiver.
pub(super) fn spawn<T, F, Fut>(
    stop: CancellationToken,
    body: F,
) -> std::io::Result<tokio::sync::oneshot::Receiver<T>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::oneshot::Sender<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("tidegate-backplane")
        .build()?;
    std::thread::Builder::new()
        .name("tidegate-backplane".into())
        .spawn(move || {
            rt.block_on(async move {
                body(tx).await;
                stop.cancelled().await;
            });
        })?;
    Ok(rx)
}
