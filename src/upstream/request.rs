//! The request sent upstream and the 101 sent back to the client.
//!
//! End-to-end headers (cookies, user agent, Origin, authorization, …) pass
//! through; hop-by-hop headers (RFC 9110 §7.6.1, and any named in
//! `Connection`) do not; the handshake headers are rewritten; forwarding
//! headers say who the client is. Client-sent `X-Forwarded-*`/`Forwarded`
//! are dropped unless the upstream config trusts them, so a client cannot
//! claim another address. Client-sent copies of any configured identity
//! header are dropped on every route, authenticated or not. With edge
//! auth, the [`Identity`] decides what else changes: every place its
//! policy may carry a credential (header, cookie, query parameter) is
//! cleared, and the identity headers are added. The path is the
//! normalised one the route matched.

use super::ClientInfo;
use crate::auth::source::{strip_cookie, strip_query};
use crate::auth::Identity;
use crate::config::{DeflateMode, EndpointConfig, UpstreamConfig};
use crate::deflate::params::{self, Params};
use crate::handshake::{RequestHead, Upgrade};
use std::fmt::Write;
use tidegate_mux::OpenBody;

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

/// The request the application is to see, built once from the client's:
/// the path after the route's rewrite, the query without the credential,
/// and the end-to-end headers with the forwarding and identity headers
/// added. Passthrough serialises it for each endpoint it tries
/// ([`UpstreamRequest::to_http`]); mux turns it into an OPEN
/// ([`UpstreamRequest::into_open`]). Nothing is built only to be parsed
/// back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// After `strip_prefix`; always starts with `/`. An endpoint's base
    /// path goes in front of it when sent.
    pub path: String,
    /// Without the credential parameter; empty when there is none.
    pub query: String,
    /// In the order they are sent, names as the client spelled them. The
    /// upstream's `add_headers` are not here: passthrough appends them per
    /// request, mux sent them once on the mux connection's handshake.
    pub headers: Vec<(String, String)>,
    /// The client's valid permessage-deflate offers, forwarded when the
    /// route negotiates it end to end; empty otherwise.
    pub deflate_offers: Vec<Params>,
}

impl UpstreamRequest {
    pub fn new(
        head: &RequestHead,
        upgrade: &Upgrade,
        upstream: &UpstreamConfig,
        client: ClientInfo,
        identity: Option<&Identity>,
    ) -> UpstreamRequest {
        UpstreamRequest {
            path: rewritten_path(upgrade),
            query: query_without_credential(head, identity),
            headers: forwarded_headers(head, upgrade, upstream, client, identity),
            deflate_offers: match &upgrade.route.deflate {
                DeflateMode::Passthrough => {
                    params::client_offers(head.all("sec-websocket-extensions"))
                }
                // Edge: the gateway answers the client; upstream is plain.
                DeflateMode::Off | DeflateMode::Edge(_) => Vec::new(),
            },
        }
    }

    /// The upgrade request for one endpoint.
    pub fn to_http(
        &self,
        upgrade: &Upgrade,
        upstream: &UpstreamConfig,
        ep: &EndpointConfig,
    ) -> Vec<u8> {
        let mut out = String::with_capacity(1024);
        let _ = write!(out, "GET {}{}", ep.base_path, self.path);
        if !self.query.is_empty() {
            let _ = write!(out, "?{}", self.query);
        }
        let host = if upstream.preserve_host {
            upgrade.host.as_str()
        } else {
            ep.authority.as_str()
        };
        let _ = write!(
            out,
            " HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            upgrade.key
        );
        if !upgrade.protocols.is_empty() {
            let _ = write!(
                out,
                "Sec-WebSocket-Protocol: {}\r\n",
                upgrade.protocols.join(", ")
            );
        }
        if let Some(offer) = params::forwardable_offer(&self.deflate_offers) {
            let _ = write!(out, "Sec-WebSocket-Extensions: {offer}\r\n");
        }
        for (name, value) in self.headers.iter().chain(&upstream.add_headers) {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// The OPEN body a mux application gets for this request.
    pub fn into_open(
        self,
        upgrade: &Upgrade,
        client: ClientInfo,
        identity: Option<&Identity>,
    ) -> OpenBody {
        let headers = self
            .headers
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            // The client's handshake headers are the gateway's business.
            .filter(|(n, _)| !n.starts_with("sec-websocket-"))
            .collect();
        OpenBody {
            path: self.path,
            query: self.query,
            headers,
            client_addr: client.addr.to_string(),
            protocols: upgrade.protocols.clone(),
            route: upgrade.route.name.clone(),
            tls: client.tls,
            identity: identity
                .map(|i| serde_json::json!({ "result": i.result, "headers": i.headers })),
        }
    }
}

/// The normalised path after the route's `strip_prefix`, starting with
/// `/`.
pub fn rewritten_path(upgrade: &Upgrade) -> String {
    let route = &upgrade.route;
    strip_route_prefix(&route.path, route.strip_prefix, &upgrade.path)
}

/// `path` (normalised, matched by the route prefix `route_path`) without
/// that prefix when `strip` is on, starting with `/`. Normalisation removed
/// every `..`, so what is left cannot climb out of an endpoint's base path
/// (the fuzz target `path` checks it).
pub fn strip_route_prefix(route_path: &str, strip: bool, path: &str) -> String {
    let mut path = path;
    if strip && route_path != "/" {
        path = path.strip_prefix(route_path).unwrap_or(path);
    }
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// The client's query without the credential the identity came from.
pub fn query_without_credential(head: &RequestHead, identity: Option<&Identity>) -> String {
    let Some(q) = head.query() else {
        return String::new();
    };
    let names = identity.map_or(&[][..], |i| &i.strip_queries[..]);
    names
        .iter()
        .fold(q.to_string(), |q, name| strip_query(&q, name))
}

/// End-to-end headers of the client, then the forwarding headers, then the
/// identity's headers.
fn forwarded_headers(
    head: &RequestHead,
    upgrade: &Upgrade,
    upstream: &UpstreamConfig,
    client: ClientInfo,
    identity: Option<&Identity>,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(head.headers.len() + 4);
    let mut keep = |name: &str, value: &str| out.push((name.to_owned(), value.to_owned()));
    each_forwarded_header(head, upgrade, upstream, client, identity, &mut keep);
    out
}

/// The headers [`UpstreamRequest`] carries, handed to `f` one by one in
/// the order they are sent, without a string built for each: a plain
/// HTTP request writes them straight into its head (`http::request`).
pub fn each_forwarded_header(
    head: &RequestHead,
    upgrade: &Upgrade,
    upstream: &UpstreamConfig,
    client: ClientInfo,
    identity: Option<&Identity>,
    f: &mut dyn FnMut(&str, &str),
) {
    let connection_named: Vec<String> = head
        .all("connection")
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let mut prior_xff = Vec::new();
    // Names are compared without case, never lower-cased into a new
    // string: this runs for every header of every proxied request.
    let listed = |list: &[String], name: &str| list.iter().any(|n| n.eq_ignore_ascii_case(name));
    for (name, value) in &head.headers {
        if is_handshake_or_hop_header(name)
            || listed(&connection_named, name)
            || listed(&upgrade.route.identity_headers, name)
            || upstream
                .add_headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            continue;
        }
        if let Some(id) = identity {
            if listed(&id.strip_headers, name) {
                continue;
            }
            if name.eq_ignore_ascii_case("cookie") && !id.strip_cookies.is_empty() {
                let mut rest = Some(value.to_string());
                for cookie in &id.strip_cookies {
                    rest = rest.and_then(|v| strip_cookie(&v, cookie));
                }
                if let Some(rest) = rest {
                    f(name, &rest);
                }
                continue;
            }
        }
        if FORWARDING.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            if !upstream.trust_forwarded_headers {
                continue;
            }
            if name.eq_ignore_ascii_case("x-forwarded-for") {
                prior_xff.push(value.as_str());
                continue;
            }
            // Other forwarding headers of a trusted proxy in front are
            // kept as sent.
        }
        f(name, value);
    }
    add_forwarding(f, head, upgrade, upstream, client, &prior_xff);
    for (name, value) in identity.iter().flat_map(|i| &i.headers) {
        f(name, value);
    }
}

/// `X-Forwarded-For` (appended to a trusted chain), `-Proto`, `-Host` and
/// `Forwarded`, unless a trusted proxy in front already sent them. The
/// values are written into one reused string.
fn add_forwarding(
    f: &mut dyn FnMut(&str, &str),
    head: &RequestHead,
    upgrade: &Upgrade,
    upstream: &UpstreamConfig,
    client: ClientInfo,
    prior_xff: &[&str],
) {
    // Written once per connection (`ClientInfo`), not per request.
    let ip = client.ip_text();
    let proto = if client.tls { "https" } else { "http" };
    let mut value = String::with_capacity(96);
    for prior in prior_xff {
        value.push_str(prior);
        value.push_str(", ");
    }
    value.push_str(ip);
    f("X-Forwarded-For", &value);
    let trusted = upstream.trust_forwarded_headers;
    if !(trusted && head.get("x-forwarded-proto").is_some()) {
        f("X-Forwarded-Proto", proto);
    }
    if !(trusted && head.get("x-forwarded-host").is_some()) {
        f("X-Forwarded-Host", &upgrade.host);
    }
    if !(trusted && head.get("forwarded").is_some()) {
        value.clear();
        match client.addr.is_ipv6() {
            true => {
                value.push_str("for=\"[");
                value.push_str(ip);
                value.push_str("]\";host=\"");
            }
            false => {
                value.push_str("for=");
                value.push_str(ip);
                value.push_str(";host=\"");
            }
        }
        value.extend(upgrade.host.chars().filter(|c| !matches!(c, '"' | '\\')));
        value.push_str("\";proto=");
        value.push_str(proto);
        f("Forwarded", &value);
    }
}

/// The 101 for the client, carrying the upstream's choices (sub-protocol,
/// permessage-deflate) and its end-to-end headers (e.g. Set-Cookie).
pub fn switching_protocols(
    accept: &str,
    (protocol, deflate): (Option<&str>, Option<&Params>),
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
    if let Some(d) = deflate {
        let _ = write!(out, "Sec-WebSocket-Extensions: {d}\r\n");
    }
    for (name, value) in headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests;
