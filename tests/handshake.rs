//! The upgrade handshake through the real gateway: every rejection status
//! with its metric label, the Origin policy, sub-protocol negotiation, and
//! what the client sees when the upstream refuses, is down, or is silent.

use crate::support::*;
use tidegate::config::raw::{RawRoute, RawUpstream};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Send `request` to a fresh gateway (echo upstream, route `r` on `/`),
/// expect `status`, and expect the rejection counted once, under
/// `{route, reason}` and no other label.
async fn rejected(request: &str, status: u16, route: &str, reason: &str) -> HttpResponse {
    let echo = start_echo().await;
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.routes[0].origins = vec!["https://app.example.com".into()];
    // A WebSocket-only route: plain HTTP is refused as 426/405.
    raw.routes[0].http = false;
    let gw = start_gateway(raw).await;
    let resp = raw_request(gw.addr, request.as_bytes()).await;
    assert_eq!(resp.status, status, "status for {request:?}");
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", route), ("reason", reason)],
        1.0,
    )
    .await;
    let all = scrape(gw.admin).await;
    assert_eq!(
        all.sum("tidegate_handshake_rejections_total", &[]),
        1.0,
        "counted once, under {reason} only:\n{all}"
    );
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_405() {
    let req = upgrade_request("localhost", "/", KEY, &[]).replacen("GET", "POST", 1);
    let resp = rejected(&req, 405, "r", "method").await;
    assert_eq!(resp.header("allow"), Some("GET"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_without_upgrade_token_is_400() {
    let req = upgrade_request("localhost", "/", KEY, &[])
        .replace("Connection: Upgrade", "Connection: keep-alive");
    rejected(&req, 400, "r", "connection_header").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_not_base64_is_400() {
    let req = upgrade_request("localhost", "/", "this is not base64 !!!!!", &[]);
    rejected(&req, 400, "r", "key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_of_15_bytes_is_400() {
    // base64 of 15 bytes: 20 characters, valid base64, wrong length.
    let req = upgrade_request("localhost", "/", "AAECAwQFBgcICQoLDA0O", &[]);
    rejected(&req, 400, "r", "key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_get_is_426_with_upgrade_header() {
    let req = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let resp = rejected(req, 426, "r", "not_websocket").await;
    assert!(
        resp.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "426 names the protocol to upgrade to: {:?}",
        resp.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_8_is_426_naming_version_13() {
    let req = upgrade_request("localhost", "/", KEY, &[])
        .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let resp = rejected(&req, 426, "r", "version").await;
    assert_eq!(resp.header("sec-websocket-version"), Some("13"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_host_is_400() {
    let req = upgrade_request("localhost", "/", KEY, &[]).replace("Host: localhost\r\n", "");
    rejected(&req, 400, "-", "missing_host").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_host_or_path_is_404() {
    let echo = start_echo().await;
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.routes = vec![
        RawRoute {
            name: "hosted".into(),
            host: "a.test".into(),
            path: "/".into(),
            upstream: "up".into(),
            ..RawRoute::default()
        },
        RawRoute {
            name: "chat".into(),
            path: "/chat".into(),
            upstream: "up".into(),
            ..RawRoute::default()
        },
    ];
    let gw = start_gateway(raw).await;
    // The host-specific route does not take another host…
    let other_host = upgrade_request("b.test", "/x", KEY, &[]);
    assert_eq!(
        raw_request(gw.addr, other_host.as_bytes()).await.status,
        404
    );
    // …and `/chat` does not cover `/chatroom`.
    let other_path = upgrade_request("b.test", "/chatroom", KEY, &[]);
    assert_eq!(
        raw_request(gw.addr, other_path.as_bytes()).await.status,
        404
    );
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", "-"), ("reason", "no_route")],
        2.0,
    )
    .await;
    // Both routes do work for what they cover.
    let (resp, _) = ws_try(gw.addr, "a.test", "/x", &[]).await;
    assert_eq!(resp.status, 101);
    let (resp, _) = ws_try(gw.addr, "b.test", "/chat/room", &[]).await;
    assert_eq!(resp.status, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_header_is_431() {
    // Exactly `limits.max_header_bytes` (default 16 KiB) of head with no
    // end in sight: the gateway reads all of it, so its answer is not lost
    // to a reset caused by unread bytes.
    let mut req = String::from("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ");
    req.push_str(&"a".repeat(16 * 1024 - req.len()));
    assert_eq!(req.len(), 16 * 1024);
    rejected(&req, 431, "-", "header_too_large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_origin_is_403() {
    let req = upgrade_request("localhost", "/", KEY, &[("Origin", "https://evil.test")]);
    rejected(&req, 403, "r", "origin_denied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_after_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = start_echo().await;
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.limits.handshake_timeout = "1s".into();
    let gw = start_gateway(raw).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = within(
        "gateway closes a connection whose head never completes",
        tcp.read_to_end(&mut rest),
    )
    .await;
    // EOF (or a reset): the socket is closed, with nothing sent.
    if let Ok(n) = closed {
        assert_eq!(n, 0, "no response to half a request: {rest:?}");
    }
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", "-"), ("reason", "handshake_timeout")],
        1.0,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Origin policy

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allowlist_exact_and_wildcard() {
    let echo = start_echo().await;
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.routes = vec![
        RawRoute {
            name: "open".into(),
            path: "/".into(),
            upstream: "up".into(),
            origins: vec![
                "https://app.example.com".into(),
                "https://*.example.com".into(),
            ],
            ..RawRoute::default()
        },
        RawRoute {
            name: "browser".into(),
            path: "/browser".into(),
            upstream: "up".into(),
            origins: vec!["https://app.example.com".into()],
            require_origin: true,
            ..RawRoute::default()
        },
    ];
    let gw = start_gateway(raw).await;
    let status = |path: &'static str, origin: Option<&'static str>| {
        let addr = gw.addr;
        async move {
            let extra: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
            let (resp, ws) = ws_try(addr, "localhost", path, &extra).await;
            if let Some(mut ws) = ws {
                echo_text(&mut ws, "allowed in").await;
            }
            resp.status
        }
    };
    // Exact, and the wildcard (one label or more under the suffix).
    assert_eq!(status("/", Some("https://app.example.com")).await, 101);
    assert_eq!(status("/", Some("https://chat.example.com")).await, 101);
    assert_eq!(status("/", Some("https://a.b.example.com")).await, 101);
    // Not the bare suffix, not another scheme, not a look-alike.
    assert_eq!(status("/", Some("https://example.com")).await, 403);
    assert_eq!(status("/", Some("http://chat.example.com")).await, 403);
    assert_eq!(
        status("/", Some("https://chat.example.com.evil.test")).await,
        403
    );
    assert_eq!(status("/", Some("https://evil.test")).await, 403);
    // No Origin: allowed unless the route requires one.
    assert_eq!(status("/", None).await, 101);
    assert_eq!(status("/browser", None).await, 403);
    assert_eq!(
        status("/browser", Some("https://app.example.com")).await,
        101
    );
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", "open"), ("reason", "origin_denied")],
        4.0,
    )
    .await;
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", "browser"), ("reason", "origin_missing")],
        1.0,
    )
    .await;
}

// ---------------------------------------------------------------------------
// Sub-protocols

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_offer_reaches_upstream_and_its_choice_the_client() {
    let echo = start_echo().await;
    let gw = start_gateway(raw_config(&[ws_url(echo)])).await;
    let (resp, ws) = ws_try(
        gw.addr,
        "localhost",
        "/",
        &[("Sec-WebSocket-Protocol", "a, b")],
    )
    .await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-protocol"), Some("a"));
    echo_text(&mut ws.expect("upgraded"), "with protocol a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_subprotocol_list_filters_the_offer() {
    let (upstream, mut seen) = raw_upstream(Behaviour::EchoFrames).await;
    let mut raw = raw_config(&[ws_url(upstream)]);
    raw.routes[0].subprotocols = vec!["b".into()];
    let gw = start_gateway(raw).await;

    let (resp, ws) = ws_try(
        gw.addr,
        "localhost",
        "/",
        &[("Sec-WebSocket-Protocol", "a, b")],
    )
    .await;
    assert_eq!(resp.status, 101);
    let req = within("upstream sees the request", seen.recv())
        .await
        .expect("request");
    assert_eq!(req.header("sec-websocket-protocol"), Some("b"));
    assert_eq!(resp.header("sec-websocket-protocol"), Some("b"));
    echo_text(&mut ws.expect("upgraded"), "with protocol b").await;

    // Nothing allowed left in the offer: the upstream is offered nothing.
    let (resp, _ws) = ws_try(
        gw.addr,
        "localhost",
        "/",
        &[("Sec-WebSocket-Protocol", "a")],
    )
    .await;
    assert_eq!(resp.status, 101);
    let req = within("upstream sees the request", seen.recv())
        .await
        .expect("request");
    assert_eq!(req.header("sec-websocket-protocol"), None);
    assert_eq!(resp.header("sec-websocket-protocol"), None);
}

// ---------------------------------------------------------------------------
// Upstream refusals and failures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_403_is_relayed_with_its_body() {
    let reply = b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nnot allowed"
        .to_vec();
    let (upstream, _seen) = raw_upstream(Behaviour::Reply(reply)).await;
    let gw = start_gateway(raw_config(&[ws_url(upstream)])).await;
    let (resp, ws) = ws_try(gw.addr, "localhost", "/", &[]).await;
    assert!(ws.is_none());
    assert_eq!(resp.status, 403);
    assert_eq!(resp.body_text(), "not allowed");
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", "r"), ("reason", "upstream_status")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502() {
    let dead = refused_port().await;
    let gw = start_gateway(raw_config(&[ws_url(dead)])).await;
    let (resp, ws) = ws_try(gw.addr, "localhost", "/", &[]).await;
    assert!(ws.is_none());
    assert_eq!(resp.status, 502);
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", "r"), ("reason", "upstream_unreachable")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_is_skipped_for_a_live_one() {
    let dead = refused_port().await;
    let echo = start_echo().await;
    let gw = start_gateway(raw_config(&[ws_url(dead), ws_url(echo)])).await;
    // Round robin starts anywhere; every connection must still get through.
    for i in 0..4 {
        let mut ws = ws_connect(gw.addr, "/").await;
        echo_text(&mut ws, &format!("via the live endpoint #{i}")).await;
    }
    let failures = scrape(gw.admin).await.get(
        "tidegate_upstream_connect_failures_total",
        &[
            ("upstream", "up"),
            ("endpoint", &ws_url(dead)),
            ("reason", "connect"),
        ],
    );
    assert!(
        failures.is_some_and(|n| n >= 1.0),
        "the dead endpoint's failures are counted: {failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_upstream_is_504() {
    let (upstream, _seen) = raw_upstream(Behaviour::Silent).await;
    let mut raw = raw_config(&[ws_url(upstream)]);
    raw.upstreams = vec![RawUpstream {
        name: "up".into(),
        endpoints: vec![ws_url(upstream)],
        handshake_timeout: "1s".into(),
        ..RawUpstream::default()
    }];
    let gw = start_gateway(raw).await;
    let (resp, ws) = ws_try(gw.addr, "localhost", "/", &[]).await;
    assert!(ws.is_none());
    assert_eq!(resp.status, 504);
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", "r"), ("reason", "upstream_timeout")],
        1.0,
    )
    .await;
}
