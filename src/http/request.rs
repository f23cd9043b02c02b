//! The request head sent upstream, rebuilt from the parsed one — never
//! copied: the method, the endpoint's base path + the route's path + the
//! query, Host, the end-to-end and forwarding headers the route decided
//! on (`UpstreamRequest`), the upstream's `add_headers`, and the body's
//! framing as the gateway re-frames it. Serialised straight into the
//! bytes that go on the wire, in one buffer.

use super::body::Framing;
use super::HttpError;
use crate::config::{EndpointConfig, UpstreamConfig};
use crate::upstream::UpstreamRequest;
use std::fmt::Write;

/// What the head is built from.
pub struct Parts<'a> {
    pub method: &'a str,
    pub request: &'a UpstreamRequest,
    /// The client's Host (sent upstream with `preserve_host`).
    pub host: &'a str,
    pub upstream: &'a UpstreamConfig,
    pub endpoint: &'a EndpointConfig,
    pub framing: Framing,
}

/// The head's bytes. Every name is a token and no value holds a control
/// character (a CR or LF would split the head: response splitting towards
/// the application), whatever the client or the configuration supplied.
pub fn head(p: &Parts<'_>) -> Result<Vec<u8>, HttpError> {
    if !is_token(p.method) {
        return Err(HttpError::Malformed);
    }
    let mut out = String::with_capacity(256 + p.request.headers.len() * 48);
    let _ = write!(
        out,
        "{} {}{}",
        p.method, p.endpoint.base_path, p.request.path
    );
    if !p.request.query.is_empty() {
        out.push('?');
        out.push_str(&p.request.query);
    }
    if !target_ok(&out, p.method) {
        return Err(HttpError::Malformed);
    }
    let host = match p.upstream.preserve_host {
        true => p.host,
        false => p.endpoint.authority.as_str(),
    };
    out.push_str(" HTTP/1.1\r\n");
    field(&mut out, "host", host)?;
    for (name, value) in p.request.headers.iter().chain(&p.upstream.add_headers) {
        // The gateway answers expectations itself.
        if !name.eq_ignore_ascii_case("expect") {
            field(&mut out, name, value)?;
        }
    }
    match p.framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.push_str("transfer-encoding: chunked\r\n"),
    }
    out.push_str("\r\n");
    Ok(out.into_bytes())
}

/// The request line so far is `METHOD target`: one space, then a target
/// without whitespace or control characters.
fn target_ok(line: &str, method: &str) -> bool {
    line[method.len() + 1..]
        .bytes()
        .all(|b| b > b' ' && b != 0x7f)
}

fn field(out: &mut String, name: &str, value: &str) -> Result<(), HttpError> {
    if !is_token(name) || !is_value(value) {
        return Err(HttpError::Malformed);
    }
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\n");
    Ok(())
}

/// RFC 9110 §5.6.2 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 9110 §5.5 field value: visible characters, spaces, tabs, obs-text.
fn is_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_that_would_split_the_head_are_refused() {
        assert!(is_token("x-forwarded-for"));
        assert!(!is_token("x forwarded"));
        assert!(!is_token("x:y"));
        assert!(!is_token(""));
        assert!(is_value("a b\tc é"));
        assert!(!is_value("a\r\nx-evil: 1"));
        assert!(!is_value("a\0"));
        assert!(target_ok("GET /a?b=c", "GET"));
        assert!(!target_ok("GET /a b", "GET"));
    }
}
