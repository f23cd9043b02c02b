//! Plain HTTP through the release binary (issue #15): a recording hyper
//! upstream behind the gateway, raw-byte keep-alive clients in front.
//! Bodies both ways, HEAD, 100-continue, trailers, hop-by-hop and
//! forwarding headers, 502/504/413/431, every request-smuggling vector on
//! the first and on a later request of a connection (400, and the
//! upstream never sees it), a response streamed chunk by chunk, a client
//! that leaves a long-poll, and the per-route `http = false` switch.

use crate::support::http::{gateway, get, HttpUpstream, RawHttp};
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_both_ways_on_one_keep_alive_connection() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(b"POST /fixed?x=1 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.body_text().as_str()), (200, "hello"));
    c.send(b"POST /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: dropped\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.body_text().as_str()), (200, "abcde"));
    c.send(b"HEAD /head HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    let r = c.response(true).await;
    assert_eq!(r.status, 200);
    c.send(get("/after-head").as_bytes()).await;
    assert_eq!(
        c.response(false).await.status,
        200,
        "the HEAD response had no body"
    );
    let seen = up.seen();
    let what: Vec<_> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.target.as_str()))
        .collect();
    assert_eq!(
        what,
        [
            ("POST", "/fixed?x=1"),
            ("POST", "/chunked"),
            ("HEAD", "/head"),
            ("GET", "/after-head")
        ]
    );
    assert_eq!(
        seen[1].body, b"abcde",
        "chunks decoded, extensions and trailers dropped"
    );
    assert_eq!(seen[1].header("x-trailer"), None);
    // The request is counted once its exchange has ended, which may be
    // just after the client has read the last response.
    wait_metric(
        gw.admin,
        "tidegate_http_requests_total",
        &[("route", "r"), ("class", "2xx")],
        4.0,
    )
    .await;
    let m = scrape(gw.admin).await;
    assert_eq!(
        m.get(
            "tidegate_http_requests_total",
            &[("route", "r"), ("class", "5xx")]
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_before_the_body() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(
        b"PUT /up HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    )
    .await;
    assert_eq!(
        c.head().await.status,
        100,
        "Continue before any body byte was sent"
    );
    c.send(b"body").await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.body_text().as_str()), (200, "body"));
    assert_eq!(
        up.seen()[0].header("expect"),
        None,
        "the gateway answered the expectation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_dropped_and_forwarding_headers_set() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(b"GET /hop HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, x-secret\r\nX-Secret: 1\r\nKeep-Alive: 300\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\nX-End: 1\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-end"), Some("kept"));
    for gone in ["x-up", "keep-alive", "connection"] {
        assert_eq!(
            r.header(gone),
            None,
            "{gone} reached the client: {:?}",
            r.headers
        );
    }
    let seen = &up.seen()[0];
    assert_eq!(seen.header("x-end"), Some("1"));
    for gone in ["x-secret", "keep-alive", "te"] {
        assert_eq!(
            seen.header(gone),
            None,
            "{gone} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "a client's XFF is not trusted"
    );
    assert_eq!(seen.header("x-forwarded-host"), Some("app.test"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_trailers_are_dropped_consistently() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(get("/trailers").as_bytes()).await;
    // `chunk()` asserts the last chunk carries no trailer section.
    let r = c.response(false).await;
    assert_eq!(r.body_text(), "with trailers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_arrives_chunk_by_chunk() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(get("/stream").as_bytes()).await;
    let head = c.head().await;
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    // The upstream holds its second chunk until told: the first one must
    // reach the client on its own.
    let first = within(
        "the first chunk while the upstream holds the second",
        c.chunk(),
    )
    .await;
    assert_eq!(first.as_deref(), Some(&b"first\n"[..]));
    // In flight from the moment the head is out; the gauge may go up
    // just after the client read the head and the first chunk.
    wait_metric(
        gw.admin,
        "tidegate_http_streams_in_flight",
        &[("route", "r")],
        1.0,
    )
    .await;
    up.go();
    assert_eq!(c.chunk().await.as_deref(), Some(&b"second\n"[..]));
    assert_eq!(c.chunk().await, None);
    wait_metric(
        gw.admin,
        "tidegate_http_streams_in_flight",
        &[("route", "r")],
        0.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_a_long_poll_cancels_the_upstream_request() {
    let mut up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(get("/hold").as_bytes()).await;
    within("the upstream to get the poll", async {
        while up.seen().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    drop(c);
    within(
        "the upstream to see its request's socket close",
        up.closed.recv(),
    )
    .await
    .expect("a /hold request ended");
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_slow_upstreams_are_502_and_504() {
    let dead = refused_port().await;
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |raw| {
        raw.upstreams[0].endpoints = vec![ws_url(dead)];
    })
    .await;
    let r = raw_request(gw.addr, get("/x").as_bytes()).await;
    assert_eq!(r.status, 502);
    let (gw, _f) = gateway(&up, |raw| {
        raw.routes[0].http_request_timeout = Some("1s".into())
    })
    .await;
    let r = raw_request(gw.addr, get("/slow").as_bytes()).await;
    assert_eq!(r.status, 504);
    // Counted as the exchange ends, which may be just after the client
    // has read the response.
    wait_metric(
        gw.admin,
        "tidegate_handshake_rejections_total",
        &[("route", "r"), ("reason", "upstream_timeout")],
        1.0,
    )
    .await;
    wait_metric(
        gw.admin,
        "tidegate_http_requests_total",
        &[("route", "r"), ("class", "5xx")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_heads_over_the_limits_are_413_and_431() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |raw| {
        raw.routes[0].max_body_bytes = Some(8);
        raw.limits.max_header_bytes = 1024;
    })
    .await;
    let r = raw_request(
        gw.addr,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\n123456789",
    )
    .await;
    assert_eq!(r.status, 413);
    let r = raw_request(
        gw.addr,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n5\r\n67890\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 413);
    // A later request's head is bounded like the first.
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(get("/ok").as_bytes()).await;
    assert_eq!(c.response(false).await.status, 200);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(2000)
    );
    c.send(big.as_bytes()).await;
    assert_eq!(c.response(false).await.status, 431);
    assert_eq!(
        up.seen().len(),
        1,
        "only the small GET reached the upstream"
    );
}

/// Request-smuggling vectors: each must be refused with 400.
const SMUGGLING: &[(&str, &str)] = &[
    ("CL + TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("TE + CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
    ("two CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nxx"),
    ("conflicting CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nxx"),
    ("signed CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx"),
    ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n"),
    ("bare LF", "GET / HTTP/1.1\nHost: a\r\n\r\n"),
    ("TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    ("two TE", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 ;x\r\nhello\r\n0\r\n\r\n"),
    ("chunk without CRLF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
    ("chunk bare LF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_vectors_are_400_first_and_later_and_never_reach_the_upstream() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    for (name, vector) in SMUGGLING {
        // As the first request of a connection…
        let r = raw_request(gw.addr, vector.as_bytes()).await;
        assert_eq!(r.status, 400, "{name} (first request)");
        // …and as the second, behind a valid one.
        let mut c = RawHttp::connect(gw.addr).await;
        c.send(get("/first").as_bytes()).await;
        assert_eq!(
            c.response(false).await.status,
            200,
            "{name}: the valid request"
        );
        c.send(vector.as_bytes()).await;
        assert_eq!(
            c.response(false).await.status,
            400,
            "{name} (later request)"
        );
        c.expect_closed().await;
    }
    let seen = up.seen();
    // The chunk vectors are refused while their body streams: the
    // upstream may have seen the head, never a completed request.
    let completed: Vec<_> = seen.iter().filter(|s| s.target != "/first").collect();
    assert!(
        completed.is_empty(),
        "smuggled requests reached the upstream: {completed:?}"
    );
    assert_eq!(seen.len(), SMUGGLING.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_http_off_refuses_plain_requests() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |raw| raw.routes[0].http = false).await;
    let r = raw_request(gw.addr, get("/x").as_bytes()).await;
    assert_eq!(r.status, 426);
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_after_plain_requests_takes_the_upgrade_path() {
    let echo = start_echo().await;
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.routes[0].name = "r".into();
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(get("/page").as_bytes()).await;
    assert_eq!(c.response(false).await.status, 200);
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    c.send(upgrade_request("app.test", "/ws", key, &[]).as_bytes())
        .await;
    let r = c.head().await;
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("sec-websocket-accept"),
        Some(accept_for(key).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_connection_passes_auth_and_origin() {
    use tidegate::config::raw::auth::{RawApiKey, RawApiKeys, RawAuthPolicy};
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |raw| {
        raw.auth_policies = vec![RawAuthPolicy {
            name: "keys".into(),
            sources: vec!["query:token".into(), "header:X-Api-Key".into()],
            identity_headers: [("sub".to_string(), "X-Auth-Subject".to_string())].into(),
            api_keys: Some(RawApiKeys {
                keys: vec![RawApiKey {
                    name: "poller".into(),
                    key: "polling-key-0123456789".into(),
                    ..RawApiKey::default()
                }],
                file: String::new(),
            }),
            ..RawAuthPolicy::default()
        }];
        raw.routes[0].auth = "keys".into();
        raw.routes[0].origins = vec!["https://app.test".into()];
    })
    .await;
    let mut c = RawHttp::connect(gw.addr).await;
    // A Socket.IO-style poll with the token in the query, as its upgrade would carry it.
    c.send(b"GET /socket.io/?EIO=4&transport=polling&token=polling-key-0123456789 HTTP/1.1\r\nHost: app.test\r\nOrigin: https://app.test\r\nX-Auth-Subject: forged\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.status, 200);
    // The same connection, a later request without a credential: refused.
    c.send(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.status, 401);
    c.expect_closed().await;
    // A later request from an Origin the route does not allow: refused.
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(b"GET /a HTTP/1.1\r\nHost: app.test\r\nX-Api-Key: polling-key-0123456789\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.status, 200);
    c.send(b"GET /b HTTP/1.1\r\nHost: app.test\r\nOrigin: https://evil.test\r\nX-Api-Key: polling-key-0123456789\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.status, 403);
    let seen = up.seen();
    assert_eq!(seen.len(), 2, "refused requests never reach the upstream");
    assert_eq!(
        seen[0].target, "/socket.io/?EIO=4&transport=polling",
        "the credential is stripped"
    );
    assert_eq!(
        seen[0].header("x-auth-subject"),
        Some("poller"),
        "identity set, the forged one dropped"
    );
    assert_eq!(seen[1].header("x-api-key"), None);
    wait_metric(
        gw.admin,
        "tidegate_http_requests_total",
        &[("route", "r"), ("class", "4xx")],
        2.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_ends_an_event_stream_cleanly() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(get("/events").as_bytes()).await;
    assert_eq!(
        c.head().await.header("content-type"),
        Some("text/event-stream")
    );
    assert_eq!(c.chunk().await.as_deref(), Some(&b"first\n"[..]));
    // The upstream holds its next event; the drain ends the stream with
    // its last chunk (the client reconnects elsewhere) and the connection.
    gw.proc.signal("-TERM");
    assert_eq!(within("the stream's last chunk", c.chunk()).await, None);
    c.expect_closed().await;
}
