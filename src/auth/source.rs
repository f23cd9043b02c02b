//! Where a credential is looked for: the configured sources, tried in
//! order, over the request head. Browsers cannot set `Authorization` on a
//! WebSocket, hence cookies, query parameters and the sub-protocol trick
//! (`Sec-WebSocket-Protocol: bearer.<token>, chat`).

use crate::handshake::RequestHead;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The whole value of a named header.
    Header(String),
    /// A named cookie.
    Cookie(String),
    /// A query parameter (always removed before the request goes upstream).
    Query(String),
    /// An offered sub-protocol starting with this prefix (always removed
    /// from the list negotiated with the upstream).
    Protocol(String),
}

impl TokenSource {
    /// Parse `bearer`, `header:NAME`, `cookie:NAME`, `query:NAME`,
    /// `protocol:PREFIX`.
    pub fn parse(text: &str) -> Result<TokenSource, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("bearer") {
            return Ok(TokenSource::Bearer);
        }
        let Some((kind, arg)) = text.split_once(':') else {
            return Err(format!("{text:?}: expected bearer or KIND:NAME"));
        };
        let arg = arg.trim();
        if arg.is_empty() || arg.bytes().any(|b| b.is_ascii_whitespace() || b == b';') {
            return Err(format!("{text:?}: missing or invalid name"));
        }
        match kind.trim() {
            "header" => Ok(TokenSource::Header(arg.to_ascii_lowercase())),
            "cookie" => Ok(TokenSource::Cookie(arg.to_string())),
            "query" => Ok(TokenSource::Query(arg.to_string())),
            "protocol" if crate::handshake::is_token(arg) => {
                Ok(TokenSource::Protocol(arg.to_string()))
            }
            other => Err(format!(
                "{other:?}: not one of bearer, header, cookie, query, protocol"
            )),
        }
    }

    /// The credential, if this source carries one.
    pub fn find(&self, head: &RequestHead) -> Option<String> {
        let token = match self {
            TokenSource::Bearer => head.all("authorization").find_map(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_string())
            }),
            TokenSource::Header(name) => head.get(name).map(|v| v.trim().to_string()),
            TokenSource::Cookie(name) => {
                head.all("cookie")
                    .flat_map(|v| v.split(';'))
                    .find_map(|pair| {
                        let (n, v) = pair.trim().split_once('=')?;
                        (n.trim() == name).then(|| v.trim().trim_matches('"').to_string())
                    })
            }
            TokenSource::Query(name) => head.query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.into_owned())
            }),
            TokenSource::Protocol(prefix) => head
                .all("sec-websocket-protocol")
                .flat_map(|v| v.split(','))
                .find_map(|p| p.trim().strip_prefix(prefix.as_str()).map(str::to_string)),
        };
        token.filter(|t| !t.is_empty())
    }
}

/// The first source that carries a credential.
pub fn find<'a>(
    head: &RequestHead,
    sources: &'a [TokenSource],
) -> Option<(String, &'a TokenSource)> {
    sources
        .iter()
        .find_map(|s| s.find(head).map(|token| (token, s)))
}

/// `query` without the parameter `name` (all occurrences).
pub fn strip_query(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let raw = pair.split('=').next().unwrap_or("");
            let decoded: String = url::form_urlencoded::parse(raw.as_bytes())
                .map(|(n, _)| n.into_owned())
                .next()
                .unwrap_or_default();
            !pair.is_empty() && decoded != name
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A `Cookie` header value without the cookie `name`; `None` when nothing
/// is left.
pub fn strip_cookie(value: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split('=').next().map(str::trim) != Some(name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)], target: &str) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            target: target.into(),
            version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
        }
    }

    #[test]
    fn sources_in_order() {
        let h = head(
            &[
                ("Cookie", "a=1; session=tok-c; b=2"),
                ("Sec-WebSocket-Protocol", "bearer.tok-p, chat"),
                ("Authorization", "Basic xyz"),
            ],
            "/x?access_token=tok%2Dq&y=1",
        );
        let sources: Vec<_> = ["bearer", "query:access_token", "cookie:session"]
            .iter()
            .map(|s| TokenSource::parse(s).unwrap())
            .collect();
        assert_eq!(find(&h, &sources).unwrap().0, "tok-q");
        let p = TokenSource::parse("protocol:bearer.").unwrap();
        assert_eq!(p.find(&h).as_deref(), Some("tok-p"));
        let c = TokenSource::parse("cookie:session").unwrap();
        assert_eq!(c.find(&h).as_deref(), Some("tok-c"));
        assert_eq!(TokenSource::Bearer.find(&h), None);
    }

    #[test]
    fn stripping() {
        assert_eq!(
            strip_query("a=1&access_token=x&b=2", "access_token"),
            "a=1&b=2"
        );
        assert_eq!(strip_query("access_token=x", "access_token"), "");
        assert_eq!(
            strip_cookie("a=1; session=x; b=2", "session").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip_cookie("session=x", "session"), None);
    }

    #[test]
    fn bad_sources() {
        assert!(TokenSource::parse("header").is_err());
        assert!(TokenSource::parse("form:x").is_err());
        assert!(TokenSource::parse("protocol:a b").is_err());
    }
}
