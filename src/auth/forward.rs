//! Forward auth (nginx `auth_request`, Traefik ForwardAuth): ask an HTTP
//! service whether the client may in, with selected request headers. 2xx
//! allows (selected response headers go to the upstream), 401/403 are the
//! client's answer, anything else — error, timeout, other status — fails
//! closed (503) unless `fail_open`. Allowed answers are cached for a TTL,
//! keyed on a SHA-256 of the headers sent, never on the credential itself.

use super::apikey::sha256;
use super::http::Target;
use super::AuthError;
use crate::handshake::RequestHead;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A forward-auth answer that lets the client in.
#[derive(Debug, Clone)]
pub enum Allowed {
    /// Response headers to copy upstream.
    Headers(Vec<(String, String)>),
    /// The service failed and the policy fails open.
    FailOpen,
}

/// Allowed answers: hash of what was sent → (when, headers to copy).
type Cache = HashMap<[u8; 32], (Instant, Vec<(String, String)>)>;

pub struct ForwardAuth {
    pub target: Target,
    pub timeout: Duration,
    /// Lower-case names.
    pub request_headers: Vec<String>,
    /// Lower-case names.
    pub response_headers: Vec<String>,
    pub fail_open: bool,
    pub cache_ttl: Duration,
    pub cache_max_entries: usize,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("target", &self.target)
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

impl ForwardAuth {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        target: Target,
        timeout: Duration,
        request_headers: Vec<String>,
        response_headers: Vec<String>,
        fail_open: bool,
        cache_ttl: Duration,
        cache_max_entries: usize,
    ) -> ForwardAuth {
        ForwardAuth {
            target,
            timeout,
            request_headers,
            response_headers,
            fail_open,
            cache_ttl,
            cache_max_entries,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Ask the service (or the cache) about this request.
    /// `path`: the normalised path the route matched, the one the
    /// application will see.
    pub async fn check(
        &self,
        head: &RequestHead,
        host: &str,
        path: &str,
    ) -> Result<Allowed, AuthError> {
        let mut sent: Vec<(String, String)> = Vec::new();
        for (name, value) in &head.headers {
            let lower = name.to_ascii_lowercase();
            if self.request_headers.contains(&lower) {
                sent.push((lower, value.to_string()));
            }
        }
        let key = self.cache_key(&sent, host, path);
        if let Some(headers) = self.cached(&key) {
            return Ok(Allowed::Headers(headers));
        }
        sent.push(("x-forwarded-method".into(), head.method.to_string()));
        sent.push(("x-forwarded-host".into(), host.to_string()));
        sent.push(("x-forwarded-uri".into(), path.to_string()));
        let resp = match tokio::time::timeout(self.timeout, self.target.get(&sent)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                tracing::warn!(service = ?self.target, error = %e, "forward auth failed");
                return self.failed();
            }
            Err(_) => {
                tracing::warn!(service = ?self.target, "forward auth timed out");
                return self.failed();
            }
        };
        match resp.status {
            200..=299 => {
                let headers: Vec<(String, String)> = resp
                    .headers
                    .into_iter()
                    .filter(|(n, _)| self.response_headers.contains(&n.to_ascii_lowercase()))
                    .filter(|(_, v)| !v.bytes().any(|b| b == b'\r' || b == b'\n'))
                    .collect();
                self.remember(key, &headers);
                Ok(Allowed::Headers(headers))
            }
            401 | 403 => Err(AuthError::Denied(resp.status)),
            status => {
                tracing::warn!(service = ?self.target, status, "forward auth answered an error");
                self.failed()
            }
        }
    }

    fn failed(&self) -> Result<Allowed, AuthError> {
        if self.fail_open {
            Ok(Allowed::FailOpen)
        } else {
            Err(AuthError::Unavailable)
        }
    }

    fn cache_key(&self, sent: &[(String, String)], host: &str, path: &str) -> [u8; 32] {
        let mut material = Vec::with_capacity(256);
        for part in [host, path] {
            material.extend_from_slice(part.as_bytes());
            material.push(0);
        }
        for (n, v) in sent {
            material.extend_from_slice(n.as_bytes());
            material.push(b':');
            material.extend_from_slice(v.as_bytes());
            material.push(0);
        }
        sha256(&material)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Vec<(String, String)>> {
        if self.cache_ttl.is_zero() {
            return None;
        }
        let cache = self.cache.lock().expect("cache lock is never poisoned");
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.cache_ttl)
            .map(|(_, h)| h.clone())
    }

    fn remember(&self, key: [u8; 32], headers: &[(String, String)]) {
        if self.cache_ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().expect("cache lock is never poisoned");
        if cache.len() >= self.cache_max_entries {
            let ttl = self.cache_ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= self.cache_max_entries {
                // Still full of live entries: start over rather than grow.
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), headers.to_vec()));
    }
}
