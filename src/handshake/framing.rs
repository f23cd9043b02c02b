//! Request-smuggling and Host checks of the route phase: a head that two
//! HTTP parsers could read differently is refused before anything is
//! routed or forwarded (RFC 9112 §6.3, RFC 9110 §7.2, RFC 3986 §3.2.2).
//! Bare-LF line endings are refused when the head is parsed
//! (`request.rs`), since they too are read differently by different
//! parsers.

use super::{Rejection, RequestHead};
use std::net::Ipv6Addr;

/// One valid Host, and a body length no parser can disagree on.
pub fn check(head: &RequestHead) -> Result<String, Rejection> {
    check_body_length(head)?;
    let mut hosts = head.all("host");
    let host = match hosts.next().map(str::trim) {
        Some(h) if !h.is_empty() => h,
        _ => return Err(Rejection::MissingHost),
    };
    if hosts.next().is_some() {
        return Err(Rejection::BadHost);
    }
    if !valid_host(host) {
        return Err(Rejection::BadHost);
    }
    Ok(host.to_string())
}

/// `Content-Length` at most once, one decimal value, and never together
/// with `Transfer-Encoding`.
fn check_body_length(head: &RequestHead) -> Result<(), Rejection> {
    let mut lengths = head.all("content-length");
    if let Some(first) = lengths.next() {
        let digits = first.trim();
        let valid = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        if !valid || lengths.next().is_some() || head.get("transfer-encoding").is_some() {
            return Err(Rejection::Framing);
        }
    }
    Ok(())
}

/// RFC 3986 `host [ ":" port ]` with host an IP literal, IPv4 address or
/// DNS-style reg-name (letters, digits, `-`, `_`, `.`).
pub fn valid_host(value: &str) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((literal, after)) = rest.split_once(']') else {
            return false;
        };
        if literal.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match value.split_once(':') {
            Some((h, port)) => (h, Some(port)),
            None => (value, None),
        }
    };
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::valid_host;

    #[test]
    fn hosts() {
        for ok in [
            "example.com",
            "example.com:443",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:9090",
            "a_b-c.d",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            "exa mple.com",
            "example.com:",
            "example.com:99999",
            "example.com:80:80",
            "a@b",
            "[::1",
            "[zz]:1",
            "[::1]x",
            "ex/ample",
            "example.com\u{0}",
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }
}
