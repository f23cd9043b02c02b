//! The real `tidegate` binary: `run` draining on SIGTERM (Close 1001 to
//! every client, `/readyz` 503 meanwhile, exit 0) and `check-config` on good
//! and bad files and environment overrides (exit 64, every key path named).

use crate::support::*;
use std::process::Output;
use tidegate::config::raw::RawConfig;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn check_config(file: &ConfigFile, env: &[(&str, &str)]) -> Output {
    let mut cmd = tidegate_command();
    cmd.arg("check-config").arg("--config").arg(&file.path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tidegate check-config")
}

/// Route `r` to `upstream` with a secret header to it, a close timeout
/// and a drain spread short enough for a test.
fn good_config(upstream: &str) -> RawConfig {
    let mut raw = raw_config(&[upstream.to_string()]);
    raw.limits.close_timeout = "3s".into();
    raw.drain.grace = "20s".into();
    raw.drain.spread = "500ms".into();
    raw.upstreams[0]
        .add_headers
        .insert("X-Shared-Secret".into(), "hunter2".into());
    raw
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_accepts_a_good_file_and_prints_it_redacted() {
    let file = ConfigFile::new(&good_config("ws://127.0.0.1:9001"));
    let out = check_config(&file, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(stdout.contains("[[listeners]]"), "{stdout}");
    assert!(stdout.contains("ws://127.0.0.1:9001"), "{stdout}");
    assert!(
        !stdout.contains("hunter2"),
        "secrets are redacted: {stdout}"
    );
}

/// Values the file leaves to the start (worker count, a mux pool's size,
/// the connection cap under the open-file limit) are printed after it, as
/// comments, so the output is still the configuration.
#[test]
fn check_config_shows_what_is_derived_at_start() {
    let mut raw = good_config("ws://127.0.0.1:9001");
    raw.runtime.workers = 3;
    raw.routes[0].mode = "mux".into();
    let file = ConfigFile::new(&raw);
    let out = check_config(&file, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(
        stdout.contains("# upstreams.up.pool_size = 3 (unset: one mux connection per worker"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# limits.max_connections in force = "),
        "{stdout}"
    );
    let parsed: Result<toml::Value, _> = toml::from_str(&stdout);
    assert!(parsed.is_ok(), "still TOML: {parsed:?}");
}

#[test]
fn check_config_reports_every_problem_with_its_key() {
    let file = ConfigFile::with_text(
        r#"
[limits]
max_frame_size = 0

[[listeners]]
listen = "not an address"

[[upstreams]]
name = "echo"
endpoints = ["ws://127.0.0.1:9001"]

[[routes]]
upstream = "nonexistent"
"#,
    );
    let out = check_config(&file, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    for key in [
        "routes[0].upstream",
        "limits.max_frame_size",
        "listeners[0].listen",
    ] {
        assert!(stderr.contains(key), "stderr names {key}: {stderr}");
    }
}

#[test]
fn check_config_refuses_an_unknown_key() {
    let good = toml::to_string(&good_config("ws://127.0.0.1:9001")).expect("serialises");
    assert!(good.contains("[limits]\n"), "{good}");
    let typo = good.replace("[limits]\n", "[limits]\nmax_conections = 5\n");
    let file = ConfigFile::with_text(&typo);
    let out = check_config(&file, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    assert!(stderr.contains("max_conections"), "stderr: {stderr}");
}

#[test]
fn check_config_applies_environment_overrides() {
    let file = ConfigFile::new(&good_config("ws://127.0.0.1:9001"));
    let out = check_config(&file, &[("TIDEGATE_LIMITS__MAX_CONNECTIONS", "0")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    assert!(
        stderr.contains("limits.max_connections"),
        "stderr: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_with_1001_and_exits_0() {
    let echo = start_echo().await;
    let file = ConfigFile::new(&good_config(&ws_url(echo)));
    let mut gw = GatewayProc::start(&file).await;
    assert_eq!(field(&gw.listening, "name"), Some("main"));
    assert_eq!(field(&gw.listening, "tls"), Some("false"));
    let (addr, admin) = (gw.addr, gw.admin);

    let mut clients = Vec::new();
    for i in 0..3 {
        let mut ws = ws_connect(addr, "/").await;
        echo_text(&mut ws, &format!("client {i}")).await;
        clients.push(ws);
    }
    // One more client that completes the handshake and then never answers
    // anything: it holds the drain open until `limits.close_timeout`, so
    // readiness can be seen going down.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (resp, silent) = within("handshake", ws_handshake(tcp, "localhost", "/", &[])).await;
    assert_eq!(resp.status, 101);
    let mut silent = silent.unwrap();
    let silent_reader = tokio::spawn(async move {
        let mut seen = Vec::new();
        let _ = silent.read_to_end(&mut seen).await;
        seen
    });
    assert_eq!(http_get(admin, "/readyz").await.status, 200);

    gw.proc.signal("-TERM");

    // Readiness goes down while the drain is under way.
    within("/readyz turns 503 during the drain", async {
        loop {
            let status = http_get(admin, "/readyz").await.status;
            if status == 503 {
                break;
            }
            assert_eq!(status, 200);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;

    for (i, ws) in clients.iter_mut().enumerate() {
        let (code, reason) = expect_close(ws).await;
        assert_eq!(
            code, 1001,
            "client {i} is told the gateway is going away ({reason:?})"
        );
    }
    let seen = within("silent client is let go", silent_reader)
        .await
        .unwrap();
    assert!(
        seen.len() >= 4 && seen[0] == 0x88 && seen[2..4] == [0x03, 0xE9],
        "the silent client was sent Close 1001 too: {seen:02x?}"
    );

    let drained = std::time::Duration::from_secs(30);
    let status = within_for(
        drained,
        "tidegate exits after the drain",
        gw.proc.child.wait(),
    )
    .await
    .expect("wait for tidegate");
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{}", gw.log());
}
