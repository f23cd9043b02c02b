//! Zero-downtime reload through the real gateway: sessions open across a
//! reload keep working, new clients see the new routes, an invalid file
//! leaves the old configuration serving, and a certificate replaced on disk
//! is served to the next TLS handshake without any signal.

mod common;

use common::*;
use std::path::Path;
use tidegate::config::Config;
use tidegate::server;

fn config_text(upstream: std::net::SocketAddr, path: &str, tls: Option<(&Path, &Path)>) -> String {
    let tls = match tls {
        Some((cert, key)) => format!(
            "[[listeners.tls.certificates]]\ncert = {:?}\nkey = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
        None => String::new(),
    };
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "main"
listen = "127.0.0.1:0"
{tls}
[[upstreams]]
name = "echo"
endpoints = ["ws://{upstream}"]

[[routes]]
name = "r"
path = "{path}"
upstream = "echo"
"#
    )
}

async fn post_reload(admin: std::net::SocketAddr) -> HttpResponse {
    raw_request(
        admin,
        b"POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tidegate-Admin: reload\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_and_keeps_sessions() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidegate.toml");
    std::fs::write(&file, config_text(echo, "/a", None)).unwrap();
    let running = server::start(Config::load(Some(&file)).unwrap())
        .await
        .unwrap();
    let addr = running.listeners[0].addr;
    let admin = running.admin.unwrap();

    let mut old = ws_connect(addr, "/a/room").await;
    echo_text(&mut old, "before").await;

    std::fs::write(&file, config_text(echo, "/b", None)).unwrap();
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
    std::fs::write(&file, "[[routes]]\npath = \"/c\"\nupstream = \"nowhere\"\n").unwrap();
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

    let text = metrics(admin).await;
    assert_eq!(
        metric(&text, "tidegate_config_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "tidegate_config_reloads_total",
            &[("result", "rejected")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_changes_need_a_restart() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidegate.toml");
    std::fs::write(&file, config_text(echo, "/", None)).unwrap();
    let running = server::start(Config::load(Some(&file)).unwrap())
        .await
        .unwrap();
    let changed = config_text(echo, "/", None).replace("name = \"main\"", "name = \"other\"");
    std::fs::write(&file, changed).unwrap();
    let err = running.gateway.reload().await.unwrap_err().to_string();
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
    let file = dir.path().join("tidegate.toml");
    std::fs::write(&file, config_text(echo, "/", Some((&cert, &key)))).unwrap();
    let running = server::start(Config::load(Some(&file)).unwrap())
        .await
        .unwrap();
    let addr = running.listeners[0].addr;
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
    let admin = running.admin.unwrap();
    let text = metrics(admin).await;
    assert!(
        metric(&text, "tidegate_config_reloads_total", &[("result", "ok")]).unwrap_or(0.0) >= 1.0
    );
    drop(before);
}

/// The real binary: SIGHUP reloads the file while a client stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tidegate.toml");
    std::fs::write(&file, config_text(echo, "/a", None)).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidegate"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TIDEGATE_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .env("TIDEGATE_LOG", "warn")
        .arg("run")
        .arg("--config")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start tidegate run");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr: Option<std::net::SocketAddr> = None;
    while addr.is_none() {
        let line = within("start-up line", lines.next_line())
            .await
            .expect("read stdout")
            .expect("stdout open until start-up is announced");
        if line.starts_with("tidegate listening ") {
            addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .and_then(|a| a.parse().ok());
        }
    }
    let addr = addr.unwrap();
    let mut old = ws_connect(addr, "/a").await;
    echo_text(&mut old, "before").await;

    std::fs::write(&file, config_text(echo, "/b", None)).unwrap();
    let pid = child.id().expect("child pid").to_string();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hup.success());
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
        child.try_wait().unwrap().is_none(),
        "SIGHUP did not end the process"
    );
}
