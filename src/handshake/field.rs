//! RFC 9110 grammar for what an upstream or a mux application may put into
//! a client's response: header names are `token`s (§5.6.2), values are
//! `field-value`s (§5.5) — visible ASCII, obs-text, spaces and tabs inside,
//! never CR, LF or NUL. Anything else would let an application write its
//! own header lines (`\r\nSet-Cookie: …`) into the 101 or a refusal, so it
//! is refused with a 502 (`upstream_invalid_header`) instead.

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header name (or a sub-protocol, also a token).
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A header value: VCHAR, obs-text, SP and HTAB; no leading or trailing
/// whitespace (it would be trimmed by the client anyway, and a value that
/// is only whitespace is where folding tricks live).
pub fn is_field_value(s: &str) -> bool {
    let b = s.as_bytes();
    let inner_ok = b
        .iter()
        .all(|&c| c == b' ' || c == b'\t' || (0x21..=0x7e).contains(&c) || c >= 0x80);
    let edges_ok =
        !matches!(b.first(), Some(b' ' | b'\t')) && !matches!(b.last(), Some(b' ' | b'\t'));
    inner_ok && edges_ok
}

/// Every (name, value) pair is a valid header field.
pub fn headers_ok(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .all(|(n, v)| is_token(n) && is_field_value(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_values() {
        assert!(is_token("X-App-Id"));
        assert!(is_token("chat.v2"));
        for bad in ["", "X App", "X:A", "X\r\nSet-Cookie", "Ä"] {
            assert!(!is_token(bad), "{bad:?}");
        }
        assert!(is_field_value("a=b; c=\"d e\""));
        assert!(is_field_value(""));
        assert!(is_field_value("caf\u{e9}"));
        for bad in [
            "x\r\nSet-Cookie: a=b",
            "x\ny",
            "x\ry",
            "x\0y",
            " x",
            "x\t",
            "\u{7f}",
        ] {
            assert!(!is_field_value(bad), "{bad:?}");
        }
    }
}
