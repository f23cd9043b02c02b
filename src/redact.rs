//! Secrets kept out of what the gateway prints: a URL's userinfo and query
//! (a JWKS or forward-auth URL may carry `user:pass@` or `?api_key=`) are
//! replaced before the URL reaches `check-config`, `/config`, a log line
//! or a metric label.

/// What a removed secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// `url` with its userinfo and query replaced by [`REDACTED`]. A URL
/// with neither is returned exactly as written (it is a metric label);
/// a string that is not a URL is returned whole only when it has no `@`
/// or `?`.
pub fn url(text: &str) -> String {
    if !text.contains(['@', '?', '#']) {
        return text.into();
    }
    let Ok(mut parsed) = url::Url::parse(text) else {
        return REDACTED.into();
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Setting userinfo only fails for URLs that cannot have one.
        let _ = parsed.set_username(REDACTED);
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        parsed.set_query(Some(REDACTED));
    }
    parsed.set_fragment(None);
    // The URL crate percent-encodes `<` and `>`; show the marker as it is.
    parsed.to_string().replace("%3Credacted%3E", REDACTED)
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn userinfo_and_query_are_removed() {
        let table = [
            (
                "https://u:p@idp.example/jwks?key=s3cret",
                "https://<redacted>@idp.example/jwks?<redacted>",
            ),
            ("http://auth:8080/check", "http://auth:8080/check"),
            ("ws://app:1/base", "ws://app:1/base"),
            ("ws://127.0.0.1:9", "ws://127.0.0.1:9"),
            ("ws://token@app:1/", "ws://<redacted>@app:1/"),
            ("not a url?secret", "<redacted>"),
            ("plain", "plain"),
        ];
        for (input, want) in table {
            assert_eq!(url(input), want, "{input}");
        }
    }
}
