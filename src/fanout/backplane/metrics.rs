//! Backplane metrics (`tidegate_fanout_backplane_*`), registered once when
//! a backplane is configured. Labels are fixed sets (direction, drop
//! reason), never channel names or subjects.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Cross-instance latency buckets (seconds): a loopback hop is tens of
/// microseconds; the tail shows a slow NATS path or skewed clocks.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Why a message did not cross the backplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Published while the NATS connection was down.
    Disconnected,
    /// The publish queue (`publish_queue`) was full.
    QueueFull,
    /// The client refused the publish.
    Error,
    /// A message from another instance found the local delivery queue
    /// full (`backplane::thread::INBOUND_QUEUE`: the worker is far behind).
    InboundFull,
}

impl Drop {
    pub const LABELS: &'static [&'static str] =
        &["disconnected", "queue_full", "error", "inbound_full"];

    pub fn label(self) -> &'static str {
        match self {
            Drop::Disconnected => "disconnected",
            Drop::QueueFull => "queue_full",
            Drop::Error => "error",
            Drop::InboundFull => "inbound_full",
        }
    }
}

#[derive(Clone)]
pub struct BackplaneMetrics {
    /// 1 while the NATS connection is up.
    pub connected: IntGauge,
    /// Channel subjects this instance is subscribed to.
    pub subjects: IntGauge,
    /// Messages published to NATS.
    pub messages_out: IntCounter,
    /// Messages received from NATS and delivered locally.
    pub messages_in: IntCounter,
    /// Disconnections from NATS (each one may lose messages in flight).
    pub disconnects: IntCounter,
    /// Subjects re-established after a reconnect.
    pub resubscribes: IntCounter,
    /// Batches of subscription changes NATS did not confirm.
    pub subscribe_failures: IntCounter,
    /// Re-applications of changes a failed batch did not make.
    pub subscribe_retries: IntCounter,
    drops: [IntCounter; 4],
    /// From the publish on one instance to its local delivery on another.
    pub latency: Histogram,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    registry
        .register(Box::new(c.clone()))
        .expect("backplane metrics are registered once");
    c
}

impl BackplaneMetrics {
    pub fn new(r: &Registry) -> BackplaneMetrics {
        let gauge = |name: &str, help: &str| register(r, IntGauge::new(name, help).expect("valid"));
        let counter =
            |name: &str, help: &str| register(r, IntCounter::new(name, help).expect("valid"));
        let messages = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "tidegate_fanout_backplane_messages_total",
                    "Fan-out messages through the NATS backplane, by direction (out: published \
                     to NATS; in: received from another instance).",
                ),
                &["direction"],
            )
            .expect("valid"),
        );
        let drops = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "tidegate_fanout_backplane_drops_total",
                    "Messages the backplane lost, by reason: publishes that did not reach NATS \
                     (disconnected, queue_full, error) and messages from other instances the \
                     local delivery queue had no room for (inbound_full).",
                ),
                &["reason"],
            )
            .expect("valid"),
        );
        let latency = register(
            r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "tidegate_fanout_backplane_latency_seconds",
                    "From the publish on one instance to its local delivery on this one \
                     (publish time carried in a NATS header).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid"),
        );
        BackplaneMetrics {
            connected: gauge(
                "tidegate_fanout_backplane_connected",
                "1 while the NATS backplane connection is up.",
            ),
            subjects: gauge(
                "tidegate_fanout_backplane_subjects",
                "Channel subjects this instance is subscribed to (channels with local \
                 subscribers).",
            ),
            messages_out: messages.with_label_values(&["out"]),
            messages_in: messages.with_label_values(&["in"]),
            disconnects: counter(
                "tidegate_fanout_backplane_disconnects_total",
                "Times the NATS connection was lost.",
            ),
            resubscribes: counter(
                "tidegate_fanout_backplane_resubscribes_total",
                "Subjects re-established after a reconnect.",
            ),
            subscribe_failures: counter(
                "tidegate_fanout_backplane_subscribe_failures_total",
                "Batches of subscription changes NATS did not confirm within 5 s or refused \
                 (the changes not made are retried).",
            ),
            subscribe_retries: counter(
                "tidegate_fanout_backplane_subscribe_retries_total",
                "Retries of subscription changes a failed or timed-out batch did not make \
                 (1 s after it).",
            ),
            drops: [0, 1, 2, 3].map(|i| drops.with_label_values(&[Drop::LABELS[i]])),
            latency,
        }
    }

    pub fn dropped(&self, why: Drop) {
        self.drops[why as usize].inc();
    }

    /// The counter of one reason, for a holder on another thread.
    pub fn drop_counter(&self, why: Drop) -> IntCounter {
        self.drops[why as usize].clone()
    }
}
