//! The request head sent upstream, rebuilt from the parsed one — never
//! copied: the method, the endpoint's base path + the route's path + the
//! query, Host, the end-to-end and forwarding headers the route decided
//! on (those `UpstreamRequest` carries, serialised once per request by
//! [`Outgoing`]), the upstream's `add_headers`, and the body's framing as
//! the gateway re-frames it. Serialised straight into the bytes that go
//! on the wire, in one buffer.

use super::body::Framing;
use super::HttpError;
use crate::auth::Identity;
use crate::config::{EndpointConfig, UpstreamConfig};
use crate::handshake::{RequestHead, Upgrade};
use crate::upstream::{self, ClientInfo};
use std::io::Write;

/// What a request sends upstream whichever endpoint takes it: the path
/// and query, and the forwarded header fields (as `UpstreamRequest` would
/// carry them) serialised once into one buffer — no string per header,
/// and nothing more kept while a response streams.
pub struct Outgoing {
    /// After `strip_prefix`; always starts with `/` (the balancer keys
    /// on it too).
    pub path: String,
    /// Without the credential parameter; empty when there is none.
    pub query: String,
    /// `name: value\r\n` lines.
    fields: Vec<u8>,
    /// A name that is not a token or a value that would split the head:
    /// the request is refused when its head is built.
    malformed: bool,
}

impl Outgoing {
    pub fn new(
        head: &RequestHead,
        target: &Upgrade,
        upstream: &UpstreamConfig,
        client: ClientInfo,
        identity: Option<&Identity>,
    ) -> Outgoing {
        let mut fields = Vec::with_capacity(256 + head.headers.len() * 32);
        let mut malformed = false;
        let mut write = |name: &str, value: &str| {
            // The gateway answers expectations itself.
            if !name.eq_ignore_ascii_case("expect") {
                malformed |= field(&mut fields, name, value).is_err();
            }
        };
        upstream::each_forwarded_header(head, target, upstream, client, identity, &mut write);
        Outgoing {
            path: upstream::rewritten_path(target),
            query: upstream::query_without_credential(head, identity),
            fields,
            malformed,
        }
    }
}

/// What the head is built from.
pub struct Parts<'a> {
    pub method: &'a str,
    pub request: &'a Outgoing,
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
    let r = p.request;
    if !is_token(p.method) || r.malformed {
        return Err(HttpError::Malformed);
    }
    let target = p.endpoint.base_path.len() + r.path.len() + r.query.len() + 1;
    let mut out = Vec::with_capacity(128 + target + r.fields.len());
    out.extend_from_slice(p.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(p.endpoint.base_path.as_bytes());
    out.extend_from_slice(r.path.as_bytes());
    if !r.query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(r.query.as_bytes());
    }
    if !target_ok(&out[p.method.len() + 1..]) {
        return Err(HttpError::Malformed);
    }
    let host = match p.upstream.preserve_host {
        true => p.host,
        false => p.endpoint.authority.as_str(),
    };
    out.extend_from_slice(b" HTTP/1.1\r\n");
    field(&mut out, "host", host)?;
    out.extend_from_slice(&r.fields);
    for (name, value) in &p.upstream.add_headers {
        if !name.eq_ignore_ascii_case("expect") {
            field(&mut out, name, value)?;
        }
    }
    match p.framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// A request target: no whitespace or control characters.
fn target_ok(target: &[u8]) -> bool {
    target.iter().all(|&b| b > b' ' && b != 0x7f)
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) -> Result<(), HttpError> {
    if !is_token(name) || !is_value(value) {
        return Err(HttpError::Malformed);
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// RFC 9110 §5.6.2 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| TCHAR[usize::from(b)])
}

/// `tchar` as a table: every forwarded header name is checked, so one
/// lookup per byte instead of a search of the punctuation list.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    t
};

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
        assert!(target_ok(b"/a?b=c"));
        assert!(!target_ok(b"/a b"));
    }

    #[test]
    fn the_token_table_is_rfc_9110_tchar() {
        for b in 0..=255u8 {
            let tchar = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(TCHAR[usize::from(b)], tchar, "byte {b}");
        }
    }
}
