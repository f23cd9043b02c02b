//! Who may use the admin listener. A browser on the operator's machine
//! must not be able to drive it: a page from any site can send a "simple"
//! cross-origin POST, and a DNS name rebound to 127.0.0.1 makes the page
//! same-origin. So every request's `Host` must be loopback, an IP literal
//! or a configured name (a rebound name is none of these), an optional
//! bearer token guards every endpoint, and a state change needs a request
//! no browser sends cross-origin without a CORS preflight (which the admin
//! listener never grants): the token or the `X-Tidegate-Admin` header.

use crate::config::AdminAccess;
use hyper::{HeaderMap, Method, StatusCode};
use std::net::IpAddr;

/// The header that makes a state-changing request non-simple when no
/// token is configured.
pub const ADMIN_HEADER: &str = "x-tidegate-admin";

/// Why an admin request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("Host is not an admin name")]
    Host,
    #[error("missing or wrong admin token")]
    Token,
    #[error("a state change needs the admin token or the X-Tidegate-Admin header")]
    SimpleRequest,
}

impl Denied {
    pub fn status(self) -> StatusCode {
        match self {
            Denied::Host => StatusCode::MISDIRECTED_REQUEST,
            Denied::Token => StatusCode::UNAUTHORIZED,
            Denied::SimpleRequest => StatusCode::FORBIDDEN,
        }
    }

    /// `reason` label of `tidegate_admin_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Denied::Host => "host",
            Denied::Token => "token",
            Denied::SimpleRequest => "simple_request",
        }
    }
}

/// Check one admin request.
pub fn check(access: &AdminAccess, method: &Method, headers: &HeaderMap) -> Result<(), Denied> {
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| allowed_host(access, h)) {
        return Err(Denied::Host);
    }
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if let Some(token) = &access.token {
        return match bearer.is_some_and(|b| constant_time_eq(b.as_bytes(), token.as_bytes())) {
            true => Ok(()),
            false => Err(Denied::Token),
        };
    }
    let changes_state = !matches!(*method, Method::GET | Method::HEAD);
    if changes_state && !headers.contains_key(ADMIN_HEADER) {
        return Err(Denied::SimpleRequest);
    }
    Ok(())
}

/// Loopback names, IP literals (they cannot be rebound) and the
/// configured names.
fn allowed_host(access: &AdminAccess, value: &str) -> bool {
    if !crate::handshake::valid_host(value.trim()) {
        return false;
    }
    let host = crate::route::host_without_port(value);
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok()
        || access.hosts.contains(&host)
}

/// Compare without an early exit, so timing does not reveal a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, hyper::header::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hosts_and_simple_requests() {
        let open = AdminAccess {
            token: None,
            hosts: vec!["admin.internal".into()],
        };
        let ok = |m: Method, h: &[(&'static str, &'static str)]| check(&open, &m, &headers(h));
        assert_eq!(ok(Method::GET, &[("host", "127.0.0.1:9090")]), Ok(()));
        assert_eq!(ok(Method::GET, &[("host", "[::1]:9090")]), Ok(()));
        assert_eq!(ok(Method::GET, &[("host", "localhost:9090")]), Ok(()));
        assert_eq!(ok(Method::GET, &[("host", "admin.internal")]), Ok(()));
        assert_eq!(
            ok(Method::GET, &[("host", "evil.example:9090")]),
            Err(Denied::Host)
        );
        assert_eq!(ok(Method::GET, &[]), Err(Denied::Host));
        assert_eq!(
            ok(Method::POST, &[("host", "127.0.0.1")]),
            Err(Denied::SimpleRequest)
        );
        assert_eq!(
            ok(
                Method::POST,
                &[("host", "127.0.0.1"), ("x-tidegate-admin", "1")]
            ),
            Ok(())
        );
    }

    #[test]
    fn token_guards_everything() {
        let locked = AdminAccess {
            token: Some("0123456789abcdef".into()),
            hosts: Vec::new(),
        };
        let h = |auth: &'static str| headers(&[("host", "127.0.0.1"), ("authorization", auth)]);
        assert_eq!(
            check(&locked, &Method::GET, &h("Bearer nope")),
            Err(Denied::Token)
        );
        assert_eq!(
            check(&locked, &Method::GET, &h("Bearer 0123456789abcdef")),
            Ok(())
        );
        assert_eq!(
            check(&locked, &Method::POST, &h("Bearer 0123456789abcdef")),
            Ok(())
        );
    }
}
