//! TLS listeners: echo over wss, certificates chosen by SNI, a TLS 1.2-only
//! client, and a missing certificate file reported as a config error.

use crate::support::*;
use fastwebsockets::{Frame, OpCode, Payload};
use tidegate::config::Config;

/// A gateway whose listener serves `a.test` (default) and `b.test`, both
/// signed by `ca`, in front of the echo.
async fn tls_gateway(ca: &TestCa, dir: &std::path::Path) -> (Gateway, Leaf, Leaf) {
    let a = leaf(ca, &["a.test"]);
    let b = leaf(ca, &["b.test"]);
    let (a_cert, a_key) = write_leaf(dir, "a", &a);
    let (b_cert, b_key) = write_leaf(dir, "b", &b);
    let echo = start_echo().await;
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.listeners[0].tls = Some(tls_section(&[
        (&a_cert, &a_key, &["a.test"]),
        (&b_cert, &b_key, &["b.test"]),
    ]));
    let gw = start_gateway(raw).await;
    assert!(gw.running.listeners[0].tls);
    (gw, a, b)
}

/// wss:// to the gateway with SNI `name`; returns the socket ready for
/// frames and the leaf certificate the server presented.
async fn wss(
    gw: &Gateway,
    config: std::sync::Arc<rustls::ClientConfig>,
    name: &str,
) -> (Ws<TlsStream>, Vec<u8>, rustls::ProtocolVersion) {
    let tls = tls_connect(gw.addr, config, name).await;
    let (_, conn) = tls.get_ref();
    let peer = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server presented a certificate")
        .to_vec();
    let version = conn.protocol_version().expect("negotiated version");
    let (resp, stream) = within("wss handshake", ws_handshake(tls, name, "/", &[])).await;
    assert_eq!(resp.status, 101, "{:?}", resp.body_text());
    (client_ws(stream.expect("upgraded")), peer, version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_text_and_binary_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (gw, _, _) = tls_gateway(&ca, dir.path()).await;
    let config = client_tls(&ca, rustls::DEFAULT_VERSIONS);
    let (mut ws, _, _) = wss(&gw, config, "a.test").await;

    echo_text(&mut ws, "hello over TLS").await;
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    send(&mut ws, Frame::binary(Payload::Borrowed(&binary))).await;
    let (fin, op, payload) = next_frame(&mut ws).await;
    assert!(fin);
    assert_eq!(op, OpCode::Binary);
    assert_eq!(payload, binary);

    send(&mut ws, Frame::close(1000, b"")).await;
    assert_eq!(expect_close(&mut ws).await.0, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate_for_each_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (gw, a, b) = tls_gateway(&ca, dir.path()).await;
    let config = client_tls(&ca, rustls::DEFAULT_VERSIONS);

    let (mut ws_a, peer_a, _) = wss(&gw, config.clone(), "a.test").await;
    assert!(peer_a == a.der, "SNI a.test is answered with a.test's cert");
    echo_text(&mut ws_a, "to a").await;

    let (mut ws_b, peer_b, _) = wss(&gw, config, "b.test").await;
    assert!(peer_b == b.der, "SNI b.test is answered with b.test's cert");
    echo_text(&mut ws_b, "to b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_client_connects() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let (gw, _, b) = tls_gateway(&ca, dir.path()).await;
    let config = client_tls(&ca, &[&rustls::version::TLS12]);
    let (mut ws, peer, version) = wss(&gw, config, "b.test").await;
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_2);
    assert!(peer == b.der);
    echo_text(&mut ws, "over TLS 1.2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_certificate_file_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let a = leaf(&ca, &["a.test"]);
    let (_, key) = write_leaf(dir.path(), "a", &a);
    let missing = dir.path().join("missing.crt");
    let mut raw = raw_config(&["ws://127.0.0.1:9".to_string()]);
    raw.listeners[0].tls = Some(tls_section(&[(&missing, &key, &["a.test"])]));
    let err = Config::from_raw(raw).expect_err("a missing certificate file is refused");
    assert!(
        err.problems
            .iter()
            .any(|p| p.key == "listeners[0].tls.certificates[0].cert"),
        "problem names the key path: {err}"
    );
}
