//! One Prometheus registry for the process. Families are registered once at
//! start-up; per-route handles are resolved once when the route table is
//! built, so the data path never looks up a label. Labels are bounded: route
//! and listener names, upstream names and configured endpoints, fixed
//! reasons and outcomes, and close codes folded into a fixed set.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

/// Buckets for handshake and connect latencies (seconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets for session lifetimes (seconds).
const SESSION_BUCKETS: &[f64] = &[
    0.1,
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4.0 * 3600.0,
    24.0 * 3600.0,
];

pub struct Metrics {
    pub registry: Registry,
    pub connections_active: IntGaugeVec,
    pub connections_total: IntCounterVec,
    pub handshake_rejections: IntCounterVec,
    pub handshake_duration: HistogramVec,
    pub upstream_connect_duration: HistogramVec,
    pub upstream_connect_failures: IntCounterVec,
    pub messages: IntCounterVec,
    pub bytes: IntCounterVec,
    pub closes: IntCounterVec,
    pub ping_timeouts: IntCounterVec,
    pub session_duration: HistogramVec,
    pub listener_refused: IntCounterVec,
    /// Admin requests refused by `admin::access` (`reason`: host, token,
    /// simple_request).
    pub admin_refused: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    /// Edge auth outcomes: `result` is `ok`, `fail_open` or an
    /// `AuthError` label (a fixed set).
    pub auth_results: IntCounterVec,
    /// Time spent in the auth phase (JWKS fetches and forward-auth calls
    /// included).
    pub auth_duration: HistogramVec,
    /// Accepted sockets still in TLS / HTTP / upstream handshake.
    pub handshakes_in_progress: IntGauge,
    pub draining: IntGauge,
    pub config_reloads: IntCounterVec,
    /// Mux mode families (`tidegate_mux_*`).
    pub mux: crate::mux::metrics::MuxFamilies,
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("metric definition is valid");
    registry
        .register(Box::new(h.clone()))
        .expect("metric names are unique");
    h
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registers once");
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)
                .expect("metric definition is valid");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("metric definition is valid");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        let build = gauge_vec(
            "tidegate_build_info",
            "Build information; always 1.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Arc::new(Metrics {
            connections_active: gauge_vec(
                "tidegate_connections_active",
                "WebSocket sessions being relayed.",
                &["route"],
            ),
            connections_total: counter_vec(
                &registry,
                "tidegate_connections_total",
                "Upgrade requests that reached a route, by outcome (upgraded, rejected, upstream_error).",
                &["route", "outcome"],
            ),
            handshake_rejections: counter_vec(
                &registry,
                "tidegate_handshake_rejections_total",
                "Requests refused before the 101, by reason.",
                &["route", "reason"],
            ),
            handshake_duration: histogram_vec(
                &registry,
                "tidegate_handshake_duration_seconds",
                "From accept to the 101 sent to the client (upstream handshake included).",
                &["route"],
                LATENCY_BUCKETS,
            ),
            upstream_connect_duration: histogram_vec(
                &registry,
                "tidegate_upstream_connect_duration_seconds",
                "TCP (+TLS) connect and WebSocket handshake to an upstream endpoint.",
                &["upstream"],
                LATENCY_BUCKETS,
            ),
            upstream_connect_failures: counter_vec(
                &registry,
                "tidegate_upstream_connect_failures_total",
                "Failed connects to an upstream endpoint, by reason.",
                &["upstream", "endpoint", "reason"],
            ),
            messages: counter_vec(
                &registry,
                "tidegate_messages_total",
                "Complete WebSocket data messages relayed, by direction.",
                &["route", "direction"],
            ),
            bytes: counter_vec(
                &registry,
                "tidegate_payload_bytes_total",
                "Data frame payload bytes relayed, by direction.",
                &["route", "direction"],
            ),
            closes: counter_vec(
                &registry,
                "tidegate_closes_total",
                "Close frames seen, by the side that sent them (client, upstream, gateway) and code.",
                &["route", "side", "code"],
            ),
            ping_timeouts: counter_vec(
                &registry,
                "tidegate_ping_timeouts_total",
                "Legs closed because no pong (or other traffic) came back in time.",
                &["route", "side"],
            ),
            session_duration: histogram_vec(
                &registry,
                "tidegate_session_duration_seconds",
                "Lifetime of relayed sessions.",
                &["route"],
                SESSION_BUCKETS,
            ),
            listener_refused: counter_vec(
                &registry,
                "tidegate_listener_refused_total",
                "Connections closed at accept, by reason (connection_limit, handshake_limit, ip_handshake_limit, ip_connection_limit, ip_rate_limit).",
                &["listener", "reason"],
            ),
            admin_refused: counter_vec(
                &registry,
                "tidegate_admin_refused_total",
                "Admin requests refused, by reason (host, token, simple_request).",
                &["reason"],
            ),
            tls_handshake_failures: counter_vec(
                &registry,
                "tidegate_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
                &["listener"],
            ),
            auth_results: counter_vec(
                &registry,
                "tidegate_auth_results_total",
                "Edge authentication outcomes, by route, method (jwt, api_key, forward) and result.",
                &["route", "method", "result"],
            ),
            auth_duration: histogram_vec(
                &registry,
                "tidegate_auth_duration_seconds",
                "Time spent authenticating a client, by route and method.",
                &["route", "method"],
                LATENCY_BUCKETS,
            ),
            handshakes_in_progress: gauge(
                "tidegate_handshakes_in_progress",
                "Accepted client connections not yet relaying (TLS, request head, upstream handshake).",
            ),
            draining: gauge("tidegate_draining", "1 while the gateway is draining."),
            config_reloads: counter_vec(
                &registry,
                "tidegate_config_reloads_total",
                "Configuration reloads (SIGHUP, POST /reload, certificate change), by result (ok, rejected).",
                &["result"],
            ),
            mux: crate::mux::metrics::MuxFamilies::new(&registry),
            registry,
        })
    }

    /// Handles for one route.
    pub fn route(&self, route: &str) -> Arc<RouteMetrics> {
        Arc::new(RouteMetrics {
            active: self.connections_active.with_label_values(&[route]),
            upgraded: self
                .connections_total
                .with_label_values(&[route, "upgraded"]),
            rejected: self
                .connections_total
                .with_label_values(&[route, "rejected"]),
            upstream_error: self
                .connections_total
                .with_label_values(&[route, "upstream_error"]),
            handshake: self.handshake_duration.with_label_values(&[route]),
            messages_c2u: self
                .messages
                .with_label_values(&[route, "client_to_upstream"]),
            messages_u2c: self
                .messages
                .with_label_values(&[route, "upstream_to_client"]),
            bytes_c2u: self.bytes.with_label_values(&[route, "client_to_upstream"]),
            bytes_u2c: self.bytes.with_label_values(&[route, "upstream_to_client"]),
            ping_timeout_client: self.ping_timeouts.with_label_values(&[route, "client"]),
            ping_timeout_upstream: self.ping_timeouts.with_label_values(&[route, "upstream"]),
            session: self.session_duration.with_label_values(&[route]),
            closes: self.closes.clone(),
            name: route.to_string(),
        })
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&families, &mut out);
        out
    }
}

/// Per-route handles, shared by every session on the route.
pub struct RouteMetrics {
    pub name: String,
    pub active: IntGauge,
    pub upgraded: IntCounter,
    pub rejected: IntCounter,
    pub upstream_error: IntCounter,
    pub handshake: Histogram,
    pub messages_c2u: IntCounter,
    pub messages_u2c: IntCounter,
    pub bytes_c2u: IntCounter,
    pub bytes_u2c: IntCounter,
    pub ping_timeout_client: IntCounter,
    pub ping_timeout_upstream: IntCounter,
    pub session: Histogram,
    /// Resolved at session end (once per session, not per message).
    closes: IntCounterVec,
}

impl RouteMetrics {
    pub fn close(&self, side: &str, code: Option<u16>) {
        self.closes
            .with_label_values(&[&self.name, side, close_code_label(code)])
            .inc();
    }
}

/// Fold a close code into a bounded label.
pub fn close_code_label(code: Option<u16>) -> &'static str {
    match code {
        None => "none",
        Some(1000) => "1000",
        Some(1001) => "1001",
        Some(1002) => "1002",
        Some(1003) => "1003",
        Some(1007) => "1007",
        Some(1008) => "1008",
        Some(1009) => "1009",
        Some(1010) => "1010",
        Some(1011) => "1011",
        Some(1012) => "1012",
        Some(1013) => "1013",
        Some(1014) => "1014",
        Some(3000..=3999) => "3xxx",
        Some(4000..=4999) => "4xxx",
        Some(_) => "other",
    }
}
