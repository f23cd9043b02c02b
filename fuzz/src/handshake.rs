//! Target `handshake`: bytes from a client → `RequestHead::parse` →
//! `handshake::validate` against a fixed route table.
//!
//! Checks beyond "no panic":
//! - a complete head never claims more bytes than it was given, and parsing
//!   exactly those bytes gives the same head (what follows it is not part of
//!   it);
//! - every strict prefix of a complete head asks for more bytes: `read_head`
//!   parses a growing buffer, so an early error would make the outcome depend
//!   on how TCP split the request;
//! - an accepted upgrade carries a valid key and only token sub-protocols,
//!   within the route's allowlist; a refusal has a 4xx status and a label.

use std::sync::OnceLock;
use tidegate::config::{Config, RawConfig};
use tidegate::handshake::{self, RequestHead};
use tidegate::route::RouteTable;

/// Routes that reach every check: a catch-all, and one with an exact host,
/// an Origin allowlist (exact and wildcard), a required Origin and a
/// sub-protocol allowlist.
const ROUTES: &str = r#"
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
[[routes]]
name = "wild"
host = "*.example.net"
path = "/ws/"
upstream = "app"
"#;

fn routes() -> &'static RouteTable {
    static TABLE: OnceLock<RouteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let raw: RawConfig = toml::from_str(ROUTES).expect("the fuzz route table is valid TOML");
        let config = Config::from_raw(raw).expect("the fuzz route table is a valid config");
        RouteTable::new(config.routes)
    })
}

pub fn run(data: &[u8]) {
    let table = routes();
    let Ok(Some((head, len))) = RequestHead::parse(data) else {
        return;
    };
    assert!(len <= data.len(), "head of {len} bytes from {}", data.len());
    let (again, len_again) = RequestHead::parse(&data[..len])
        .expect("the head alone parses as it did with bytes behind it")
        .expect("the head alone is complete");
    assert_eq!(len_again, len);
    assert_eq!(again.method, head.method);
    assert_eq!(again.target, head.target);
    assert_eq!(again.headers, head.headers);
    // A few prefixes, picked from the input itself so they move with it.
    for i in 0..4 {
        let cut = data.get(i).map_or(0, |b| *b as usize * 31 + i) % len;
        match RequestHead::parse(&data[..cut]) {
            Ok(None) => {}
            other => panic!("prefix of {cut} of a {len}-byte head gave {other:?}"),
        }
    }

    let _ = (head.path(), head.query());
    assert!(head.target.starts_with('/'));
    match handshake::validate(&head, table) {
        Ok(upgrade) => {
            assert_eq!(head.method, "GET");
            assert_eq!(upgrade.key.len(), 24);
            assert_eq!(handshake::accept_key(&upgrade.key).len(), 28);
            assert!(!upgrade.host.is_empty());
            for p in &upgrade.protocols {
                assert!(handshake::is_token(p), "protocol {p:?} passed validation");
                let allowed = &upgrade.route.subprotocols;
                assert!(
                    allowed.is_empty() || allowed.contains(p),
                    "{p:?} not allowed"
                );
            }
        }
        Err(refused) => {
            let status = refused.rejection.status();
            assert!((400..500).contains(&status), "status {status}");
            assert!(!refused.rejection.label().is_empty());
        }
    }
}
