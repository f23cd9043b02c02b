//! Endpoint choice for an upstream: which endpoint a new session or HTTP
//! request goes to, and what happened there (passive health).
//!
//! This is the seam the HTTP proxy and the WebSocket paths pick endpoints
//! through. Here it is plain round robin with every other endpoint as a
//! fallback, and `report` records nothing; the balancing policies, affinity
//! and health checks replace the body of these two functions, not their
//! shape.

use super::Upstream;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

/// What a balancing key can be taken from (cookie:/header:/query:/path_segment:/client_ip).
pub struct Affinity<'a> {
    pub client: IpAddr,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a crate::handshake::RequestHead,
}

/// What happened on an endpoint, for passive health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered.
    Ok,
    /// TCP (+TLS) connect failed or timed out.
    ConnectFailed,
    /// The endpoint answered with a 5xx or an unusable response.
    ServerError,
}

impl Upstream {
    /// Endpoint indexes (into config.endpoints) to try, in order: the chosen one first, then fallbacks for a connect failure.
    pub fn candidates(&self, _a: &Affinity<'_>) -> Vec<usize> {
        let n = self.config.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| (start + k) % n).collect()
    }

    /// Passive health: report what happened on endpoint `i`.
    pub fn report(&self, _i: usize, _outcome: Outcome) {}
}
