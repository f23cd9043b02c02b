use super::*;
use crate::config::{Config, RawConfig};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn routes(extra: &str) -> RouteTable {
    let toml = format!(
        r#"
[[listeners]]
listen = "127.0.0.1:0"
[[upstreams]]
name = "app"
endpoints = ["ws://127.0.0.1:1"]
[[routes]]
name = "any"
path = "/"
upstream = "app"
[[routes]]
name = "chat"
host = "chat.example.com"
path = "/chat"
upstream = "app"
origins = ["https://chat.example.com", "https://*.example.org"]
require_origin = true
subprotocols = ["v2", "v1"]
{extra}
"#
    );
    let raw: RawConfig = toml::from_str(&toml).unwrap();
    RouteTable::new(Config::from_raw(raw).unwrap().routes)
}

fn request(lines: &[&str]) -> RequestHead {
    let text = format!("{}\r\n\r\n", lines.join("\r\n"));
    RequestHead::parse(text.as_bytes()).unwrap().unwrap().0
}

fn upgrade(path: &str, host: &str, extra: &[&str]) -> RequestHead {
    let get = format!("GET {path} HTTP/1.1");
    let host = format!("Host: {host}");
    let key = format!("Sec-WebSocket-Key: {KEY}");
    let mut lines = vec![
        get.as_str(),
        host.as_str(),
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        key.as_str(),
        "Sec-WebSocket-Version: 13",
    ];
    lines.extend_from_slice(extra);
    request(&lines)
}

fn rejection(head: &RequestHead, table: &RouteTable) -> Rejection {
    validate(head, table).unwrap_err().rejection
}

#[test]
fn accept_key_matches_rfc_example() {
    assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn valid_upgrade_routes_and_keeps_key() {
    let t = routes("");
    let u = validate(&upgrade("/x?q=1", "a.test", &[]), &t).unwrap();
    assert_eq!(u.route.name, "any");
    assert_eq!(u.key, KEY);
    let u = validate(
        &upgrade(
            "/chat/room",
            "CHAT.example.com:443",
            &["Origin: https://chat.example.com"],
        ),
        &t,
    )
    .unwrap();
    assert_eq!(u.route.name, "chat");
}

#[test]
fn tokens_are_case_insensitive_inside_lists() {
    let t = routes("");
    let head = request(&[
        "GET / HTTP/1.1",
        "Host: a",
        "upgrade: WebSocket",
        "connection: keep-alive",
        "Connection: UPGRADE",
        &format!("sec-websocket-key: {KEY}"),
        "sec-websocket-version: 13",
    ]);
    assert!(validate(&head, &t).is_ok());
}

#[test]
fn each_rejection_has_its_status() {
    let t = routes("");
    let cases: Vec<(RequestHead, u16, &str)> = vec![
        (request(&["GET / HTTP/1.0", "Host: a"]), 400, "http_version"),
        (request(&["GET / HTTP/1.1"]), 400, "missing_host"),
        (
            request(&[
                "POST / HTTP/1.1",
                "Host: a",
                "Upgrade: websocket",
                "Connection: upgrade",
            ]),
            405,
            "method",
        ),
        (
            request(&["GET / HTTP/1.1", "Host: a"]),
            426,
            "not_websocket",
        ),
        (
            upgrade("/", "a", &[]).set("sec-websocket-version", Some("8")),
            426,
            "version",
        ),
        (
            upgrade("/", "a", &[]).set("sec-websocket-version", None),
            400,
            "missing_version",
        ),
        (
            upgrade("/", "a", &[]).set("connection", Some("keep-alive")),
            400,
            "connection_header",
        ),
        (
            upgrade("/", "a", &[]).set("sec-websocket-key", Some("AAAAAAAAAAAAAAAAAAAAAAA=")),
            400,
            "key",
        ),
        (
            upgrade("/", "a", &[]).set("sec-websocket-key", Some("AAAAAAAAAAAAAAAAAAAA")),
            400,
            "key",
        ),
        (
            upgrade("/", "a", &[]).set("sec-websocket-key", Some("not base64 at all!!!!!!!")),
            400,
            "key",
        ),
        (
            upgrade("/", "a", &[]).set("sec-websocket-key", None),
            400,
            "key",
        ),
        (upgrade("/", "a", &["Content-Length: 5"]), 400, "body"),
        (
            upgrade("/chat", "chat.example.com", &[]),
            403,
            "origin_missing",
        ),
        (
            upgrade("/chat", "chat.example.com", &["Origin: https://evil.test"]),
            403,
            "origin_denied",
        ),
        (
            upgrade("/", "a", &["Sec-WebSocket-Protocol: a b"]),
            400,
            "protocol",
        ),
    ];
    for (head, status, label) in cases {
        let r = rejection(&head, &t);
        assert_eq!((r.status(), r.label()), (status, label), "{head:?}");
    }
}

#[test]
fn no_route_is_404() {
    let raw: RawConfig = toml::from_str(
        r#"
[[listeners]]
listen = "127.0.0.1:0"
[[upstreams]]
name = "app"
endpoints = ["ws://127.0.0.1:1"]
[[routes]]
path = "/only"
upstream = "app"
"#,
    )
    .unwrap();
    let t = RouteTable::new(Config::from_raw(raw).unwrap().routes);
    let r = rejection(&upgrade("/other", "a", &[]), &t);
    assert_eq!((r.status(), r.label()), (404, "no_route"));
    let r = rejection(&upgrade("/onlyx", "a", &[]), &t);
    assert_eq!(r.status(), 404);
}

#[test]
fn subprotocols_are_filtered_by_the_route() {
    let t = routes("");
    let u = validate(
        &upgrade(
            "/chat",
            "chat.example.com",
            &[
                "Origin: https://a.example.org",
                "Sec-WebSocket-Protocol: v3, v1",
                "Sec-WebSocket-Protocol: v2",
            ],
        ),
        &t,
    )
    .unwrap();
    assert_eq!(u.protocols, vec!["v1", "v2"]);
    let u = validate(&upgrade("/", "a", &["Sec-WebSocket-Protocol: x, y"]), &t).unwrap();
    assert_eq!(u.protocols, vec!["x", "y"]);
}

#[test]
fn rejection_responses_carry_required_headers() {
    let text = |r: Rejection| String::from_utf8(r.response()).unwrap();
    assert!(text(Rejection::Version).contains("Sec-WebSocket-Version: 13\r\n"));
    assert!(text(Rejection::NotWebSocket).contains("Upgrade: websocket\r\n"));
    assert!(text(Rejection::Method).starts_with("HTTP/1.1 405 "));
    assert!(text(Rejection::HeaderTooLarge).starts_with("HTTP/1.1 431 "));
    let relayed = Rejection::UpstreamStatus {
        status: 403,
        content_type: Some("application/json".into()),
        body: b"{\"error\":\"no\"}".to_vec(),
    };
    let t = text(relayed);
    assert!(t.starts_with("HTTP/1.1 403 Forbidden\r\n"));
    assert!(t.contains("Content-Type: application/json\r\n"));
    assert!(t.ends_with("{\"error\":\"no\"}"));
}

#[test]
fn head_parsing_limits() {
    assert!(RequestHead::parse(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .unwrap()
        .is_none());
    assert!(matches!(
        RequestHead::parse(b"GARBAGE\x00\r\n\r\n"),
        Err(HeadError::Malformed)
    ));
    assert!(matches!(
        RequestHead::parse(b"GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n"),
        Err(HeadError::Malformed)
    ));
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-{i}: y\r\n"));
    }
    many.push_str("\r\n");
    assert!(matches!(
        RequestHead::parse(many.as_bytes()),
        Err(HeadError::TooLarge)
    ));
}

#[tokio::test]
async fn read_head_is_bounded_and_keeps_trailing_bytes() {
    let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\x81\x85";
    let (head, rest) = read_head(&mut input, 1024).await.unwrap();
    assert_eq!(head.method, "GET");
    assert_eq!(rest, b"\x81\x85");
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(5000));
    let mut input = big.as_bytes();
    assert!(matches!(
        read_head(&mut input, 1024).await,
        Err(HeadError::TooLarge)
    ));
    let mut input: &[u8] = b"GET / HTTP/1.1\r\n";
    assert!(matches!(
        read_head(&mut input, 1024).await,
        Err(HeadError::Closed)
    ));
}

/// Replace (or with `None` remove) a header of a parsed request.
trait Edit {
    fn set(self, name: &str, value: Option<&str>) -> Self;
}

impl Edit for RequestHead {
    fn set(mut self, name: &str, value: Option<&str>) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            self.headers.push((name.into(), v.into()));
        }
        self
    }
}
