//! The client's upgrade request: read the head (bounded in bytes and time),
//! validate it against RFC 6455 §4.2.1, route it, and check its Origin.
//!
//! Parsing is two steps, as in mini-redis: `httparse` finds the head in a
//! short-lived buffer, then [`validate`] decides. Every refusal is a typed
//! [`Rejection`] that knows its HTTP status and its metric label.

pub mod field;
mod framing;
mod request;
mod response;
mod text;

/// The framing and Host checks alone, for the fuzz target `framing`
/// (docs/fuzzing.md).
#[doc(hidden)]
pub use framing::check as check_framing;
pub use framing::valid_host;

pub use request::{read_head, HeadError, RequestHead};
pub use response::{write_rejection, Rejection};
pub use text::Text;

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
    /// The normalised request path the route matched; what the upstream
    /// is sent (after the route's `strip_prefix`), never the path as sent.
    pub path: String,
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

impl Refused {
    /// A refusal before any route matched.
    pub fn unrouted(rejection: Rejection) -> Refused {
        Refused {
            rejection,
            route: None,
        }
    }

    /// A refusal on `route`.
    pub fn on(route: &Arc<RouteConfig>, rejection: Rejection) -> Refused {
        Refused {
            rejection,
            route: Some(Arc::clone(route)),
        }
    }
}

/// A request whose route is known.
#[derive(Debug)]
pub struct Routed {
    pub route: Arc<RouteConfig>,
    /// The client's Host header value (with port), for X-Forwarded-Host.
    pub host: String,
    /// The normalised path (no query).
    pub path: String,
}

/// What the client asks for on its route.
#[derive(Debug)]
pub enum Kind {
    /// A valid WebSocket upgrade.
    Upgrade(Upgrade),
    /// A plain HTTP request (no `Upgrade: websocket`). Its route, Host
    /// and normalised path travel in an [`Upgrade`] with no key and no
    /// sub-protocols, so the policy steps and the upstream request are
    /// built by the same code as for an upgrade.
    Http(Upgrade),
}

/// Phase: route. The route for the request's host and normalised path,
/// after the checks that keep two parsers from reading the head
/// differently (one Host, valid; an unambiguous body length).
pub fn route(head: &RequestHead, routes: &RouteTable) -> Result<Routed, Rejection> {
    if head.version < 1 {
        return Err(Rejection::HttpVersion);
    }
    let host = framing::check(head)?;
    let path = routes
        .normalize(head.path())
        .map_err(|_| Rejection::BadPath)?;
    let route = routes
        .find(&host_without_port(&host), &path)
        .ok_or(Rejection::NoRoute)?;
    Ok(Routed {
        route: Arc::clone(route),
        host,
        path,
    })
}

/// Phase: classify. A plain HTTP request, or a WebSocket upgrade checked
/// against RFC 6455 §4.2.1 and the route's sub-protocols.
pub fn classify(head: &RequestHead, routed: Routed) -> Result<Kind, Rejection> {
    if !has_token(head, "upgrade", "websocket") {
        return Ok(Kind::Http(Upgrade {
            route: routed.route,
            key: String::new(),
            protocols: Vec::new(),
            host: routed.host,
            path: routed.path,
        }));
    }
    if head.method != "GET" {
        return Err(Rejection::Method);
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
    let protocols = offered_protocols(head, &routed.route)?;
    Ok(Kind::Upgrade(Upgrade {
        route: routed.route,
        key,
        protocols,
        host: routed.host,
        path: routed.path,
    }))
}

/// What a plain HTTP request on a WebSocket-only route gets: 405 for a
/// method other than GET, else 426 (Upgrade Required).
pub fn plain_http_rejection(head: &RequestHead) -> Rejection {
    if head.method != "GET" {
        Rejection::Method
    } else {
        Rejection::NotWebSocket
    }
}

/// Policy, first step: the route's Origin rule.
pub fn check_origin(head: &RequestHead, route: &RouteConfig) -> Result<(), Rejection> {
    route
        .origins
        .check(head.get("origin"))
        .map_err(|e| match e {
            OriginDenied::Missing => Rejection::OriginMissing,
            OriginDenied::NotAllowed => Rejection::OriginDenied,
        })
}

/// The client's sub-protocols, each a token, after the route's filter.
fn offered_protocols(head: &RequestHead, route: &RouteConfig) -> Result<Vec<String>, Rejection> {
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
    if route.subprotocols.is_empty() {
        return Ok(protocols);
    }
    Ok(protocols
        .into_iter()
        .filter(|p| route.subprotocols.iter().any(|a| a == p))
        .collect())
}

/// The pure checks of the connection's phases in their order — route,
/// classify, origin — for fuzzing, benchmarks and table tests. A plain
/// HTTP request is refused as the gateway refuses it.
pub fn validate(head: &RequestHead, routes: &RouteTable) -> Result<Upgrade, Refused> {
    let routed = route(head, routes).map_err(Refused::unrouted)?;
    let route = Arc::clone(&routed.route);
    let refused = |r| Refused::on(&route, r);
    match classify(head, routed).map_err(refused)? {
        Kind::Http(_) => Err(refused(plain_http_rejection(head))),
        Kind::Upgrade(upgrade) => {
            check_origin(head, &upgrade.route).map_err(refused)?;
            Ok(upgrade)
        }
    }
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
