//! The request sent upstream and the 101 sent back to the client.
//!
//! End-to-end headers (cookies, user agent, Origin, authorization, …) pass
//! through; hop-by-hop headers (RFC 9110 §7.6.1, and any named in
//! `Connection`) do not; the handshake headers are rewritten; forwarding
//! headers say who the client is. Client-sent `X-Forwarded-*`/`Forwarded`
//! are dropped unless the upstream config trusts them, so a client cannot
//! claim another address. With edge auth, the [`Identity`] decides what
//! else changes: its credential (header, cookie, query parameter) is
//! removed, client-sent copies of identity headers are dropped, and the
//! identity headers are added.

use crate::auth::source::{strip_cookie, strip_query};
use crate::auth::Identity;
use crate::config::{EndpointConfig, RouteConfig, UpstreamConfig};
use crate::handshake::{RequestHead, Upgrade};
use std::fmt::Write;
use std::net::SocketAddr;

/// Hop-by-hop headers and the ones the gateway writes itself.
const NOT_FORWARDED: &[&str] = &[
    "host",
    "connection",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-accept",
];

const FORWARDING: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
];

/// Headers of a response or request that never cross the gateway as they are.
pub fn is_handshake_or_hop_header(name: &str) -> bool {
    NOT_FORWARDED.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Who the client is, as the gateway saw it.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub addr: SocketAddr,
    /// The client connected over TLS.
    pub tls: bool,
}

/// The path and query to request upstream.
fn target(
    route: &RouteConfig,
    ep: &EndpointConfig,
    head: &RequestHead,
    identity: Option<&Identity>,
) -> String {
    let mut path = head.path();
    if route.strip_prefix && route.path != "/" {
        path = path.strip_prefix(route.path.as_str()).unwrap_or(path);
    }
    let mut out = String::with_capacity(ep.base_path.len() + head.target.len() + 1);
    out.push_str(&ep.base_path);
    if !path.starts_with('/') {
        out.push('/');
    }
    out.push_str(path);
    if let Some(q) = head.query() {
        let stripped;
        let q = match identity.and_then(|i| i.strip_query.as_deref()) {
            Some(name) => {
                stripped = strip_query(q, name);
                stripped.as_str()
            }
            None => q,
        };
        if !q.is_empty() {
            out.push('?');
            out.push_str(q);
        }
    }
    out
}

/// Build the upgrade request for one endpoint.
pub fn build_request(
    head: &RequestHead,
    upgrade: &Upgrade,
    upstream: &UpstreamConfig,
    ep: &EndpointConfig,
    client: ClientInfo,
    identity: Option<&Identity>,
) -> Vec<u8> {
    let connection_named: Vec<String> = head
        .all("connection")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = String::with_capacity(1024);
    let _ = write!(
        out,
        "GET {} HTTP/1.1\r\n",
        target(&upgrade.route, ep, head, identity)
    );
    let host = if upstream.preserve_host {
        upgrade.host.as_str()
    } else {
        ep.authority.as_str()
    };
    let _ = write!(
        out,
        "Host: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
        upgrade.key
    );
    if !upgrade.protocols.is_empty() {
        let _ = write!(
            out,
            "Sec-WebSocket-Protocol: {}\r\n",
            upgrade.protocols.join(", ")
        );
    }
    let mut prior_xff = Vec::new();
    for (name, value) in &head.headers {
        let lower = name.to_ascii_lowercase();
        if NOT_FORWARDED.contains(&lower.as_str())
            || connection_named.contains(&lower)
            || upstream
                .add_headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            continue;
        }
        if let Some(id) = identity {
            if id.strip_headers.contains(&lower) {
                continue;
            }
            if let (Some(cookie), "cookie") = (&id.strip_cookie, lower.as_str()) {
                if let Some(rest) = strip_cookie(value, cookie) {
                    let _ = write!(out, "{name}: {rest}\r\n");
                }
                continue;
            }
        }
        if FORWARDING.contains(&lower.as_str()) {
            if !upstream.trust_forwarded_headers {
                continue;
            }
            if lower == "x-forwarded-for" {
                prior_xff.push(value.as_str());
                continue;
            }
            if lower == "x-forwarded-proto" || lower == "x-forwarded-host" || lower == "forwarded" {
                // Kept as sent by the trusted proxy in front.
                let _ = write!(out, "{name}: {value}\r\n");
                continue;
            }
        }
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let ip = client.addr.ip();
    let proto = if client.tls { "https" } else { "http" };
    prior_xff.push("");
    let xff = prior_xff[..prior_xff.len() - 1].join(", ");
    if xff.is_empty() {
        let _ = write!(out, "X-Forwarded-For: {ip}\r\n");
    } else {
        let _ = write!(out, "X-Forwarded-For: {xff}, {ip}\r\n");
    }
    let trusted = upstream.trust_forwarded_headers;
    if !(trusted && head.get("x-forwarded-proto").is_some()) {
        let _ = write!(out, "X-Forwarded-Proto: {proto}\r\n");
    }
    if !(trusted && head.get("x-forwarded-host").is_some()) {
        let _ = write!(out, "X-Forwarded-Host: {}\r\n", upgrade.host);
    }
    if !(trusted && head.get("forwarded").is_some()) {
        let for_ = if ip.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip.to_string()
        };
        let _ = write!(
            out,
            "Forwarded: for={for_};host=\"{}\";proto={proto}\r\n",
            upgrade.host.replace(['"', '\\'], "")
        );
    }
    for (name, value) in identity.iter().flat_map(|i| &i.headers) {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    for (name, value) in &upstream.add_headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The 101 for the client, carrying the upstream's choice and its
/// end-to-end headers (e.g. Set-Cookie).
pub fn switching_protocols(
    accept: &str,
    protocol: Option<&str>,
    headers: &[(String, String)],
) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    let _ = write!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = protocol {
        let _ = write!(out, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}
