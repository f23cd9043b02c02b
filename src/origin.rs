//! Origin allowlist: the defence against cross-site WebSocket hijacking.
//!
//! Browsers always send `Origin` on a WebSocket handshake and page scripts
//! cannot forge it, so checking it stops a page on another site from riding
//! the user's cookies into the application. Non-browser clients usually send
//! none; a route decides whether that is allowed.

/// Why an Origin was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginDenied {
    /// The route requires an Origin and the request had none.
    Missing,
    /// An Origin was sent and is not on the list.
    NotAllowed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// `scheme://host[:port]`, lowercase.
    Exact(String),
    /// `scheme://*.suffix[:port]`: scheme, the `.suffix` and the port part
    /// (`""` or `:8443`).
    Wildcard {
        scheme: String,
        suffix: String,
        port: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Empty: any Origin is accepted.
    allowed: Vec<Pattern>,
    require: bool,
}

impl OriginPolicy {
    pub fn parse(list: &[String], require: bool) -> Result<OriginPolicy, String> {
        let mut allowed = Vec::with_capacity(list.len());
        for entry in list {
            allowed.push(parse_pattern(entry)?);
        }
        Ok(OriginPolicy { allowed, require })
    }

    /// Check the request's Origin header value (if any).
    pub fn check(&self, origin: Option<&str>) -> Result<(), OriginDenied> {
        let Some(origin) = origin.map(str::trim).filter(|o| !o.is_empty()) else {
            return if self.require {
                Err(OriginDenied::Missing)
            } else {
                Ok(())
            };
        };
        if self.allowed.is_empty() {
            return Ok(());
        }
        let origin = origin.to_ascii_lowercase();
        let ok = self.allowed.iter().any(|p| match p {
            Pattern::Exact(e) => *e == origin,
            Pattern::Wildcard {
                scheme,
                suffix,
                port,
            } => split_origin(&origin).is_some_and(|(s, host, p)| {
                s == scheme
                    && p == port
                    && host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
            }),
        });
        if ok {
            Ok(())
        } else {
            Err(OriginDenied::NotAllowed)
        }
    }
}

/// `scheme://host[:port]` → (scheme, host, ":port" or "").
fn split_origin(origin: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = origin.split_once("://")?;
    if rest.contains('/') {
        return None;
    }
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest.ends_with(']') => (&rest[..i], &rest[i..]),
        _ => (rest, ""),
    };
    Some((scheme, host, port))
}

fn parse_pattern(entry: &str) -> Result<Pattern, String> {
    let lower = entry.trim().trim_end_matches('/').to_ascii_lowercase();
    let bad = || {
        format!("{entry:?} is not an origin like https://app.example.com or https://*.example.com")
    };
    let (scheme, host, port) = split_origin(&lower).ok_or_else(bad)?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(bad());
    }
    if !port.is_empty() && (port.len() < 2 || !port[1..].bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad());
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return Err(bad());
        }
        return Ok(Pattern::Wildcard {
            scheme: scheme.into(),
            suffix: format!(".{suffix}"),
            port: port.into(),
        });
    }
    if host.is_empty() || host.contains('*') {
        return Err(bad());
    }
    Ok(Pattern::Exact(lower))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &[&str], require: bool) -> OriginPolicy {
        OriginPolicy::parse(
            &list.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            require,
        )
        .unwrap()
    }

    #[test]
    fn exact_and_wildcard() {
        let p = policy(
            &[
                "https://app.example.com",
                "https://*.example.org",
                "http://localhost:3000",
            ],
            false,
        );
        assert_eq!(p.check(Some("https://app.example.com")), Ok(()));
        assert_eq!(p.check(Some("HTTPS://APP.EXAMPLE.COM")), Ok(()));
        assert_eq!(p.check(Some("https://a.example.org")), Ok(()));
        assert_eq!(p.check(Some("https://a.b.example.org")), Ok(()));
        assert_eq!(p.check(Some("http://localhost:3000")), Ok(()));
        assert_eq!(
            p.check(Some("https://example.org")),
            Err(OriginDenied::NotAllowed)
        );
        assert_eq!(
            p.check(Some("http://a.example.org")),
            Err(OriginDenied::NotAllowed)
        );
        assert_eq!(
            p.check(Some("https://a.example.org:8443")),
            Err(OriginDenied::NotAllowed)
        );
        assert_eq!(
            p.check(Some("https://evilexample.org")),
            Err(OriginDenied::NotAllowed)
        );
        assert_eq!(
            p.check(Some("https://app.example.com.evil.net")),
            Err(OriginDenied::NotAllowed)
        );
        assert_eq!(p.check(Some("null")), Err(OriginDenied::NotAllowed));
        assert_eq!(p.check(None), Ok(()));
    }

    #[test]
    fn require_origin() {
        let p = policy(&["https://app.example.com"], true);
        assert_eq!(p.check(None), Err(OriginDenied::Missing));
        assert_eq!(p.check(Some("")), Err(OriginDenied::Missing));
        let any = policy(&[], true);
        assert_eq!(any.check(Some("https://whatever.test")), Ok(()));
        assert_eq!(any.check(None), Err(OriginDenied::Missing));
    }

    #[test]
    fn bad_patterns() {
        for bad in [
            "app.example.com",
            "https://",
            "https://*.",
            "https://a.*.com",
            "https://x:port",
            "https://a/b",
        ] {
            assert!(
                OriginPolicy::parse(&[bad.to_string()], false).is_err(),
                "{bad}"
            );
        }
    }
}
