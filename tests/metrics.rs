//! The admin listener after real traffic: message, byte, connection, close
//! and handshake-latency series, and the health and readiness probes.

use crate::support::*;
use fastwebsockets::Frame;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_the_traffic() {
    let echo = start_echo().await;
    let gw = start_gateway(raw_config(&[ws_url(echo)])).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    let messages = ["one", "two two", "three three three", "4", "five!"];
    for m in messages {
        echo_text(&mut ws, m).await;
    }
    send(&mut ws, Frame::close(1000, b"bye")).await;
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    let bytes: usize = messages.iter().map(|m| m.len()).sum();

    let route = ("route", "r");
    for direction in ["client_to_upstream", "upstream_to_client"] {
        wait_metric(
            gw.admin,
            "tidegate_messages_total",
            &[route, ("direction", direction)],
            messages.len() as f64,
        )
        .await;
        wait_metric(
            gw.admin,
            "tidegate_payload_bytes_total",
            &[route, ("direction", direction)],
            bytes as f64,
        )
        .await;
    }
    wait_metric(
        gw.admin,
        "tidegate_connections_total",
        &[route, ("outcome", "upgraded")],
        1.0,
    )
    .await;
    wait_metric(
        gw.admin,
        "tidegate_closes_total",
        &[route, ("side", "client"), ("code", "1000")],
        1.0,
    )
    .await;
    wait_metric(
        gw.admin,
        "tidegate_closes_total",
        &[route, ("side", "upstream"), ("code", "1000")],
        1.0,
    )
    .await;
    wait_metric(
        gw.admin,
        "tidegate_handshake_duration_seconds_count",
        &[route],
        1.0,
    )
    .await;
    // The session is over: nothing active.
    wait_metric(gw.admin, "tidegate_connections_active", &[route], 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let echo = start_echo().await;
    let gw = start_gateway(raw_config(&[ws_url(echo)])).await;
    assert_eq!(http_get(gw.admin, "/healthz").await.status, 200);
    assert_eq!(http_get(gw.admin, "/readyz").await.status, 200);
    assert_eq!(http_get(gw.admin, "/nope").await.status, 404);

    gw.running.shutdown();
    assert_eq!(
        http_get(gw.admin, "/readyz").await.status,
        503,
        "not ready once draining"
    );
    assert_eq!(
        http_get(gw.admin, "/healthz").await.status,
        200,
        "still alive while draining"
    );
    assert_eq!(
        scrape(gw.admin).await.get("tidegate_draining", &[]),
        Some(1.0)
    );
}
