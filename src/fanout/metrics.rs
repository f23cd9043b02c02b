//! Fan-out metrics (`tidegate_fanout_*`): registered once with the
//! gateway's registry; the handles are resolved here, so publishing and
//! delivering never look up a label. Labels are fixed sets (the publish
//! source, the refusal reason), never channel names.

use super::Refusal;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Publish-to-delivery latency buckets (seconds): a delivery should take
/// microseconds; the tail shows subscribers that were behind.
const DELIVERY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Clone)]
pub struct FanoutMetrics {
    /// Channels with at least one local subscriber.
    pub channels: IntGauge,
    /// Subscriptions (session × channel) in force.
    pub subscriptions: IntGauge,
    /// Publishes accepted, by source (`mux`, `http`).
    pub publishes_mux: IntCounter,
    pub publishes_http: IntCounter,
    /// Frames queued to a subscriber.
    pub deliveries: IntCounter,
    /// Frames dropped by the `drop_oldest` policy.
    pub drops: IntCounter,
    /// Subscribers closed (1008) by the `close` policy.
    pub slow_closes: IntCounter,
    /// Broadcasts (per worker thread) sent one send at a time although
    /// `send_batch = "io_uring"`: the kernel refused a ring, or one failed.
    pub send_batch_fallbacks: IntCounter,
    /// Subscribers closed with 1011: a direct send's outcome was lost
    /// (`Closing::Lost`).
    pub lost: IntCounter,
    /// Subscribers left without direct delivery: the connection cap left
    /// no descriptor over for their duplicate (`crate::fds`, extra).
    pub no_descriptor: IntCounter,
    /// Subscriptions and publishes refused, by [`Refusal::label`].
    rejected: IntCounterVec,
    /// From the publish being accepted to the frame being handed to the
    /// client's write.
    pub latency: Histogram,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl FanoutMetrics {
    pub fn new(r: &Registry) -> FanoutMetrics {
        let gauge =
            |name: &str, help: &str| register(r, IntGauge::new(name, help).expect("valid metric"));
        let counter = |name: &str, help: &str| {
            register(r, IntCounter::new(name, help).expect("valid metric"))
        };
        let publishes = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "tidegate_fanout_publishes_total",
                    "Messages published, by source (mux PUBLISH frame, HTTP publish API).",
                ),
                &["source"],
            )
            .expect("valid metric"),
        );
        let rejected = register(
            r,
            IntCounterVec::new(
                Opts::new(
                    "tidegate_fanout_rejected_total",
                    "Subscriptions and publishes refused, by reason.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
        );
        for reason in Refusal::LABELS {
            rejected.with_label_values(&[reason]);
        }
        let latency = register(
            r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "tidegate_fanout_delivery_seconds",
                    "From a publish being accepted to its frame being handed to a subscriber's client write.",
                )
                .buckets(DELIVERY_BUCKETS.to_vec()),
            )
            .expect("valid metric"),
        );
        FanoutMetrics {
            channels: gauge(
                "tidegate_fanout_channels",
                "Channels with at least one local subscriber.",
            ),
            subscriptions: gauge(
                "tidegate_fanout_subscriptions",
                "Subscriptions (session, channel) in force.",
            ),
            publishes_mux: publishes.with_label_values(&["mux"]),
            publishes_http: publishes.with_label_values(&["http"]),
            deliveries: counter(
                "tidegate_fanout_deliveries_total",
                "Published frames queued to a subscriber.",
            ),
            drops: counter(
                "tidegate_fanout_drops_total",
                "Published frames dropped for a subscriber that did not keep up (policy drop_oldest).",
            ),
            slow_closes: counter(
                "tidegate_fanout_slow_closes_total",
                "Subscribers closed with 1008 for not keeping up (policy close).",
            ),
            send_batch_fallbacks: counter(
                "tidegate_fanout_send_batch_fallbacks_total",
                "Broadcasts (per worker thread) sent one send at a time although send_batch = io_uring: the kernel refused a ring, or a ring failed.",
            ),
            lost: counter(
                "tidegate_fanout_lost_total",
                "Subscribers closed with 1011 because the outcome of a send to them was lost (an io_uring batch failed after the kernel took it).",
            ),
            no_descriptor: counter(
                "tidegate_fanout_direct_no_descriptor_total",
                "Subscribers whose deliveries go through their queue because the connection cap left no descriptor over for direct delivery.",
            ),
            rejected,
            latency,
        }
    }

    /// Count a refusal.
    pub fn rejected(&self, why: Refusal) {
        self.rejected.with_label_values(&[why.label()]).inc();
    }
}
