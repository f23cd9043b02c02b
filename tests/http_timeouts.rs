//! The waits of a plain HTTP keep-alive connection, through the release
//! binary: the idle time between requests (`http.keepalive_timeout`), a
//! later request's head (`limits.handshake_timeout`) and a response body
//! that stops (`http_idle_timeout`) each end the connection; and since
//! they all run on one re-armed timer per connection (`http::timer`), a
//! short keep-alive timeout left armed from the wait before a request
//! must not cut that request's response. The upstream's response-head
//! timeout (504) is in `http.rs`. No timing is asserted: each bound is
//! short, every wait for it generous.

use crate::support::http::{gateway, get, HttpUpstream, RawHttp};
use crate::support::*;
use std::time::Duration;

/// A keep-alive connection that has carried one request.
async fn after_one_request(gw: &GatewayProc) -> RawHttp {
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(get("/first").as_bytes()).await;
    assert_eq!(c.response(false).await.status, 200);
    c
}

/// Ask for `/stream` (which the upstream holds after its first chunk,
/// until `go`) and read its head and first chunk.
async fn start_stream(c: &mut RawHttp) {
    c.send(get("/stream").as_bytes()).await;
    let head = c.head().await;
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let first = within("the first chunk", c.chunk()).await;
    assert_eq!(first.as_deref(), Some(&b"first\n"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |raw| raw.http.keepalive_timeout = "1s".into()).await;
    let mut c = after_one_request(&gw).await;
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_head_that_stalls_is_dropped_unseen() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |raw| raw.limits.handshake_timeout = "2s".into()).await;
    let mut c = after_one_request(&gw).await;
    // A head that never ends.
    c.send(b"GET /stalled HTTP/1.1\r\nHost: app.test\r\n").await;
    c.expect_closed().await;
    let targets: Vec<_> = up.seen().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/first"], "the stalled request went upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_that_stops_is_cut_after_the_idle_timeout() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |raw| {
        raw.routes[0].http_idle_timeout = Some("1s".into());
    })
    .await;
    let mut c = after_one_request(&gw).await;
    start_stream(&mut c).await;
    // The upstream holds the rest: the gateway gives up on it and closes
    // the client's connection (a body cut short cannot be delimited).
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_keep_alive_timeout_does_not_cut_a_longer_response() {
    let up = HttpUpstream::start().await;
    let (gw, _f) = gateway(&up, |raw| raw.http.keepalive_timeout = "1s".into()).await;
    // The wait for this request armed the 1 s keep-alive deadline; the
    // response's own waits (120 s head, 300 s body) are later ones.
    let mut c = after_one_request(&gw).await;
    start_stream(&mut c).await;
    // Well past the keep-alive deadline, mid-response.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    up.go();
    let second = within("the second chunk", c.chunk()).await;
    assert_eq!(second.as_deref(), Some(&b"second\n"[..]));
    assert_eq!(within("the last chunk", c.chunk()).await, None);
    // The connection carries on as before: another request, then the
    // idle limit closes it.
    c.send(get("/third").as_bytes()).await;
    assert_eq!(c.response(false).await.status, 200);
    c.expect_closed().await;
}
