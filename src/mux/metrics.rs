//! Mux mode metrics: families registered once with the gateway's registry,
//! handles resolved per route and per mux connection slot, never per frame.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Frames per batch (one WebSocket message to the application).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

pub struct MuxFamilies {
    connections_up: IntGaugeVec,
    connects: IntCounterVec,
    connection_sessions: IntGaugeVec,
    sessions: IntCounterVec,
    batch_frames: HistogramVec,
    queued_bytes: IntGaugeVec,
    slow_consumer: IntCounterVec,
    protocol_errors: IntCounterVec,
    cross_worker: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl MuxFamilies {
    pub fn new(r: &Registry) -> MuxFamilies {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(r, g)
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(r, c)
        };
        MuxFamilies {
            connections_up: gauge(
                "tidegate_mux_connections_up",
                "Mux connections open to an application endpoint.",
                &["upstream", "endpoint"],
            ),
            connects: counter(
                "tidegate_mux_connects_total",
                "Mux connection attempts, by result (ok, failed).",
                &["upstream", "endpoint", "result"],
            ),
            connection_sessions: gauge(
                "tidegate_mux_connection_sessions",
                "Sessions carried by each mux connection slot.",
                &["upstream", "endpoint", "slot"],
            ),
            sessions: counter(
                "tidegate_mux_sessions_total",
                "Mux session events: opened, resumed, rejected, resume_failed, open_timeout.",
                &["route", "event"],
            ),
            batch_frames: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "tidegate_mux_batch_frames",
                        "Mux frames per WebSocket message written to the application.",
                    )
                    .buckets(BATCH_BUCKETS.to_vec()),
                    &["upstream"],
                )
                .expect("valid metric"),
            ),
            queued_bytes: gauge(
                "tidegate_mux_queued_bytes",
                "Application → client bytes waiting for slow client sockets (payload plus 64 per frame).",
                &["route"],
            ),
            slow_consumer: counter(
                "tidegate_mux_slow_consumer_closes_total",
                "Clients closed with 1008 because their queue passed mux.session_queue_bytes.",
                &["route"],
            ),
            protocol_errors: counter(
                "tidegate_mux_protocol_errors_total",
                "Mux connections closed for a protocol error from the application, by reason.",
                &["upstream", "reason"],
            ),
            cross_worker: counter(
                "tidegate_mux_cross_worker_sessions_total",
                "Mux sessions (new or resumed) placed on a connection that another worker thread runs: pool_size below the worker count, the worker's own connections down, or busier by more than a quarter than the least-busy one.",
                &["upstream"],
            ),
        }
    }

    /// Sessions of `upstream` placed on another worker's connection.
    pub fn cross_worker(&self, upstream: &str) -> IntCounter {
        self.cross_worker.with_label_values(&[upstream])
    }

    pub fn route(&self, route: &str) -> RouteMuxMetrics {
        let event = |e: &str| self.sessions.with_label_values(&[route, e]);
        RouteMuxMetrics {
            opened: event("opened"),
            resumed: event("resumed"),
            rejected: event("rejected"),
            resume_failed: event("resume_failed"),
            open_timeout: event("open_timeout"),
            queued_bytes: self.queued_bytes.with_label_values(&[route]),
            slow_consumer: self.slow_consumer.with_label_values(&[route]),
        }
    }

    pub fn endpoint(&self, upstream: &str, endpoint: &str) -> EndpointMetrics {
        EndpointMetrics {
            up: self.connections_up.with_label_values(&[upstream, endpoint]),
            connect_ok: self.connects.with_label_values(&[upstream, endpoint, "ok"]),
            connect_failed: self
                .connects
                .with_label_values(&[upstream, endpoint, "failed"]),
        }
    }

    /// Series per mux upstream that must exist before anything happens:
    /// the protocol error counters at 0 for every reason, so an alert on
    /// `increase(...)` sees the first error.
    pub fn upstream(&self, upstream: &str) {
        for reason in tidegate_mux::CodecError::LABELS {
            self.protocol_errors.with_label_values(&[upstream, reason]);
        }
    }

    pub fn conn(&self, upstream: &str, endpoint: &str, slot: usize) -> ConnMetrics {
        ConnMetrics {
            sessions: self.connection_sessions.with_label_values(&[
                upstream,
                endpoint,
                &slot.to_string(),
            ]),
            batch_frames: self.batch_frames.with_label_values(&[upstream]),
            protocol_errors: self.protocol_errors.clone(),
            upstream: upstream.to_string(),
        }
    }
}

#[derive(Clone)]
pub struct RouteMuxMetrics {
    pub opened: IntCounter,
    pub resumed: IntCounter,
    pub rejected: IntCounter,
    pub resume_failed: IntCounter,
    pub open_timeout: IntCounter,
    pub queued_bytes: IntGauge,
    pub slow_consumer: IntCounter,
}

#[derive(Clone)]
pub struct EndpointMetrics {
    pub up: IntGauge,
    pub connect_ok: IntCounter,
    pub connect_failed: IntCounter,
}

#[derive(Clone)]
pub struct ConnMetrics {
    pub sessions: IntGauge,
    pub batch_frames: Histogram,
    protocol_errors: IntCounterVec,
    upstream: String,
}

impl ConnMetrics {
    /// Once per broken connection: the label lookup is fine here.
    pub fn protocol_error(&self, reason: &str) {
        self.protocol_errors
            .with_label_values(&[&self.upstream, reason])
            .inc();
    }
}
