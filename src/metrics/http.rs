//! Plain HTTP metrics: families registered with the process registry by
//! `Metrics::new`, handles resolved once per route (every status class at
//! 0 from the start), never per request.

use super::families;
use super::Registrar;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// Request durations (seconds): from sub-millisecond proxied GETs to
/// held long-polls and streams.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

pub struct HttpFamilies {
    requests: IntCounterVec,
    duration: HistogramVec,
    bytes: IntCounterVec,
    streams: IntGaugeVec,
}

impl HttpFamilies {
    pub(super) fn new(r: &Registrar) -> HttpFamilies {
        HttpFamilies {
            requests: r.counters(&families::HTTP_REQUESTS),
            duration: r.histograms(&families::HTTP_DURATION, DURATION_BUCKETS),
            bytes: r.counters(&families::HTTP_BYTES),
            streams: r.gauges(&families::HTTP_STREAMS),
        }
    }

    /// Handles for one route.
    pub fn route(&self, route: &str) -> HttpMetrics {
        let class = |c: &str| self.requests.with_label_values(&[route, c]);
        HttpMetrics {
            classes: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: self.duration.with_label_values(&[route]),
            bytes_in: self.bytes.with_label_values(&[route, "client_to_upstream"]),
            bytes_out: self.bytes.with_label_values(&[route, "upstream_to_client"]),
            streams: self.streams.with_label_values(&[route]),
        }
    }
}

/// One route's HTTP handles.
pub struct HttpMetrics {
    /// Requests by status class, 1xx..5xx.
    classes: [IntCounter; 5],
    pub duration: Histogram,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub streams: IntGauge,
}

impl HttpMetrics {
    /// Count a finished request with the status the client got.
    pub fn request(&self, status: u16, seconds: f64) {
        let i = usize::from((status / 100).clamp(1, 5) - 1);
        self.classes[i].inc();
        self.duration.observe(seconds);
    }
}
