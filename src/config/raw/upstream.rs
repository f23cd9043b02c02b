//! `[[upstreams]]` as written — endpoints, connect and handshake bounds,
//! headers, mux pool and secret, balancing — and `[mux]`, the timers and
//! bounds of the pooled mux connections. Validated by `validate::upstreams`
//! and `validate`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::balance;

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
    /// How long a client frame may wait in a connection's write buffer for
    /// frames of other sessions to join its write (`0s`: none).
    pub write_delay: String,
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
            write_delay: "0s".into(),
            max_frame_bytes: 16 << 20,
            reconnect_min: "100ms".into(),
            reconnect_max: "5s".into(),
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
    /// Mux mode: connections kept open to each endpoint (unset: the larger
    /// of 2 and the worker count, `UpstreamConfig::slots_per_endpoint`).
    pub pool_size: Option<u64>,
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
            pool_size: None,
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
