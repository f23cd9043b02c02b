//! The real `tidegate` binary: `run` draining on SIGTERM (Close 1001 to
//! every client, `/readyz` 503 meanwhile, exit 0) and `check-config` on good
//! and bad files and environment overrides (exit 64, every key path named).

mod common;

use common::*;
use std::path::Path;
use std::process::{Output, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_tidegate");

/// A command for the binary without any `TIDEGATE_` variable of ours.
fn tidegate() -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("TIDEGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("TIDEGATE_LOG", "warn");
    cmd
}

fn check_config(file: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = tidegate();
    cmd.arg("check-config").arg("--config").arg(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tidegate check-config")
}

fn good_config(upstream: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[limits]
close_timeout = "3s"

[drain]
grace = "20s"
spread = "500ms"

[[listeners]]
name = "main"
listen = "127.0.0.1:0"

[[upstreams]]
name = "echo"
endpoints = ["{upstream}"]
add_headers = {{ X-Shared-Secret = "hunter2" }}

[[routes]]
name = "echo"
path = "/"
upstream = "echo"
"#
    )
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config file");
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_accepts_a_good_file_and_prints_it_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "good.toml", &good_config("ws://127.0.0.1:9001"));
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

#[test]
fn check_config_reports_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.toml",
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
    let dir = tempfile::tempdir().unwrap();
    let mut config = good_config("ws://127.0.0.1:9001");
    config = config.replace("[limits]\n", "[limits]\nmax_conections = 5\n");
    let file = write(dir.path(), "typo.toml", &config);
    let out = check_config(&file, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    assert!(stderr.contains("max_conections"), "stderr: {stderr}");
}

#[test]
fn check_config_applies_environment_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "good.toml", &good_config("ws://127.0.0.1:9001"));
    let out = check_config(&file, &[("TIDEGATE_LIMITS__MAX_CONNECTIONS", "0")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    assert!(
        stderr.contains("limits.max_connections"),
        "stderr: {stderr}"
    );
}

/// The value of `key=` in a start-up line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_with_1001_and_exits_0() {
    let echo = start_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "run.toml", &good_config(&ws_url(echo)));
    let stderr_log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = tokio::process::Command::from({
        let mut cmd = tidegate();
        cmd.env("TIDEGATE_LOG", "info");
        cmd
    })
    .arg("run")
    .arg("--config")
    .arg(&file)
    .stdout(Stdio::piped())
    .stderr(stderr_log)
    .kill_on_drop(true)
    .spawn()
    .expect("start tidegate run");

    // Start-up lines give the bound addresses.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut admin) = (None, None);
    while addr.is_none() || admin.is_none() {
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("start-up lines within 30 s")
            .expect("read stdout")
            .expect("stdout open until start-up is announced");
        if line.starts_with("tidegate listening ") {
            assert_eq!(field(&line, "name"), Some("main"));
            assert_eq!(field(&line, "tls"), Some("false"));
            addr = field(&line, "addr").and_then(|a| a.parse().ok());
        } else if line.starts_with("tidegate admin ") {
            admin = field(&line, "addr").and_then(|a| a.parse().ok());
        }
    }
    let (addr, admin): (std::net::SocketAddr, std::net::SocketAddr) =
        (addr.unwrap(), admin.unwrap());

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

    let pid = child.id().expect("child running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());

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

    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("tidegate exits after the drain")
        .expect("wait for tidegate");
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{log}");
}
