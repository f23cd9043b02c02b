//! The client's upgrade request: read the head (bounded in bytes and time),
//! validate it against RFC 6455 §4.2.1, route it, and check its Origin.
//!
//! Parsing is two steps, as in mini-redis: `httparse` finds the head in a
//! short-lived buffer, then [`validate`] decides. Every refusal is a typed
//! [`Rejection`] that knows its HTTP status and its metric label.

mod request;
mod response;

pub use request::{read_head, HeadError, RequestHead};
pub use response::{write_rejection, Rejection};

use crate::config::RouteConfig;
use crate::origin::OriginDenied;
use crate::route::{host_without_port, RouteTable};
use base64::Engine;
use sha1::{Digest, Sha1};
use std::sync::Arc;

/// A request that may be proxied: everything later phases need.
#[derive(Debug)]
pub struct Upgrade {
    pub route: Arc<RouteConfig>,
    /// `Sec-WebSocket-Key`, passed through unchanged so the upstream's
    /// `Sec-WebSocket-Accept` is the one the client expects.
    pub key: String,
    /// Sub-protocols offered by the client, after the route's filter.
    pub protocols: Vec<String>,
    /// The client's Host header value (with port), for X-Forwarded-Host.
    pub host: String,
}

/// RFC 6455 §4.2.2: the accept value for a key.
pub fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// RFC 7230 token (used for sub-protocol names).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Does any comma-separated element of any `name` header equal `token`
/// (case-insensitively)?
pub fn has_token(head: &RequestHead, name: &str, token: &str) -> bool {
    head.all(name)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A refusal, with the route it happened on (if one matched) for metrics.
#[derive(Debug)]
pub struct Refused {
    pub rejection: Rejection,
    pub route: Option<Arc<RouteConfig>>,
}

/// Decide whether the request may go on to the upstream.
pub fn validate(head: &RequestHead, routes: &RouteTable) -> Result<Upgrade, Refused> {
    if head.version < 1 {
        return Err(Refused {
            rejection: Rejection::HttpVersion,
            route: None,
        });
    }
    let host = match head.get("host").map(str::trim) {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => {
            return Err(Refused {
                rejection: Rejection::MissingHost,
                route: None,
            })
        }
    };
    let Some(route) = routes.find(&host_without_port(&host), head.path()) else {
        return Err(Refused {
            rejection: Rejection::NoRoute,
            route: None,
        });
    };
    check_upgrade(head, route, host).map_err(|rejection| Refused {
        rejection,
        route: Some(Arc::clone(route)),
    })
}

/// The checks that happen once a route is known.
fn check_upgrade(
    head: &RequestHead,
    route: &Arc<RouteConfig>,
    host: String,
) -> Result<Upgrade, Rejection> {
    if head.method != "GET" {
        return Err(Rejection::Method);
    }
    if !has_token(head, "upgrade", "websocket") {
        return Err(Rejection::NotWebSocket);
    }
    if !has_token(head, "connection", "upgrade") {
        return Err(Rejection::ConnectionHeader);
    }
    if head.get("content-length").is_some_and(|v| v.trim() != "0")
        || head.get("transfer-encoding").is_some()
    {
        return Err(Rejection::Body);
    }
    match head.get("sec-websocket-version").map(str::trim) {
        Some("13") => {}
        Some(_) => return Err(Rejection::Version),
        None => return Err(Rejection::MissingVersion),
    }
    let key = head
        .get("sec-websocket-key")
        .map(str::trim)
        .filter(|k| is_valid_key(k))
        .ok_or(Rejection::Key)?
        .to_string();
    route
        .origins
        .check(head.get("origin"))
        .map_err(|e| match e {
            OriginDenied::Missing => Rejection::OriginMissing,
            OriginDenied::NotAllowed => Rejection::OriginDenied,
        })?;
    let protocols = head
        .all("sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect::<Vec<_>>();
    if protocols.iter().any(|p| !is_token(p)) {
        return Err(Rejection::Protocol);
    }
    let protocols = if route.subprotocols.is_empty() {
        protocols
    } else {
        protocols
            .into_iter()
            .filter(|p| route.subprotocols.iter().any(|a| a == p))
            .collect()
    };
    Ok(Upgrade {
        route: Arc::clone(route),
        key,
        protocols,
        host,
    })
}

/// Base64 of exactly 16 bytes (RFC 6455 §4.1, item 7).
fn is_valid_key(key: &str) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|k| k.len() == 16)
}

#[cfg(test)]
mod tests;
