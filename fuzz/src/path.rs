//! Target `path`: a request path → `route::normalize::normalize` under
//! every `[paths]` policy → the route's `strip_prefix` rewrite.
//!
//! Checks beyond "no panic" (the promises of src/route/normalize.rs):
//! - the normal form starts with `/`, has no `.` or `..` segment — not even
//!   after the application decodes its escapes once — and no byte that
//!   normalisation refuses; escapes are canonical (upper-case hex, never an
//!   unreserved character, `%2F` only under `encoded_slash = "keep"`);
//! - merged slashes leave no `//`;
//! - normalising is idempotent: the normal form is its own normal form;
//! - it equals an independent model: escapes decoded, slashes merged,
//!   then RFC 3986 §5.2.4 `remove_dot_segments` as the RFC words it (so
//!   `..` never climbs above the root);
//! - `strip_prefix` never escapes an endpoint's base path: the rewritten
//!   path, put behind a base path, is already normal and starts with it,
//!   and prefix + rest gives back the matched path.

use tidegate::route::normalize::{normalize, EncodedSlash, PathError, PathPolicy};
use tidegate::route::prefix_matches;
use tidegate::upstream::strip_route_prefix;

/// Route prefixes as `normalize_prefix` leaves them.
const PREFIXES: &[&str] = &[
    "/", "/public", "/api/v1", "/a", "/ws", "/%2F", "/a b", "/~x",
];

/// Input: byte 0: bits 0–1 `encoded_slash` (reject, keep, decode,
/// reject), bit 2 `merge_slashes`, bits 3–5 the route prefix; the rest:
/// the path as the head parser hands it over (UTF-8).
pub fn run(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let policy = PathPolicy {
        encoded_slash: match control & 3 {
            1 => EncodedSlash::Keep,
            2 => EncodedSlash::Decode,
            _ => EncodedSlash::Reject,
        },
        merge_slashes: control & 4 != 0,
    };
    let prefix = PREFIXES[(control >> 3) as usize % PREFIXES.len()];
    let out = match normalize(path, policy) {
        Ok(out) => out,
        Err(e) => return check_refusal(path, e),
    };
    check_form(&out, policy);
    assert_eq!(
        normalize(&out, policy).as_deref(),
        Ok(out.as_str()),
        "not idempotent: {path:?} → {out:?}"
    );
    // The same path through RFC 3986 §5.2.4 as the RFC writes it (an
    // output buffer, not a segment stack): `..` stops at the root there.
    assert_eq!(out, reference(path, policy), "{path:?}");
    check_strip(prefix, &out, policy);
}

/// What the normal form may contain.
fn check_form(out: &str, policy: PathPolicy) {
    assert!(out.starts_with('/'), "{out:?}");
    let bytes = out.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        assert!(
            !(b.is_ascii_control() || b > 0x7e || b == b'\\'),
            "byte {b:#x} in {out:?}"
        );
        if b != b'%' {
            continue;
        }
        let hex = &bytes[i + 1..i + 3];
        assert!(
            hex.iter()
                .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
            "escape {:?} in {out:?}",
            std::str::from_utf8(hex)
        );
        let value = u8::from_str_radix(std::str::from_utf8(hex).expect("hex is ASCII"), 16)
            .expect("checked hex digits");
        assert!(
            value != 0 && !(value.is_ascii_alphanumeric() || b"-._~".contains(&value)),
            "escape %{value:02X} left in {out:?}"
        );
        if value == b'/' {
            assert_eq!(policy.encoded_slash, EncodedSlash::Keep, "{out:?}");
        }
    }
    assert_no_dots(out);
    // What an application sees after decoding once (a kept `%2F` aside,
    // which stays inside its segment only if the application keeps it).
    assert_no_dots(&decode_once(out));
    if policy.merge_slashes {
        assert!(!out.contains("//"), "{out:?}");
    }
}

fn assert_no_dots(path: &str) {
    for segment in path[1..].split('/') {
        assert!(segment != "." && segment != "..", "dot segment in {path:?}");
    }
}

/// One round of percent-decoding, `%2F` left as it is.
fn decode_once(path: &str) -> String {
    let mut out = Vec::with_capacity(path.len());
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && &b[i + 1..i + 3] != b"2F" {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex is ASCII");
            out.push(u8::from_str_radix(hex, 16).expect("checked hex digits"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rewrite that sends the path behind an endpoint's base path.
fn check_strip(prefix: &str, out: &str, policy: PathPolicy) {
    if !prefix_matches(prefix, out) {
        return;
    }
    assert_eq!(strip_route_prefix(prefix, false, out), out);
    let rest = strip_route_prefix(prefix, true, out);
    assert!(
        rest.starts_with('/'),
        "{prefix:?} from {out:?} left {rest:?}"
    );
    assert_no_dots(&rest);
    if prefix != "/" {
        let back = if rest == "/" && out == prefix {
            prefix.to_string()
        } else {
            format!("{prefix}{rest}")
        };
        assert_eq!(back, out, "{prefix:?} + {rest:?}");
    }
    for base in ["", "/base", "/b/c"] {
        let sent = format!("{base}{rest}");
        assert_eq!(
            normalize(&sent, policy).as_deref(),
            Ok(sent.as_str()),
            "behind {base:?}: {rest:?} from {out:?} is not normal"
        );
        assert!(sent.starts_with(base));
    }
}

/// A refused path really has what the error names.
fn check_refusal(path: &str, e: PathError) {
    match e {
        PathError::NotAbsolute => assert!(!path.starts_with('/')),
        PathError::BadByte => assert!(path
            .bytes()
            .any(|b| b.is_ascii_control() || b > 0x7e || b == b'\\')),
        PathError::BadEscape | PathError::EncodedNul | PathError::EncodedSlash => {
            assert!(path.contains('%'), "{e} in {path:?}")
        }
    }
}

/// The model: decode (the normal form's own escapes are canonical, so
/// decoding `out`-style escapes again is a no-op), merge, remove dots.
fn reference(path: &str, policy: PathPolicy) -> String {
    let b = path.as_bytes();
    let mut decoded = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            decoded.push(b[i] as char);
            i += 1;
            continue;
        }
        let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("normalize accepted it");
        let v = u8::from_str_radix(hex, 16).expect("normalize accepted it");
        match v {
            b'/' if policy.encoded_slash == EncodedSlash::Decode => decoded.push('/'),
            v if v.is_ascii_alphanumeric() || b"-._~".contains(&v) => decoded.push(v as char),
            v => decoded.push_str(&format!("%{v:02X}")),
        }
        i += 3;
    }
    if policy.merge_slashes {
        while decoded.contains("//") {
            decoded = decoded.replace("//", "/");
        }
    }
    remove_dot_segments(&decoded)
}

/// RFC 3986 §5.2.4, step by step: rules A to E on an input buffer.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_string();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../").or(input.strip_prefix("./")) {
            input = rest.to_string(); // A
        } else if input.starts_with("/./") {
            input.replace_range(..3, "/"); // B
        } else if input == "/." {
            input = "/".into(); // B
        } else if input.starts_with("/../") || input == "/.." {
            let cut = if input == "/.." { 3 } else { 4 };
            input.replace_range(..cut, "/"); // C
            output.truncate(output.rfind('/').unwrap_or(0));
        } else if input == "." || input == ".." {
            input.clear(); // D
        } else {
            // E: the first segment, with its leading '/', moves over.
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |e| e + start);
            output.push_str(&input[..end]);
            input.replace_range(..end, "");
        }
    }
    if output.is_empty() {
        output.push('/');
    }
    output
}
