//! Target `framing`: bytes from a client → `RequestHead::parse` (bare LF
//! refused there) → `handshake::check_framing`, the Host and body-length
//! checks that run before anything is routed.
//!
//! Checks beyond "no panic" — a head that two HTTP parsers could read
//! differently never passes:
//! - an accepted head has CRLF line endings only (no bare LF, no lone CR);
//! - its names are tokens and its values hold no CR, LF or NUL;
//! - it has exactly one Host, and the host returned is that value, valid
//!   by `valid_host`, free of anything a URL parser would split on
//!   (whitespace, `/ ? # @ , \ %`), with a port of digits that fits u16;
//! - at most one `Content-Length`, all digits, and never beside
//!   `Transfer-Encoding`;
//! - a refusal is a 400 with a label.

use tidegate::handshake::{check_framing, field, valid_host, RequestHead};
use tidegate::route::host_without_port;

pub fn run(data: &[u8]) {
    let Ok(Some((head, len))) = RequestHead::parse(data) else {
        return;
    };
    let raw = &data[..len];
    for (i, &b) in raw.iter().enumerate() {
        match b {
            b'\n' => assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at {i}"),
            b'\r' => assert_eq!(raw.get(i + 1), Some(&b'\n'), "lone CR at {i}"),
            _ => {}
        }
    }
    for (name, value) in &head.headers {
        assert!(field::is_token(name), "header name {name:?}");
        assert!(
            !value.contains(['\r', '\n', '\0']),
            "header value {value:?}"
        );
    }
    match check_framing(&head) {
        Ok(host) => check_accepted(&head, &host),
        Err(rejection) => {
            assert_eq!(rejection.status(), 400, "{rejection:?}");
            assert!(!rejection.label().is_empty());
        }
    }
}

fn check_accepted(head: &RequestHead, host: &str) {
    let hosts: Vec<&str> = head.all("host").collect();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0].trim(), host);
    assert!(valid_host(host), "{host:?}");
    assert!(
        !host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b"/?#@,\\%".contains(&b)),
        "host {host:?}"
    );
    let bare = host_without_port(host);
    assert!(!bare.is_empty(), "{host:?}");
    // The port, if any, is what follows the last ':' outside brackets.
    let after_name = host.rsplit_once(']').map_or(host, |(_, a)| a);
    let port = if host.starts_with('[') {
        after_name.strip_prefix(':')
    } else {
        after_name.split_once(':').map(|(_, p)| p)
    };
    if let Some(port) = port {
        assert!(port.parse::<u16>().is_ok(), "port {port:?} in {host:?}");
    }
    let lengths: Vec<&str> = head.all("content-length").collect();
    assert!(lengths.len() <= 1, "{lengths:?}");
    if let Some(l) = lengths.first() {
        assert!(l.trim().bytes().all(|b| b.is_ascii_digit()) && !l.trim().is_empty());
        assert!(head.get("transfer-encoding").is_none());
    }
}
