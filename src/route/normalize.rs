//! The request path as routing and the application see it: one normal
//! form, computed before the route is chosen and forwarded as it is, so
//! the prefix a route matched is the prefix the application gets.
//!
//! Without this, `/public/../admin` or `/public/%2e%2e/admin` matches an
//! unauthenticated `/public` route and an application that normalises the
//! path itself serves `/admin` to a client that skipped `/admin`'s auth.
//!
//! The steps, in order (docs/security.md, "Paths"):
//! 1. percent-encoded unreserved characters (RFC 3986 §2.3) are decoded;
//!    every other escape is kept with its hex upper-cased; a malformed
//!    escape or an encoded NUL is refused;
//! 2. `%2F` follows the configured [`EncodedSlash`] policy;
//! 3. runs of `/` are merged when `merge_slashes` is on;
//! 4. `.` and `..` segments are removed (RFC 3986 §5.2.4); `..` never
//!    climbs above the root.
//!
//! Control characters, bytes above 0x7E and `\` are refused: some
//! applications treat `\` as `/`, and there is no meaning to route by.

/// What a client-sent `%2F` (an encoded `/`) becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodedSlash {
    /// 400: the safe default, since an application that decodes it before
    /// its own normalisation would see segments the gateway did not.
    #[default]
    Reject,
    /// Kept as `%2F` inside its segment (not a separator for routing).
    Keep,
    /// Decoded to `/`, a separator like any other.
    Decode,
}

impl EncodedSlash {
    pub fn parse(text: &str) -> Result<EncodedSlash, String> {
        match text.trim() {
            "reject" => Ok(EncodedSlash::Reject),
            "keep" => Ok(EncodedSlash::Keep),
            "decode" => Ok(EncodedSlash::Decode),
            other => Err(format!(
                "{other:?} is not one of \"reject\", \"keep\", \"decode\""
            )),
        }
    }
}

/// How request paths are normalised (`[paths]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathPolicy {
    pub encoded_slash: EncodedSlash,
    /// `//a///b` → `/a/b`.
    pub merge_slashes: bool,
}

impl Default for PathPolicy {
    fn default() -> Self {
        Self {
            encoded_slash: EncodedSlash::Reject,
            merge_slashes: true,
        }
    }
}

/// Why a path has no normal form; the request gets 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path does not start with '/'")]
    NotAbsolute,
    #[error("malformed percent-escape")]
    BadEscape,
    #[error("encoded NUL")]
    EncodedNul,
    #[error("encoded '/' refused by policy")]
    EncodedSlash,
    #[error("control, non-ASCII or backslash byte")]
    BadByte,
}

/// The normal form of `path` (no query) under `policy`.
pub fn normalize(path: &str, policy: PathPolicy) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode(path, policy.encoded_slash)?;
    Ok(remove_dots(&decoded, policy.merge_slashes))
}

/// Step 1 and 2: escapes decoded or canonicalised.
fn decode(path: &str, slash: EncodedSlash) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            if b.is_ascii_control() || b > 0x7e || b == b'\\' {
                return Err(PathError::BadByte);
            }
            out.push(b as char);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
        let value = hex_value(hex[0])
            .zip(hex_value(hex[1]))
            .map(|(h, l)| h << 4 | l)
            .ok_or(PathError::BadEscape)?;
        match value {
            0 => return Err(PathError::EncodedNul),
            b'/' => match slash {
                EncodedSlash::Reject => return Err(PathError::EncodedSlash),
                EncodedSlash::Keep => out.push_str("%2F"),
                EncodedSlash::Decode => out.push('/'),
            },
            v if is_unreserved(v) => out.push(v as char),
            v => {
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
        }
        i += 3;
    }
    Ok(out)
}

/// Step 3 and 4 on a decoded path that starts with `/`.
fn remove_dots(path: &str, merge_slashes: bool) -> String {
    let mut kept: Vec<&str> = Vec::new();
    // The last input segment decides whether the output ends in `/`:
    // `/a/b/` and `/a/b/..` both name a directory.
    let mut trailing_slash = false;
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.into_iter().enumerate() {
        let is_last = i == last;
        match segment {
            "." => trailing_slash = is_last,
            ".." => {
                kept.pop();
                trailing_slash = is_last;
            }
            "" if is_last => trailing_slash = true,
            "" if merge_slashes => {}
            s => {
                kept.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3: decoding these never changes what a URI means.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: PathPolicy = PathPolicy {
        encoded_slash: EncodedSlash::Keep,
        merge_slashes: true,
    };

    #[test]
    fn normal_forms() {
        let default = PathPolicy::default();
        let no_merge = PathPolicy {
            merge_slashes: false,
            ..default
        };
        let decode = PathPolicy {
            encoded_slash: EncodedSlash::Decode,
            ..default
        };
        let table: &[(&str, PathPolicy, &str)] = &[
            ("/", default, "/"),
            ("/chat", default, "/chat"),
            ("/chat/", default, "/chat/"),
            ("/public/../admin", default, "/admin"),
            ("/public/%2e%2e/admin", default, "/admin"),
            ("/public/%2E%2E/admin", default, "/admin"),
            ("/public/.%2e/admin", default, "/admin"),
            ("/public/./x", default, "/public/x"),
            ("/a/b/..", default, "/a/"),
            ("/a/b/.", default, "/a/b/"),
            ("/..", default, "/"),
            ("/../../etc/passwd", default, "/etc/passwd"),
            ("/a/../../b", default, "/b"),
            ("//a///b", default, "/a/b"),
            ("//a///b", no_merge, "//a///b"),
            ("/a//..//b", no_merge, "/a//b"),
            ("/%61%7e%2D", default, "/a~-"),
            ("/a%20b", default, "/a%20b"),
            ("/a%3fb", default, "/a%3Fb"),
            ("/p/..%2fadmin", KEEP, "/p/..%2Fadmin"),
            ("/p/..%2Fadmin", decode, "/admin"),
            ("/p/%2F/x", decode, "/p/x"),
            ("/..;/admin", default, "/..;/admin"),
        ];
        for (input, policy, want) in table {
            assert_eq!(
                normalize(input, *policy).as_deref(),
                Ok(*want),
                "{input} under {policy:?}"
            );
        }
    }

    #[test]
    fn refusals() {
        let default = PathPolicy::default();
        let table: &[(&str, PathError)] = &[
            ("chat", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/a%00", PathError::EncodedNul),
            ("/a\\..\\admin", PathError::BadByte),
            ("/a\u{7f}", PathError::BadByte),
            ("/é", PathError::BadByte),
        ];
        for (input, want) in table {
            assert_eq!(normalize(input, default), Err(*want), "{input}");
        }
    }

    #[test]
    fn normal_form_is_a_fixed_point() {
        for input in ["/public/%2e%2e/admin", "//x/./y/../z/", "/a%41%2F"] {
            let once = normalize(input, KEEP).unwrap();
            assert_eq!(normalize(&once, KEEP).unwrap(), once, "{input}");
        }
    }
}
