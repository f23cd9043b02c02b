//! One Prometheus registry for the process. Families are registered once at
//! start-up; per-route handles are resolved once when the route table is
//! built, so the data path never looks up a label. Labels are bounded: route
//! and listener names, upstream names and configured endpoints, fixed
//! reasons and outcomes, and close codes folded into a fixed set.

use families::Family;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

mod families;
mod http;

pub use http::{HttpFamilies, HttpMetrics};

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
    /// Connections accepted per worker (`worker`: 0..workers, bounded by
    /// `runtime.workers`).
    pub worker_accepted: IntCounterVec,
    /// The connection cap in force: `limits.max_connections`, lowered at
    /// start to what the open-file limit fits (`crate::fds`).
    pub connection_limit: IntGauge,
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
    /// 1 while a passthrough upstream accepts connect probes
    /// (`readiness.require_upstream`).
    pub upstream_reachable: IntGaugeVec,
    /// permessage-deflate sessions by mode.
    pub deflate_sessions: IntCounterVec,
    /// Edge compression bytes before and after, per direction.
    pub deflate_bytes: IntCounterVec,
    /// Edge offers declined for want of compression memory.
    pub deflate_declined: IntCounterVec,
    /// Mux mode families (`tidegate_mux_*`).
    pub mux: crate::mux::metrics::MuxFamilies,
    /// Fan-out families (`tidegate_fanout_*`), handed to the hub.
    pub fanout: crate::fanout::metrics::FanoutMetrics,
    /// Plain HTTP families (`tidegate_http_*`).
    pub http: HttpFamilies,
    /// Endpoint health and balancing (`tidegate_upstream_endpoint_*`).
    pub endpoint: EndpointFamilies,
}

/// The per-endpoint families of `upstream::balance` and `health`.
pub struct EndpointFamilies {
    healthy: IntGaugeVec,
    selections: IntCounterVec,
    failures: IntCounterVec,
    ejections: IntCounterVec,
    addresses: IntGaugeVec,
}

/// Registers families on the process registry; every family is defined in
/// [`families`], so a name, its help and its labels are written once.
struct Registrar(Registry);

impl Registrar {
    fn add<C: prometheus::core::Collector + Clone + 'static>(&self, c: C) -> C {
        self.0
            .register(Box::new(c.clone()))
            .expect("metric names are unique");
        c
    }

    fn counters(&self, f: &Family) -> IntCounterVec {
        let opts = Opts::new(f.name, f.help);
        self.add(IntCounterVec::new(opts, f.labels).expect("metric definition is valid"))
    }

    fn gauges(&self, f: &Family) -> IntGaugeVec {
        let opts = Opts::new(f.name, f.help);
        self.add(IntGaugeVec::new(opts, f.labels).expect("metric definition is valid"))
    }

    fn gauge(&self, f: &Family) -> IntGauge {
        self.add(IntGauge::new(f.name, f.help).expect("metric definition is valid"))
    }

    fn histograms(&self, f: &Family, buckets: &[f64]) -> HistogramVec {
        let opts = HistogramOpts::new(f.name, f.help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, f.labels).expect("metric definition is valid"))
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let r = Registrar(Registry::new());
        #[cfg(target_os = "linux")]
        r.0.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process collector registers once");
        let build = r.gauges(&families::BUILD_INFO);
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Arc::new(Metrics {
            connections_active: r.gauges(&families::CONNECTIONS_ACTIVE),
            connections_total: r.counters(&families::CONNECTIONS_TOTAL),
            handshake_rejections: r.counters(&families::HANDSHAKE_REJECTIONS),
            handshake_duration: r.histograms(&families::HANDSHAKE_DURATION, LATENCY_BUCKETS),
            upstream_connect_duration: r
                .histograms(&families::UPSTREAM_CONNECT_DURATION, LATENCY_BUCKETS),
            upstream_connect_failures: r.counters(&families::UPSTREAM_CONNECT_FAILURES),
            messages: r.counters(&families::MESSAGES),
            bytes: r.counters(&families::BYTES),
            closes: r.counters(&families::CLOSES),
            ping_timeouts: r.counters(&families::PING_TIMEOUTS),
            session_duration: r.histograms(&families::SESSION_DURATION, SESSION_BUCKETS),
            listener_refused: r.counters(&families::LISTENER_REFUSED),
            worker_accepted: r.counters(&families::WORKER_ACCEPTED),
            connection_limit: r.gauge(&families::CONNECTION_LIMIT),
            admin_refused: r.counters(&families::ADMIN_REFUSED),
            tls_handshake_failures: r.counters(&families::TLS_HANDSHAKE_FAILURES),
            auth_results: r.counters(&families::AUTH_RESULTS),
            auth_duration: r.histograms(&families::AUTH_DURATION, LATENCY_BUCKETS),
            handshakes_in_progress: r.gauge(&families::HANDSHAKES_IN_PROGRESS),
            draining: r.gauge(&families::DRAINING),
            config_reloads: r.counters(&families::CONFIG_RELOADS),
            upstream_reachable: r.gauges(&families::UPSTREAM_REACHABLE),
            deflate_sessions: r.counters(&families::DEFLATE_SESSIONS),
            deflate_bytes: r.counters(&families::DEFLATE_BYTES),
            deflate_declined: r.counters(&families::DEFLATE_DECLINED),
            mux: crate::mux::metrics::MuxFamilies::new(&r.0),
            fanout: crate::fanout::metrics::FanoutMetrics::new(&r.0),
            http: HttpFamilies::new(&r),
            endpoint: EndpointFamilies {
                healthy: r.gauges(&families::ENDPOINT_HEALTHY),
                selections: r.counters(&families::ENDPOINT_SELECTIONS),
                failures: r.counters(&families::ENDPOINT_FAILURES),
                ejections: r.counters(&families::ENDPOINT_EJECTIONS),
                addresses: r.gauges(&families::ENDPOINT_ADDRESSES),
            },
            registry: r.0,
        })
    }

    /// Health and balancing handles of one configured endpoint.
    pub(crate) fn endpoint_health(
        &self,
        upstream: &str,
        endpoint: &str,
    ) -> crate::upstream::health::HealthMetrics {
        let e = &self.endpoint;
        let labels = [upstream, endpoint];
        let failures = |kind: &str| e.failures.with_label_values(&[upstream, endpoint, kind]);
        crate::upstream::health::HealthMetrics {
            healthy: e.healthy.with_label_values(&labels),
            selections: e.selections.with_label_values(&labels),
            connect_failures: failures("connect"),
            server_errors: failures("server_error"),
            check_failures: failures("check"),
            ejections: e.ejections.with_label_values(&labels),
            addresses: e.addresses.with_label_values(&labels),
        }
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
            deflate_passthrough: self
                .deflate_sessions
                .with_label_values(&[route, "passthrough"]),
            deflate_edge: self.deflate_sessions.with_label_values(&[route, "edge"]),
            deflate_declined: self.deflate_declined.with_label_values(&[route]),
            deflate_edge_bytes: [
                ("client_to_upstream", "compressed"),
                ("client_to_upstream", "plain"),
                ("upstream_to_client", "plain"),
                ("upstream_to_client", "compressed"),
            ]
            .map(|(d, s)| self.deflate_bytes.with_label_values(&[route, d, s])),
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
    /// Sessions with permessage-deflate negotiated end to end.
    pub deflate_passthrough: IntCounter,
    /// Sessions with permessage-deflate terminated at the gateway.
    pub deflate_edge: IntCounter,
    /// Edge offers declined: `limits.deflate_memory` spent.
    pub deflate_declined: IntCounter,
    /// Edge bytes: client→upstream compressed, plain; upstream→client
    /// plain, compressed.
    pub deflate_edge_bytes: [IntCounter; 4],
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
