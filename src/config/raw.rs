//! The configuration as written: serde structs that mirror the TOML file and
//! the `TIDEGATE_` environment one to one.
//!
//! Every struct denies unknown fields so a typo is an error, not a silently
//! ignored setting. Values that need checking (addresses, durations, files)
//! stay strings here; `validate` turns them into the typed `Config` and
//! reports every problem at once with its key path.

pub mod auth;
pub mod backplane;
pub mod balance;
pub mod fanout;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`, `/config`).
    pub admin: RawAdmin,
    /// Process-wide limits; routes may override some of them.
    pub limits: RawLimits,
    /// How request paths are normalised before routing.
    pub paths: RawPaths,
    /// Ping interval and pong timeout on both legs.
    pub keepalive: RawKeepalive,
    /// What happens on SIGTERM / SIGINT.
    pub drain: RawDrain,
    /// Sockets the gateway accepts clients on.
    pub listeners: Vec<RawListener>,
    /// Host / path prefix → upstream, with the per-route policy.
    pub routes: Vec<RawRoute>,
    /// Named groups of upstream endpoints.
    pub upstreams: Vec<RawUpstream>,
    /// Named authentication policies, referenced by `routes[].auth`.
    pub auth_policies: Vec<auth::RawAuthPolicy>,
    /// Mux mode: timers and bounds of the pooled application connections
    /// (docs/mux-protocol.md).
    pub mux: RawMux,
    /// Log format and the access log (`[log]`, `[log.access]`).
    pub log: RawLog,
    /// How changes on disk are picked up (`[reload]`).
    pub reload: RawReload,
    /// What `/readyz` requires besides serving (`[readiness]`).
    pub readiness: RawReadiness,
    /// Plain HTTP proxying: defaults for every route and the upstream
    /// keep-alive pools (`[http]`).
    pub http: RawHttp,
    /// Threads and how connections are spread over them (`[runtime]`).
    pub runtime: RawRuntime,
    /// Fan-out: gateway-wide bounds and the HTTP publish API (`[fanout]`,
    /// docs/fanout.md).
    pub fanout: fanout::RawFanout,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRuntime {
    /// `thread_per_core`: each worker is a single-threaded runtime on its
    /// own thread with its own `SO_REUSEPORT` listening sockets (no task
    /// migration); `work_stealing`: one tokio multi-thread runtime.
    pub layout: String,
    /// Worker threads; 0: one per available core. `--workers` overrides.
    pub workers: u64,
}

impl Default for RawRuntime {
    fn default() -> Self {
        Self {
            layout: "thread_per_core".into(),
            workers: 0,
        }
    }
}

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
pub struct RawLog {
    /// `text` (one human-readable line per event) or `json` (one JSON
    /// object per line, for log shippers). Fixed at start.
    pub format: String,
    /// The access log: one line per session end, target `tidegate::access`.
    pub access: RawAccessLog,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
            access: RawAccessLog::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccessLog {
    /// Default for every route; `routes[].access_log` overrides it.
    pub enabled: bool,
    /// Fraction of sessions logged, 0.0..=1.0; `routes[].access_log_sample`
    /// overrides it.
    pub sample: f64,
}

impl Default for RawAccessLog {
    fn default() -> Self {
        Self {
            enabled: false,
            sample: 1.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReload {
    /// Reload when the configuration file changes on disk (a Kubernetes
    /// ConfigMap update included).
    pub watch_config: bool,
    /// How often the configuration and certificate files are checked.
    pub poll_interval: String,
}

impl Default for RawReload {
    fn default() -> Self {
        Self {
            watch_config: true,
            poll_interval: "2s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReadiness {
    /// `/readyz` answers 503 unless every passthrough upstream has an
    /// endpoint that accepts a TCP connection.
    pub require_upstream: bool,
    /// How often each passthrough endpoint is probed with a TCP connect.
    pub probe_interval: String,
}

impl Default for RawReadiness {
    fn default() -> Self {
        Self {
            require_upstream: false,
            probe_interval: "5s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMux {
    /// PING on an idle mux connection this often.
    pub ping_interval: String,
    /// No frame from the application this long after a PING: connection dead.
    pub pong_timeout: String,
    /// Time for the application to ACCEPT or REJECT an OPEN (and for a mux
    /// connection to come up if none is).
    pub open_timeout: String,
    /// Time a session may wait to be resumed on another connection.
    pub resume_grace: String,
    /// App → client bytes queued per session before it is closed as a slow
    /// consumer (1008).
    pub session_queue_bytes: u64,
    /// Client → app bytes queued per mux connection before sessions stop
    /// reading their clients.
    pub connection_queue_bytes: u64,
    /// Client bytes held per session while it is being resumed.
    pub resume_buffer_bytes: u64,
    /// Largest WebSocket message the gateway writes (several frames batched).
    pub batch_bytes: u64,
    /// Largest mux frame body accepted from the application.
    pub max_frame_bytes: u64,
    /// Reconnect backoff: first delay and ceiling.
    pub reconnect_min: String,
    pub reconnect_max: String,
}

impl Default for RawMux {
    fn default() -> Self {
        Self {
            ping_interval: "10s".into(),
            pong_timeout: "10s".into(),
            open_timeout: "10s".into(),
            resume_grace: "30s".into(),
            session_queue_bytes: 1 << 20,
            connection_queue_bytes: 4 << 20,
            resume_buffer_bytes: 1 << 20,
            batch_bytes: 64 << 10,
            max_frame_bytes: 16 << 20,
            reconnect_min: "100ms".into(),
            reconnect_max: "5s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Empty string disables the admin listener.
    pub listen: String,
    /// Bearer token required on every admin endpoint; empty: none (then
    /// `POST /reload` needs the `X-Tidegate-Admin` header instead).
    pub token: String,
    /// Host names (besides loopback and the listen address) the admin
    /// listener answers to; any other `Host` gets 421 (DNS rebinding).
    pub hosts: Vec<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".into(),
            token: String::new(),
            hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPaths {
    /// What a client-sent `%2F` becomes: `reject` (400), `keep`, `decode`.
    pub encoded_slash: String,
    /// Merge runs of `/` into one before routing.
    pub merge_slashes: bool,
}

impl Default for RawPaths {
    fn default() -> Self {
        Self {
            encoded_slash: "reject".into(),
            merge_slashes: true,
        }
    }
}

/// `limits.max_connections` when the configuration does not say.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Client connections held at once, over every listener.
    pub max_connections: u64,
    /// Bytes of request head (request line + headers) accepted from a client.
    pub max_header_bytes: u64,
    /// Time from accept (TLS included) to a complete request head.
    pub handshake_timeout: String,
    /// Largest single frame payload, either direction.
    pub max_frame_size: u64,
    /// Largest message (sum of its fragments), either direction.
    pub max_message_size: u64,
    /// Time allowed for the closing handshake once a close started.
    pub close_timeout: String,
    /// Connections still in TLS or their request head, over every client.
    pub max_handshakes: u64,
    /// Connections in TLS or their request head from one client address.
    pub max_handshakes_per_ip: u64,
    /// Connections held at once by one client address; 0: no limit.
    pub max_connections_per_ip: u64,
    /// New connections per second from one client address; 0: no limit.
    pub handshake_rate_per_ip: u64,
    /// Connections one address may open in a burst above the rate.
    pub handshake_burst_per_ip: u64,
    /// Compression memory all edge permessage-deflate sessions may reserve
    /// together (bytes); over it new sessions run uncompressed.
    pub deflate_memory: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: 16 * 1024,
            handshake_timeout: "10s".into(),
            max_frame_size: 64 << 20,
            max_message_size: 64 << 20,
            close_timeout: "5s".into(),
            max_handshakes: 4096,
            max_handshakes_per_ip: 256,
            max_connections_per_ip: 0,
            handshake_rate_per_ip: 0,
            handshake_burst_per_ip: 100,
            deflate_memory: 256 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKeepalive {
    /// Silence on a leg after which tidegate pings it; "0s" disables pings.
    pub ping_interval: String,
    /// How long a pinged leg may stay silent before it is closed.
    pub pong_timeout: String,
}

impl Default for RawKeepalive {
    fn default() -> Self {
        Self {
            ping_interval: "30s".into(),
            pong_timeout: "10s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDrain {
    /// Longest time the process waits for connections after a signal.
    pub grace: String,
    /// Window over which clients are sent Close 1001, so they do not all
    /// reconnect in the same instant.
    pub spread: String,
}

impl Default for RawDrain {
    fn default() -> Self {
        Self {
            grace: "30s".into(),
            spread: "2s".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawListener {
    /// Name used in metrics and logs.
    pub name: String,
    /// `IP:PORT` to bind.
    pub listen: String,
    /// Present: the listener terminates TLS.
    pub tls: Option<RawTls>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// The first certificate is the default (no SNI, or no name matched).
    pub certificates: Vec<RawCertificate>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCertificate {
    /// PEM file: the certificate chain, leaf first.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// SNI names this certificate answers (`*.example.com` allowed).
    pub server_names: Vec<String>,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub name: String,
    /// `ws://host:port[/base]` or `wss://…`; tried round robin.
    pub endpoints: Vec<String>,
    /// TCP (+ TLS) connect time per endpoint attempt.
    pub connect_timeout: String,
    /// Time for the upstream to answer the upgrade request.
    pub handshake_timeout: String,
    /// PEM CA bundle for `wss://` endpoints; empty uses the system roots.
    pub ca_file: String,
    /// Send the client's Host instead of the endpoint's authority.
    pub preserve_host: bool,
    /// Keep client-sent X-Forwarded-* / Forwarded instead of replacing them
    /// (only behind another trusted proxy).
    pub trust_forwarded_headers: bool,
    /// Headers added to every upstream handshake (e.g. a shared secret the
    /// application checks). Values are redacted in `check-config` output.
    pub add_headers: BTreeMap<String, String>,
    /// Mux mode: connections kept open to each endpoint.
    pub pool_size: u64,
    /// Mux mode: the shared secret sent as `X-Tidegate-Mux-Secret` on every
    /// mux connection, so the application can tell the gateway from anyone
    /// else reaching its port (redacted in `check-config` and `/config`).
    pub mux_secret: String,
    /// Mux mode: a file holding the secret (trailing newline ignored), e.g.
    /// a mounted Kubernetes Secret; exclusive with `mux_secret`.
    pub mux_secret_file: String,
    /// How endpoints are chosen: `round_robin`, `least_connections` or
    /// `hash` (on `hash_key`).
    pub balance: String,
    /// `balance = "hash"`: `cookie:NAME`, `header:NAME`, `query:NAME`,
    /// `path_segment:N` or `client_ip`.
    pub hash_key: String,
    /// Host names of endpoints are resolved again this often ("0s": by the
    /// system at each connect); IP literals never are.
    pub resolve_interval: String,
    /// DNS servers (`IP:PORT`) for that; empty: /etc/resolv.conf.
    pub nameservers: Vec<String>,
    /// Active health checks and passive ejection.
    pub health: balance::RawHealth,
    /// The gateway's own affinity cookie.
    pub affinity_cookie: balance::RawAffinityCookie,
}

impl Default for RawUpstream {
    fn default() -> Self {
        Self {
            name: String::new(),
            endpoints: Vec::new(),
            connect_timeout: "5s".into(),
            handshake_timeout: "10s".into(),
            ca_file: String::new(),
            preserve_host: false,
            trust_forwarded_headers: false,
            add_headers: BTreeMap::new(),
            pool_size: 2,
            mux_secret: String::new(),
            mux_secret_file: String::new(),
            balance: "round_robin".into(),
            hash_key: String::new(),
            resolve_interval: "30s".into(),
            nameservers: Vec::new(),
            health: balance::RawHealth::default(),
            affinity_cookie: balance::RawAffinityCookie::default(),
        }
    }
}

impl RawConfig {
    /// A copy safe to print: header values that may carry secrets are
    /// replaced.
    pub fn redacted(&self) -> RawConfig {
        let mut copy = self.clone();
        if !copy.admin.token.is_empty() {
            copy.admin.token = "<redacted>".into();
        }
        for upstream in &mut copy.upstreams {
            for e in &mut upstream.endpoints {
                *e = crate::redact::url(e);
            }
            for value in upstream.add_headers.values_mut() {
                *value = "<redacted>".into();
            }
            if !upstream.mux_secret.is_empty() {
                upstream.mux_secret = "<redacted>".into();
            }
            if !upstream.affinity_cookie.secret.is_empty() {
                upstream.affinity_cookie.secret = "<redacted>".into();
            }
        }
        for policy in &mut copy.auth_policies {
            policy.redact();
        }
        copy
    }
}
