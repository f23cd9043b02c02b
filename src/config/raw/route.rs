//! `[[routes]]` as written — host/path match and per-route policy — with
//! their edge compression levers (`routes[].deflate`) and the `[http]`
//! defaults that plain HTTP routes fall back on. Validated by
//! `validate::routes` and `validate::http`.

use serde::{Deserialize, Serialize};

use super::fanout;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    /// From the request sent upstream to the response head; a long-poll
    /// the application holds must fit. Per route: `http_request_timeout`.
    pub request_timeout: String,
    /// Longest silence between body chunks, either direction; "0s": none.
    /// Per route: `http_idle_timeout`.
    pub idle_timeout: String,
    /// Largest request body (413 above it). Per route: `max_body_bytes`.
    pub max_body_bytes: u64,
    /// How long a client connection may sit idle between requests.
    pub keepalive_timeout: String,
    /// Idle upstream connections kept per endpoint.
    pub max_idle_per_endpoint: u64,
    /// An idle upstream connection unused this long is closed.
    pub pool_idle_timeout: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            request_timeout: "120s".into(),
            idle_timeout: "300s".into(),
            max_body_bytes: 16 << 20,
            keepalive_timeout: "60s".into(),
            max_idle_per_endpoint: 64,
            pool_idle_timeout: "60s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoute {
    pub name: String,
    /// Exact host or `*.suffix`; empty matches any host.
    pub host: String,
    /// Path prefix, matched on segment boundaries; longest wins.
    pub path: String,
    /// Name of an entry in `upstreams`.
    pub upstream: String,
    /// Remove the route's path prefix before forwarding.
    pub strip_prefix: bool,
    /// Allowed Origins (exact, or `https://*.example.com`); empty allows any.
    pub origins: Vec<String>,
    /// Refuse requests without an Origin header (browser-only routes).
    pub require_origin: bool,
    /// Sub-protocols the client may ask for; empty passes the list as is.
    pub subprotocols: Vec<String>,
    /// Close a session with no data message either way for this long.
    pub idle_timeout: Option<String>,
    /// Per-route override of `limits.max_message_size`.
    pub max_message_size: Option<u64>,
    /// Name of an entry in `auth_policies`; empty: no authentication.
    pub auth: String,
    /// `passthrough` (one upstream connection per client) or `mux` (client
    /// sessions over the upstream's pooled mux connections).
    pub mode: String,
    /// Access log for this route; unset follows `log.access.enabled`.
    pub access_log: Option<bool>,
    /// Fraction of this route's sessions logged; unset follows
    /// `log.access.sample`.
    pub access_log_sample: Option<f64>,
    /// Carry plain HTTP requests (not only WebSocket upgrades).
    pub http: bool,
    /// Per-route override of `http.request_timeout`.
    pub http_request_timeout: Option<String>,
    /// Per-route override of `http.idle_timeout`.
    pub http_idle_timeout: Option<String>,
    /// Per-route override of `http.max_body_bytes`.
    pub max_body_bytes: Option<u64>,
    /// permessage-deflate: `passthrough` (negotiated end to end; the
    /// default of passthrough routes), `edge` (the gateway compresses) or
    /// `off` (the default of mux routes).
    pub permessage_deflate: Option<String>,
    /// Edge compression levers (`permessage_deflate = "edge"`).
    pub deflate: RawDeflate,
    /// Fan-out on this route: slow-subscriber policy, channel grants.
    pub fanout: fanout::RawRouteFanout,
}

/// `routes[].deflate`: the RFC 7692 levers of edge compression.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDeflate {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: u8,
    pub client_max_window_bits: u8,
    /// zlib level 0-9.
    pub level: u32,
    /// Upstream messages shorter than this (bytes) go uncompressed.
    pub min_size: u64,
}

impl Default for RawDeflate {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 6,
            min_size: 0,
        }
    }
}

impl Default for RawRoute {
    fn default() -> Self {
        Self {
            name: String::new(),
            host: String::new(),
            path: "/".into(),
            upstream: String::new(),
            strip_prefix: false,
            origins: Vec::new(),
            require_origin: false,
            subprotocols: Vec::new(),
            idle_timeout: None,
            max_message_size: None,
            auth: String::new(),
            mode: "passthrough".into(),
            access_log: None,
            access_log_sample: None,
            http: true,
            http_request_timeout: None,
            http_idle_timeout: None,
            max_body_bytes: None,
            permessage_deflate: None,
            deflate: RawDeflate::default(),
            fanout: fanout::RawRouteFanout::default(),
        }
    }
}
