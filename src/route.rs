//! Route matching: (Host, path) → the route that owns the request.
//!
//! Pure and allocation-free per lookup. Hosts match exactly or by `*.suffix`;
//! among routes whose host matches, the longest path prefix wins, matched on
//! segment boundaries (`/chat` matches `/chat` and `/chat/x`, not `/chatroom`).
//! A route with a host beats a host-less route with the same prefix.
//! Matching happens on the normalised path ([`normalize`]), never on the
//! path as sent.

pub mod normalize;

pub use normalize::{EncodedSlash, PathError, PathPolicy};

use crate::config::RouteConfig;
use std::sync::Arc;

/// How a route matches the request's Host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// No host given: every host.
    Any,
    /// Exact name, lowercase, no port.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: any name ending in it
    /// (but not `example.com` itself).
    Suffix(String),
}

impl HostMatch {
    pub fn parse(text: &str) -> Result<HostMatch, String> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Ok(HostMatch::Any);
        }
        let valid = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        if let Some(suffix) = text.strip_prefix("*.") {
            if valid(suffix) {
                return Ok(HostMatch::Suffix(format!(".{suffix}")));
            }
        } else if valid(&text) {
            return Ok(HostMatch::Exact(text));
        }
        Err(format!("{text:?} is not a host name or *.suffix pattern"))
    }

    /// `host` is already lowercase and without its port.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h == host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    /// Exact beats suffix beats any, on equal path length.
    fn rank(&self) -> u8 {
        match self {
            HostMatch::Exact(_) => 2,
            HostMatch::Suffix(_) => 1,
            HostMatch::Any => 0,
        }
    }
}

/// Normalise a configured prefix: must start with `/`; a trailing `/` is
/// dropped (except for the root) so `/chat/` and `/chat` mean the same.
pub fn normalize_prefix(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'"));
    }
    if path.contains(['?', '#']) || path.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(format!("{path:?} must be a plain path"));
    }
    let trimmed = path.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    })
}

/// Does `prefix` (normalised) cover `path` on a segment boundary?
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

/// Strip the port from a Host header value and lowercase it.
pub fn host_without_port(host: &str) -> String {
    let host = host.trim();
    let bare = if let Some(rest) = host.strip_prefix('[') {
        // IPv6 literal: keep what is inside the brackets.
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    bare.to_ascii_lowercase()
}

/// The routes, ordered so the first match is the best one.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Arc<RouteConfig>>,
    /// How request paths are normalised before they are matched.
    paths: PathPolicy,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Arc<RouteConfig>>) -> Self {
        // Longest prefix first, then the most specific host; stable so the
        // configured order breaks remaining ties.
        routes.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then(b.host.rank().cmp(&a.host.rank()))
        });
        Self {
            routes,
            paths: PathPolicy::default(),
        }
    }

    /// The same table with the configured path policy.
    pub fn with_path_policy(mut self, paths: PathPolicy) -> Self {
        self.paths = paths;
        self
    }

    /// The normal form of a request path under this table's policy.
    pub fn normalize(&self, path: &str) -> Result<String, PathError> {
        normalize::normalize(path, self.paths)
    }

    /// `host` lowercase without port; `path` without the query.
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<RouteConfig>> {
        self.routes
            .iter()
            .find(|r| r.host.matches(host) && prefix_matches(&r.path, path))
    }

    pub fn routes(&self) -> &[Arc<RouteConfig>] {
        &self.routes
    }
}

#[cfg(test)]
mod tests;
