//! What reaches the application: every place a policy may carry a
//! credential is cleared, whichever one the credential was found in;
//! client-sent identity headers never pass, on any route; the path is the
//! normalised one.

use super::*;
use crate::auth::source::TokenSource;
use crate::config::{Config, RawConfig};
use std::sync::Arc;

fn config() -> Config {
    let raw: RawConfig = toml::from_str(
        r#"
[[listeners]]
listen = "127.0.0.1:0"
[[upstreams]]
name = "app"
endpoints = ["ws://127.0.0.1:1/base"]
[[auth_policies]]
name = "keys"
identity_headers = { sub = "X-Auth-Subject" }
api_keys = { keys = [{ name = "ops", key = "k-0123456789abcdef" }] }
[[routes]]
name = "open"
path = "/open"
upstream = "app"
strip_prefix = true
[[routes]]
name = "locked"
path = "/locked"
upstream = "app"
auth = "keys"
"#,
    )
    .expect("test config parses");
    Config::from_raw(raw).expect("test config is valid")
}

fn head(target: &str, headers: &[(&str, &str)]) -> RequestHead {
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

fn upgrade(config: &Config, route: &str, path: &str) -> Upgrade {
    let route = config
        .routes
        .iter()
        .find(|r| r.name == route)
        .expect("route exists");
    Upgrade {
        route: Arc::clone(route),
        key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
        protocols: Vec::new(),
        host: "gw.example".into(),
        path: path.into(),
    }
}

fn client() -> ClientInfo {
    ClientInfo::new("192.0.2.1:5000".parse().expect("literal address"), false)
}

fn header<'a>(req: &'a UpstreamRequest, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn credential_is_removed_from_every_source_not_only_the_one_found() {
    let config = config();
    let up = upgrade(&config, "locked", "/locked");
    let sources: Vec<TokenSource> = ["bearer", "query:access_token", "cookie:session"]
        .iter()
        .map(|s| TokenSource::parse(s).expect("valid source"))
        .collect();
    // Found in the bearer header; the query and the cookie carry copies.
    let identity = Identity::new("ok", &["x-auth-subject".into()], &sources, false);
    let h = head(
        "/locked?access_token=tok&a=1&access_token=tok2",
        &[
            ("Authorization", "Bearer tok"),
            ("Cookie", "session=tok; theme=dark"),
        ],
    );
    let req = UpstreamRequest::new(&h, &up, &up.route.upstream, client(), Some(&identity));
    assert_eq!(req.query, "a=1");
    assert_eq!(header(&req, "authorization"), None);
    assert_eq!(header(&req, "cookie"), Some("theme=dark"));
    let wire =
        String::from_utf8(req.to_http(&up, &up.route.upstream, &up.route.upstream.endpoints[0]))
            .expect("ASCII request");
    assert!(!wire.contains("tok"), "{wire}");
}

#[test]
fn identity_headers_are_dropped_on_routes_without_auth() {
    let config = config();
    let up = upgrade(&config, "open", "/open/x");
    let h = head("/open/x", &[("X-Auth-Subject", "root"), ("X-Other", "1")]);
    let req = UpstreamRequest::new(&h, &up, &up.route.upstream, client(), None);
    assert_eq!(header(&req, "x-auth-subject"), None);
    assert_eq!(header(&req, "x-other"), Some("1"));
}

#[test]
fn the_normalised_path_is_forwarded_under_the_base_path() {
    let config = config();
    // The route phase normalised `/open/a/../../etc` to `/etc`, which does
    // not match `/open`; what a matching request carries is already clean.
    let up = upgrade(&config, "open", "/open/etc");
    let h = head("/open/a/../etc?q=1", &[]);
    let req = UpstreamRequest::new(&h, &up, &up.route.upstream, client(), None);
    assert_eq!(req.path, "/etc");
    let wire =
        String::from_utf8(req.to_http(&up, &up.route.upstream, &up.route.upstream.endpoints[0]))
            .expect("ASCII request");
    assert!(wire.starts_with("GET /base/etc?q=1 HTTP/1.1\r\n"), "{wire}");
}
