//! Zero-downtime reload through the real gateway: sessions open across a
//! reload keep working, new clients see the new routes, an invalid file
//! leaves the old configuration serving, and a certificate replaced on disk
//! is served to the next TLS handshake without any signal.

use crate::support::*;
use std::path::Path;
use tidegate::config::raw::RawConfig;

/// Route `r` on `path` to the echo at `upstream`; TLS on the listener
/// with `tls` (cert, key) as its one certificate.
fn config(upstream: std::net::SocketAddr, path: &str, tls: Option<(&Path, &Path)>) -> RawConfig {
    let mut raw = raw_config(&[ws_url(upstream)]);
    raw.routes[0].path = path.into();
    raw.listeners[0].tls = tls.map(|(cert, key)| tls_section(&[(cert, key, &[])]));
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_and_keeps_sessions() {
    let echo = start_echo().await;
    let file = ConfigFile::new(&config(echo, "/a", None));
    let gw = start_gateway_from(&file).await;
    let (addr, admin) = (gw.addr, gw.admin);

    let mut old = ws_connect(addr, "/a/room").await;
    echo_text(&mut old, "before").await;

    file.write(&config(echo, "/b", None));
    let resp = post_reload(admin).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body_text());

    // The session opened before the reload is untouched.
    echo_text(&mut old, "after").await;
    // New clients get the new routes.
    let mut new = ws_connect(addr, "/b/room").await;
    echo_text(&mut new, "new route").await;
    let (resp, ws) = ws_try(addr, "localhost", "/a/room", &[]).await;
    assert!(ws.is_none());
    assert_eq!(resp.status, 404);

    // An invalid file is rejected whole; the running configuration stays.
    file.write_text("[[routes]]\npath = \"/c\"\nupstream = \"nowhere\"\n");
    let resp = post_reload(admin).await;
    assert_eq!(resp.status, 422);
    assert!(
        resp.body_text().contains("routes[0].upstream"),
        "{:?}",
        resp.body_text()
    );
    let mut still = ws_connect(addr, "/b").await;
    echo_text(&mut still, "old config still serving").await;
    echo_text(&mut old, "and the first session too").await;

    let text = scrape(admin).await;
    assert_eq!(
        text.get("tidegate_config_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        text.get("tidegate_config_reloads_total", &[("result", "rejected")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_changes_need_a_restart() {
    let echo = start_echo().await;
    let file = ConfigFile::new(&config(echo, "/", None));
    let gw = start_gateway_from(&file).await;
    let mut changed = config(echo, "/", None);
    changed.listeners[0].name = "other".into();
    file.write(&changed);
    let err = gw.running.gateway.reload().await.unwrap_err().to_string();
    assert!(err.contains("listeners"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_replaced_on_disk_is_served_next() {
    let echo = start_echo().await;
    let ca = test_ca();
    let first = leaf(&ca, &["localhost"]);
    let second = leaf(&ca, &["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_leaf(dir.path(), "live", &first);
    let file = ConfigFile::new(&config(echo, "/", Some((&cert, &key))));
    let gw = start_gateway_from(&file).await;
    let addr = gw.addr;
    let client = client_tls(&ca, &[&rustls::version::TLS13]);

    let seen = |s: &TlsStream| s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let before = tls_connect(addr, client.clone(), "localhost").await;
    assert_eq!(seen(&before), first.der);

    // Rotate: write the new key first, then the certificate, as a Secret
    // update would swap both.
    std::fs::write(&key, &second.key_pem).unwrap();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    let mut served = Vec::new();
    for _ in 0..100 {
        let s = tls_connect(addr, client.clone(), "localhost").await;
        served = seen(&s);
        if served == second.der {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(served, second.der, "the rotated certificate is served");
    // The connection made before the rotation was not disturbed.
    let text = scrape(gw.admin).await;
    assert!(text.sum("tidegate_config_reloads_total", &[("result", "ok")]) >= 1.0);
    drop(before);
}

/// The real binary: SIGHUP reloads the file while a client stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary() {
    let echo = start_echo().await;
    let file = ConfigFile::new(&config(echo, "/a", None));
    let mut gw = GatewayProc::start(&file).await;
    let addr = gw.addr;
    let mut old = ws_connect(addr, "/a").await;
    echo_text(&mut old, "before").await;

    file.write(&config(echo, "/b", None));
    gw.proc.signal("-HUP");
    // The reload is asynchronous to the signal: wait until /b is routed.
    let mut routed = false;
    for _ in 0..100 {
        let (resp, ws) = ws_try(addr, "localhost", "/b", &[]).await;
        if ws.is_some() {
            routed = true;
            break;
        }
        assert_eq!(resp.status, 404);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(routed, "SIGHUP made the new route live");
    echo_text(&mut old, "session kept across SIGHUP").await;
    assert!(
        gw.proc.child.try_wait().unwrap().is_none(),
        "SIGHUP did not end the process; stderr:\n{}",
        gw.log()
    );
}
