//! Configuration: figment layers (built-in defaults ← TOML file ←
//! `TIDEGATE_` environment, `__` for nesting) extracted into `raw` structs,
//! then validated into the typed [`Config`] the rest of the gateway uses.
//!
//! Nothing is bound before a `Config` exists, and a `Config` exists only when
//! every problem has been fixed: `ConfigError` carries all of them, each with
//! its key path, and the binary exits 64 (EX_USAGE) on it.

pub mod backplane;
pub mod balance;
mod effective;
pub mod fanout;
mod ops;
pub mod raw;
mod runtime;
pub(crate) mod validate;
pub(crate) use validate as validate_problems;

use crate::origin::OriginPolicy;
use crate::route::HostMatch;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use effective::derived_comments;
pub use ops::{LogConfig, LogFormat, Readiness, ReloadConfig};
pub use raw::RawConfig;
pub use runtime::{Layout, RuntimeConfig};

/// Exit code for a bad configuration (sysexits EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `routes[1].upstream`.
    pub key: String,
    pub message: String,
}

/// Every problem found, reported together.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What was loaded, for `check-config` and the admin `/config` page.
    pub raw: RawConfig,
    /// The file it came from, re-read on reload (`None`: built from flags).
    pub source: Option<std::path::PathBuf>,
    /// `None`: no admin listener.
    pub admin: Option<SocketAddr>,
    /// Who may use the admin listener.
    pub admin_access: AdminAccess,
    pub limits: Limits,
    /// How request paths are normalised before routing.
    pub paths: crate::route::PathPolicy,
    pub keepalive: Keepalive,
    pub drain: Drain,
    pub listeners: Vec<ListenerConfig>,
    pub routes: Vec<Arc<RouteConfig>>,
    pub upstreams: Vec<Arc<UpstreamConfig>>,
    pub mux: MuxConfig,
    pub log: LogConfig,
    pub reload: ReloadConfig,
    pub readiness: Readiness,
    /// Plain HTTP: client keep-alive and the upstream pools (`[http]`).
    pub http: HttpConfig,
    /// Worker threads and their layout (`[runtime]`).
    pub runtime: RuntimeConfig,
    /// Fan-out bounds and the publish listener (`[fanout]`).
    pub fanout: fanout::FanoutConfig,
}

/// `[http]` settings that are not per route.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub keepalive_timeout: Duration,
    pub max_idle_per_endpoint: usize,
    pub pool_idle_timeout: Duration,
}

/// A route's plain HTTP settings (`[http]` defaults, route overrides).
#[derive(Debug, Clone)]
pub struct HttpRouteConfig {
    pub request_timeout: Duration,
    /// `None`: no limit between body chunks.
    pub idle_timeout: Option<Duration>,
    pub max_body_bytes: u64,
}

/// Mux mode settings (`[mux]`), see docs/mux-protocol.md.
#[derive(Debug, Clone)]
pub struct MuxConfig {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub open_timeout: Duration,
    pub resume_grace: Duration,
    pub session_queue_bytes: usize,
    pub connection_queue_bytes: usize,
    pub resume_buffer_bytes: usize,
    pub batch_bytes: usize,
    /// How long a client frame may wait for others before its write
    /// (zero: written at the end of the tick it arrived in).
    pub write_delay: Duration,
    pub max_frame_bytes: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

/// How a route carries its clients to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMode {
    /// One upstream WebSocket per client, bytes relayed as they are.
    Passthrough,
    /// Sessions over the upstream's pooled `tidegate.mux.v1` connections.
    Mux,
}

/// Where permessage-deflate (RFC 7692) is negotiated on a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeflateMode {
    /// Never: the client's offer is dropped.
    Off,
    /// End to end: the offer goes upstream, the answer comes back
    /// checked, compressed payloads are relayed as they are.
    Passthrough,
    /// At the edge: the gateway answers the client and compresses;
    /// the upstream leg is uncompressed.
    Edge(Arc<crate::deflate::EdgeConfig>),
}

/// The admin listener's access rules (`[admin]`).
#[derive(Clone, Default)]
pub struct AdminAccess {
    /// Bearer token every admin request must carry.
    pub token: Option<String>,
    /// Lower-case host names accepted in `Host` besides loopback names and
    /// the listen address.
    pub hosts: Vec<String>,
}

impl fmt::Debug for AdminAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAccess")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("hosts", &self.hosts)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Connections in TLS or their request head, over every client.
    pub max_handshakes: usize,
    /// The same, from one client address.
    pub max_handshakes_per_ip: usize,
    /// `None`: no per-address connection limit.
    pub max_connections_per_ip: Option<usize>,
    /// New connections per second from one address, and the burst above
    /// it; `None`: no rate limit.
    pub handshake_rate_per_ip: Option<(u32, u32)>,
    pub max_header_bytes: usize,
    pub handshake_timeout: Duration,
    pub max_frame_size: u64,
    pub max_message_size: u64,
    pub close_timeout: Duration,
    /// Compression memory of all edge permessage-deflate sessions together.
    pub deflate_memory: u64,
}

#[derive(Debug, Clone)]
pub struct Keepalive {
    /// `None`: tidegate sends no pings of its own.
    pub ping_interval: Option<Duration>,
    pub pong_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Drain {
    pub grace: Duration,
    pub spread: Duration,
}

#[derive(Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub addr: SocketAddr,
    /// Loaded and checked at validation, so a bad certificate is a config
    /// error rather than a failure at the first client.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerConfig")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub host: HostMatch,
    /// Normalised prefix: starts with `/`, no trailing `/` unless it is `/`.
    pub path: String,
    pub upstream: Arc<UpstreamConfig>,
    pub strip_prefix: bool,
    pub origins: OriginPolicy,
    /// Allowed sub-protocols; empty means any.
    pub subprotocols: Vec<String>,
    pub idle_timeout: Option<Duration>,
    pub max_message_size: u64,
    /// Edge authentication; `None`: anyone past Origin gets in.
    pub auth: Option<Arc<crate::auth::AuthPolicy>>,
    /// Lower-case names of every identity header any auth policy sets:
    /// never forwarded from the client, on any route.
    pub identity_headers: Arc<[String]>,
    pub mode: RouteMode,
    /// permessage-deflate on this route.
    pub deflate: DeflateMode,
    /// Fraction of sessions that get an access-log line (0.0: none).
    pub access_sample: f64,
    /// `None`: plain HTTP is refused on this route (426/405).
    pub http: Option<HttpRouteConfig>,
    /// Slow-subscriber policy and channel grants (`routes[].fanout`).
    pub fanout: fanout::RouteFanout,
}

#[derive(Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub endpoints: Vec<EndpointConfig>,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Present when any endpoint is `wss://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub preserve_host: bool,
    pub trust_forwarded_headers: bool,
    pub add_headers: Vec<(String, String)>,
    /// Mux mode: connections kept to each endpoint, as configured (see
    /// [`UpstreamConfig::slots_per_endpoint`]).
    pub pool_size: Option<usize>,
    /// Mux mode: sent as `X-Tidegate-Mux-Secret` (never logged or shown).
    pub mux_secret: Option<String>,
    /// Endpoint choice, health checks, affinity cookie, DNS.
    pub balance: balance::BalanceConfig,
}

impl UpstreamConfig {
    /// Mux connections kept to each endpoint: `pool_size`, else
    /// [`RuntimeConfig::default_pool_size`].
    pub fn slots_per_endpoint(&self, runtime: &RuntimeConfig) -> usize {
        self.pool_size
            .unwrap_or_else(|| runtime.default_pool_size())
    }
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// As written with userinfo redacted, for logs and the `endpoint`
    /// metric label.
    pub url: String,
    pub secure: bool,
    pub host: String,
    pub port: u16,
    /// `host[:port]` as it goes into the upstream `Host` header.
    pub authority: String,
    /// Path of the endpoint URL without a trailing `/` ("" for none); the
    /// client's path is appended to it.
    pub base_path: String,
}

impl EndpointConfig {
    /// The URL of `path` on this endpoint (`ws://authority/path`), for
    /// messages that tell an operator what was requested upstream. `path`
    /// carries no query: a query may hold a token.
    pub fn url_of(&self, path: &str) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}{path}", self.authority)
    }
}

impl Config {
    /// Load from defaults, an optional TOML file and the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let raw = load_raw(file)?;
        let mut config = validate::validate(raw)?;
        config.source = file.map(Path::to_path_buf);
        Ok(config)
    }

    /// Validate an already-built raw configuration (the `proxy` and `demo`
    /// commands build one from flags).
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        validate::validate(raw)
    }
}

/// Merge the figment layers: built-in defaults ← file ← environment.
pub fn load_raw(file: Option<&Path>) -> Result<RawConfig, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::single(
                "--config",
                format!("{}: no such file", path.display()),
            ));
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    // `TIDEGATE_LOG` (log filter) and `TIDEGATE_THP` (huge pages) are read
    // by main, not config keys.
    figment = figment.merge(
        Env::prefixed("TIDEGATE_")
            .split("__")
            .ignore(&["log", "thp"]),
    );
    figment.extract::<RawConfig>().map_err(|e| ConfigError {
        problems: e
            .into_iter()
            .map(|e| Problem {
                key: key_path(&e.path),
                message: e.kind.to_string(),
            })
            .collect(),
    })
}

/// figment's key path (`["upstreams", "0", "pool"]`) in the form every
/// other config message uses and docs/configuration.md promises:
/// `upstreams[0].pool`.
fn key_path(path: &[String]) -> String {
    let mut key = String::new();
    for part in path {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            key.push('[');
            key.push_str(part);
            key.push(']');
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    if key.is_empty() {
        key.push_str("<root>");
    }
    key
}

#[cfg(test)]
mod tests;
