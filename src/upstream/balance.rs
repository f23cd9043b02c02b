//! Endpoint choice: which of an upstream's configured endpoints a new
//! session (passthrough or mux) or HTTP request goes to, and the fallbacks
//! after a connect failure.
//!
//! - `round_robin` (default): each choice starts one further along.
//! - `least_connections`: fewest sessions and requests in flight (held by
//!   the [`Active`] guard of [`Upstream::track`]).
//! - `hash` on a key of the request (`cookie:`, `header:`, `query:`,
//!   `path_segment:`, `client_ip`): rendezvous (highest-random-weight)
//!   hashing, so when an endpoint leaves only its own keys move, and when
//!   one joins it takes about 1/N of the keys from the others. The hash is
//!   stable (SHA-256 of the key and of the endpoint URL), so every gateway
//!   replica sends a key to the same endpoint. A request without the key
//!   goes round robin.
//! - the **affinity cookie** (`[upstreams.affinity_cookie]`) overrides the
//!   policy: its value is an HMAC of the endpoint's identity under a
//!   gateway secret, so a client can name only an endpoint it was given,
//!   and a cookie naming an unknown or unhealthy endpoint is ignored.
//!
//! Only usable endpoints (see `health`) are candidates; when none is, every
//! endpoint is (failing open beats refusing everyone on a stale verdict).
//!
//! Indexes are always into `config.endpoints`. A configured endpoint whose
//! host name resolves to several addresses (DNS re-resolution, `resolve`)
//! is one candidate: `Upstream::open` spreads its connections over those
//! addresses. Affinity and health are therefore per configured endpoint.

use super::Upstream;
use crate::config::balance::{HashKey, Policy};
use crate::handshake::RequestHead;
use aws_lc_rs::{digest, hmac};
use base64::Engine;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a balancing key can be taken from (cookie:/header:/query:/path_segment:/client_ip).
pub struct Affinity<'a> {
    pub client: IpAddr,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a RequestHead,
}

/// What happened on an endpoint, for passive health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Connected and answered (any status below 500).
    Ok,
    /// TCP or TLS connect failed or timed out.
    ConnectFailed,
    /// A 5xx, an invalid answer or no answer in time.
    ServerError,
}

/// A session or request in flight on an endpoint; dropping it ends it.
pub struct Active {
    upstream: Arc<Upstream>,
    endpoint: usize,
}

impl Drop for Active {
    fn drop(&mut self) {
        self.upstream.state[self.endpoint]
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Per-endpoint constants of the balancer, computed once.
pub(crate) struct Identities {
    /// Rendezvous weight seed of each endpoint (hash of its URL).
    pub seeds: Vec<u64>,
    /// Affinity cookie value naming each endpoint (empty: no cookie).
    pub tokens: Vec<String>,
}

impl Identities {
    pub fn new(config: &crate::config::UpstreamConfig) -> Identities {
        let seeds = config
            .endpoints
            .iter()
            .map(|e| stable_hash(e.url.as_bytes()))
            .collect();
        let tokens = match &config.balance.cookie {
            Some(c) => {
                let key = hmac::Key::new(hmac::HMAC_SHA256, &c.secret);
                config
                    .endpoints
                    .iter()
                    .map(|e| {
                        let id = format!("{}\0{}", config.name, e.url);
                        let tag = hmac::sign(&key, id.as_bytes());
                        // 128 bits of the tag: unguessable, short in a header.
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16])
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        Identities { seeds, tokens }
    }
}

impl Upstream {
    /// Endpoint indexes (into config.endpoints) to try, in order: the chosen one first, then fallbacks for a connect failure.
    pub fn candidates(&self, a: &Affinity<'_>) -> Vec<usize> {
        let n = self.config.endpoints.len();
        let mut pool: Vec<usize> = (0..n).filter(|&i| self.state[i].usable()).collect();
        if pool.is_empty() {
            pool = (0..n).collect();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut order = match &self.config.balance.policy {
            Policy::RoundRobin => rotated(pool, start),
            Policy::LeastConnections => {
                let mut order = rotated(pool, start);
                // Stable sort: ties keep the rotation, so they spread too.
                order.sort_by_key(|&i| self.state[i].active.load(Ordering::Relaxed));
                order
            }
            Policy::Hash(key) => match key_of(a, key) {
                Some(k) => rendezvous(stable_hash(k.as_bytes()), &pool, &self.ids.seeds),
                None => rotated(pool, start),
            },
        };
        if let Some(i) = self.cookie_endpoint(a) {
            if let Some(at) = order.iter().position(|&c| c == i) {
                order[..=at].rotate_right(1);
            }
        }
        if let Some(&first) = order.first() {
            self.state[first].metrics.selections.inc();
        }
        order
    }

    /// Passive health: report what happened on endpoint `i`.
    pub fn report(&self, i: usize, outcome: Outcome) {
        let Some(state) = self.state.get(i) else {
            return;
        };
        let url = &self.config.endpoints[i].url;
        match outcome {
            Outcome::Ok => state.succeeded(),
            Outcome::ConnectFailed => {
                state.metrics.connect_failures.inc();
                state.failed(&self.config.balance.passive, url);
            }
            Outcome::ServerError => {
                state.metrics.server_errors.inc();
                state.failed(&self.config.balance.passive, url);
            }
        }
    }

    /// The `Set-Cookie` value to add to the response of a session or
    /// request that endpoint `i` served: `None` without an affinity cookie,
    /// or when the client's cookie already names `i`.
    pub fn affinity_cookie(&self, a: &Affinity<'_>, i: usize) -> Option<String> {
        let c = self.config.balance.cookie.as_ref()?;
        if self.cookie_endpoint(a) == Some(i) {
            return None;
        }
        let token = self.ids.tokens.get(i)?;
        let mut value = format!(
            "{}={token}; Path={}; HttpOnly; SameSite=Lax",
            c.name, c.path
        );
        if let Some(age) = c.max_age {
            value.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        if c.secure {
            value.push_str("; Secure");
        }
        Some(value)
    }

    /// Count a session or request in flight on `i` until the guard drops
    /// (what `least_connections` compares).
    pub fn track(self: &Arc<Self>, i: usize) -> Active {
        self.state[i].active.fetch_add(1, Ordering::Relaxed);
        Active {
            upstream: Arc::clone(self),
            endpoint: i,
        }
    }

    /// The usable endpoint the request's affinity cookie names.
    fn cookie_endpoint(&self, a: &Affinity<'_>) -> Option<usize> {
        let c = self.config.balance.cookie.as_ref()?;
        let value = cookie(a.headers, &c.name)?;
        let i = self.ids.tokens.iter().position(|t| t == value)?;
        self.state[i].usable().then_some(i)
    }
}

/// `pool` starting at `start % len`.
fn rotated(mut pool: Vec<usize>, start: usize) -> Vec<usize> {
    if !pool.is_empty() {
        let k = start % pool.len();
        pool.rotate_left(k);
    }
    pool
}

/// Rendezvous order of `pool` for `key`: highest weight first.
pub(crate) fn rendezvous(key: u64, pool: &[usize], seeds: &[u64]) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = pool.iter().map(|&i| (mix(key ^ seeds[i]), i)).collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// The balancing key of a request, if it carries one.
fn key_of<'a>(a: &'a Affinity<'_>, key: &'a HashKey) -> Option<std::borrow::Cow<'a, str>> {
    use std::borrow::Cow;
    match key {
        HashKey::Cookie(name) => cookie(a.headers, name).map(Cow::Borrowed),
        HashKey::Header(name) => a.headers.get(name).map(Cow::Borrowed),
        HashKey::Query(name) => a
            .query?
            .split('&')
            .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
            .find(|(k, _)| k == name)
            .map(|(_, v)| Cow::Borrowed(v)),
        HashKey::PathSegment(n) => a
            .path
            .split('/')
            .filter(|s| !s.is_empty())
            .nth(*n)
            .map(Cow::Borrowed),
        HashKey::ClientIp => Some(Cow::Owned(a.client.to_string())),
    }
    .filter(|k| !k.is_empty())
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(head: &'a RequestHead, name: &str) -> Option<&'a str> {
    head.all("cookie")
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// First 8 bytes of SHA-256: the same on every gateway and every build.
fn stable_hash(bytes: &[u8]) -> u64 {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d.as_ref()[..8]);
    u64::from_le_bytes(b)
}

/// splitmix64's finaliser: a key and a seed XORed become an even weight.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
