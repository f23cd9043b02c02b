//! The typed balancing, health and DNS settings of one upstream
//! (`config::UpstreamConfig::balance`), as `upstream::balance` and
//! `upstream::health` use them.

use std::net::SocketAddr;
use std::time::Duration;

/// Balancing, health checks, affinity cookie and DNS of one upstream.
#[derive(Clone, Default)]
pub struct BalanceConfig {
    pub policy: Policy,
    /// `None`: no active checks (`health.path` empty).
    pub health: Option<HealthCheck>,
    pub passive: Passive,
    /// `None`: the gateway sets no affinity cookie.
    pub cookie: Option<AffinityCookie>,
    /// `None`: no re-resolution (the system resolves at each connect).
    pub resolve_interval: Option<Duration>,
    /// DNS servers to ask; empty: the system's (/etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
}

impl std::fmt::Debug for BalanceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BalanceConfig")
            .field("policy", &self.policy)
            .field("health", &self.health)
            .field("passive", &self.passive)
            .field("cookie", &self.cookie.as_ref().map(|c| &c.name))
            .field("resolve_interval", &self.resolve_interval)
            .field("nameservers", &self.nameservers)
            .finish()
    }
}

/// `upstreams[].balance`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Policy {
    /// Each new session or request to the next endpoint in turn.
    #[default]
    RoundRobin,
    /// To the endpoint with the fewest sessions and requests in flight.
    LeastConnections,
    /// Rendezvous hashing on a key of the request; requests without the key
    /// go round robin.
    Hash(HashKey),
}

/// `upstreams[].hash_key`: where the balancing key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Cookie(String),
    /// Lower-case header name.
    Header(String),
    Query(String),
    /// 0-based segment of the request path (`/a/b`: 0 is `a`).
    PathSegment(usize),
    ClientIp,
}

/// `[upstreams.health]` with a `path`: active HTTP checks.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Passive ejection (`health.eject_*`).
#[derive(Debug, Clone)]
pub struct Passive {
    /// Failures in a row that eject; 0: never.
    pub eject_after: u32,
    pub eject_for: Duration,
    pub eject_max: Duration,
}

impl Default for Passive {
    fn default() -> Self {
        Passive {
            eject_after: 5,
            eject_for: Duration::from_secs(10),
            eject_max: Duration::from_secs(300),
        }
    }
}

/// `[upstreams.affinity_cookie]` with a `name`.
#[derive(Clone)]
pub struct AffinityCookie {
    pub name: String,
    /// Key of the HMAC that names endpoints (never logged or shown).
    pub secret: Vec<u8>,
    pub path: String,
    pub max_age: Option<Duration>,
    pub secure: bool,
}
