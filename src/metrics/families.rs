//! Every metric family of the gateway's own registry, written once: name,
//! help text and labels. `Metrics::new` registers them; docs/metrics.md
//! describes them for operators. Labels are bounded (see the parent module).

/// A metric family's definition.
pub(crate) struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

pub(crate) const BUILD_INFO: Family = Family {
    name: "tidegate_build_info",
    help: "Build information; always 1.",
    labels: &["version"],
};

pub(crate) const CONNECTIONS_ACTIVE: Family = Family {
    name: "tidegate_connections_active",
    help: "WebSocket sessions being relayed.",
    labels: &["route"],
};

pub(crate) const CONNECTIONS_TOTAL: Family = Family {
    name: "tidegate_connections_total",
    help: "Upgrade requests that reached a route, by outcome (upgraded, rejected, upstream_error).",
    labels: &["route", "outcome"],
};

pub(crate) const HANDSHAKE_REJECTIONS: Family = Family {
    name: "tidegate_handshake_rejections_total",
    help: "Requests refused before the 101, by reason.",
    labels: &["route", "reason"],
};

pub(crate) const HANDSHAKE_DURATION: Family = Family {
    name: "tidegate_handshake_duration_seconds",
    help: "From accept to the 101 sent to the client (upstream handshake included).",
    labels: &["route"],
};

pub(crate) const UPSTREAM_CONNECT_DURATION: Family = Family {
    name: "tidegate_upstream_connect_duration_seconds",
    help: "TCP (+TLS) connect and WebSocket handshake to an upstream endpoint.",
    labels: &["upstream"],
};

pub(crate) const UPSTREAM_CONNECT_FAILURES: Family = Family {
    name: "tidegate_upstream_connect_failures_total",
    help: "Failed connects to an upstream endpoint, by reason.",
    labels: &["upstream", "endpoint", "reason"],
};

pub(crate) const MESSAGES: Family = Family {
    name: "tidegate_messages_total",
    help: "Complete WebSocket data messages relayed, by direction.",
    labels: &["route", "direction"],
};

pub(crate) const BYTES: Family = Family {
    name: "tidegate_payload_bytes_total",
    help: "Data frame payload bytes relayed, by direction.",
    labels: &["route", "direction"],
};

pub(crate) const CLOSES: Family = Family {
    name: "tidegate_closes_total",
    help: "Close frames seen, by the side that sent them (client, upstream, gateway) and code.",
    labels: &["route", "side", "code"],
};

pub(crate) const PING_TIMEOUTS: Family = Family {
    name: "tidegate_ping_timeouts_total",
    help: "Legs closed because no pong (or other traffic) came back in time.",
    labels: &["route", "side"],
};

pub(crate) const SESSION_DURATION: Family = Family {
    name: "tidegate_session_duration_seconds",
    help: "Lifetime of relayed sessions.",
    labels: &["route"],
};

pub(crate) const LISTENER_REFUSED: Family = Family {
    name: "tidegate_listener_refused_total",
    help: "Connections closed at accept, by reason (connection_limit, fd_limit, handshake_limit, ip_handshake_limit, ip_connection_limit, ip_rate_limit).",
    labels: &["listener", "reason"],
};

pub(crate) const WORKER_ACCEPTED: Family = Family {
    name: "tidegate_worker_accepted_total",
    help: "Client connections accepted, by worker thread (runtime.layout thread_per_core: the worker whose SO_REUSEPORT socket the kernel chose; work_stealing: all on worker 0).",
    labels: &["worker"],
};

pub(crate) const CONNECTION_LIMIT: Family = Family {
    name: "tidegate_connection_limit",
    help: "Client connections held at once: limits.max_connections, lowered to what RLIMIT_NOFILE fits.",
    labels: &[],
};

pub(crate) const TLS_HANDSHAKE_FAILURES: Family = Family {
    name: "tidegate_tls_handshake_failures_total",
    help: "TLS handshakes that failed or timed out.",
    labels: &["listener"],
};

pub(crate) const AUTH_RESULTS: Family = Family {
    name: "tidegate_auth_results_total",
    help: "Edge authentication outcomes, by route, method (jwt, api_key, forward) and result.",
    labels: &["route", "method", "result"],
};

pub(crate) const AUTH_DURATION: Family = Family {
    name: "tidegate_auth_duration_seconds",
    help: "Time spent authenticating a client, by route and method.",
    labels: &["route", "method"],
};

pub(crate) const HANDSHAKES_IN_PROGRESS: Family = Family {
    name: "tidegate_handshakes_in_progress",
    help: "Accepted client connections not yet relaying (TLS, request head, upstream handshake).",
    labels: &[],
};

pub(crate) const DRAINING: Family = Family {
    name: "tidegate_draining",
    help: "1 while the gateway is draining.",
    labels: &[],
};

pub(crate) const CONFIG_RELOADS: Family = Family {
    name: "tidegate_config_reloads_total",
    help: "Configuration reloads (SIGHUP, POST /reload, certificate change), by result (ok, rejected).",
    labels: &["result"],
};

pub(crate) const UPSTREAM_REACHABLE: Family = Family {
    name: "tidegate_upstream_reachable",
    help: "1 if an endpoint of the upstream accepted the last readiness connect probe, else 0 (probed only with readiness.require_upstream).",
    labels: &["upstream"],
};

pub(crate) const ADMIN_REFUSED: Family = Family {
    name: "tidegate_admin_refused_total",
    help: "Admin requests refused, by reason (host, token, simple_request).",
    labels: &["reason"],
};

pub(crate) const ENDPOINT_HEALTHY: Family = Family {
    name: "tidegate_upstream_endpoint_healthy",
    help: "1 while the endpoint may get new sessions and requests (not failed by active health checks, not ejected), else 0.",
    labels: &["upstream", "endpoint"],
};

pub(crate) const ENDPOINT_SELECTIONS: Family = Family {
    name: "tidegate_upstream_endpoint_selections_total",
    help: "Times the balancer chose the endpoint first for a new session or request.",
    labels: &["upstream", "endpoint"],
};

pub(crate) const ENDPOINT_FAILURES: Family = Family {
    name: "tidegate_upstream_endpoint_failures_total",
    help: "Endpoint failures seen by health, by kind (connect, server_error, check).",
    labels: &["upstream", "endpoint", "kind"],
};

pub(crate) const ENDPOINT_EJECTIONS: Family = Family {
    name: "tidegate_upstream_endpoint_ejections_total",
    help: "Passive ejections of the endpoint after failures in a row.",
    labels: &["upstream", "endpoint"],
};

pub(crate) const ENDPOINT_ADDRESSES: Family = Family {
    name: "tidegate_upstream_endpoint_addresses",
    help: "Addresses the endpoint's host name resolved to at the last DNS re-resolution (0: not re-resolved).",
    labels: &["upstream", "endpoint"],
};

pub(crate) const HTTP_REQUESTS: Family = Family {
    name: "tidegate_http_requests_total",
    help: "Plain HTTP requests on a route, by status class of the response (1xx..5xx; gateway refusals included).",
    labels: &["route", "class"],
};

pub(crate) const HTTP_DURATION: Family = Family {
    name: "tidegate_http_request_duration_seconds",
    help: "Plain HTTP requests from their head read to the last response byte written.",
    labels: &["route"],
};

pub(crate) const HTTP_BYTES: Family = Family {
    name: "tidegate_http_body_bytes_total",
    help: "Plain HTTP body bytes relayed, by direction (client_to_upstream, upstream_to_client).",
    labels: &["route", "direction"],
};

pub(crate) const HTTP_STREAMS: Family = Family {
    name: "tidegate_http_streams_in_flight",
    help: "Plain HTTP responses whose body is still streaming to the client (SSE, long-poll, downloads).",
    labels: &["route"],
};

pub(crate) const DEFLATE_SESSIONS: Family = Family {
    name: "tidegate_deflate_sessions_total",
    help: "Sessions that negotiated permessage-deflate, by mode (passthrough: end to end between client and upstream; edge: terminated at the gateway).",
    labels: &["route", "mode"],
};

pub(crate) const DEFLATE_BYTES: Family = Family {
    name: "tidegate_deflate_bytes_total",
    help: "Edge compression: payload bytes of compressed messages by direction and stage (compressed: on the client's wire; plain: inflated / before compression).",
    labels: &["route", "direction", "stage"],
};

pub(crate) const DEFLATE_DECLINED: Family = Family {
    name: "tidegate_deflate_declined_total",
    help: "Edge compression offers declined because limits.deflate_memory was spent (the session ran uncompressed).",
    labels: &["route"],
};
