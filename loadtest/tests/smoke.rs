//! The harness end to end: every scenario against the bundled echo server,
//! over real loopback sockets, checking the JSON a user or CI would read.
//! Runs are a second or two; no timing is asserted.

mod common;

use std::process::Command;

use common::{EchoServer, BIN};
use serde_json::Value;

fn run_json(args: &[&str]) -> Value {
    let out = Command::new(BIN).args(args).output().expect("run loadtest");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn echo_smoke_produces_messages() {
    let server = EchoServer::start();
    let url = format!("ws://{}/", server.addr);
    let v = run_json(&[
        "echo",
        "--url",
        &url,
        "--connections",
        "4",
        "--duration",
        "2",
        "--json",
    ]);
    assert_eq!(v["scenario"], "echo");
    assert!(v["completed"].as_u64().unwrap() > 0, "{v}");
    assert!(v["latency"]["p99_us"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["errors"].as_object().unwrap().len(), 0, "{v}");
}

#[test]
fn pipelined_text_echo_and_report() {
    let server = EchoServer::start();
    let url = format!("ws://{}/", server.addr);
    let dir = std::env::temp_dir().join(format!("tidegate-loadtest-report-{}", std::process::id()));
    let v = run_json(&[
        "--json",
        "--report",
        dir.to_str().unwrap(),
        "echo",
        "--url",
        &url,
        "-c",
        "2",
        "--in-flight",
        "16",
        "--text",
        "--size",
        "3000",
        "--warmup",
        "0",
        "--duration",
        "1",
    ]);
    assert!(v["completed"].as_u64().unwrap() > 0, "{v}");
    for f in ["report.md", "latency.svg", "throughput.svg"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        assert!(!text.is_empty(), "{f} empty");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rate_connect_and_idle() {
    let server = EchoServer::start();
    let url = format!("ws://{}/", server.addr);
    let pid = server.pid().to_string();
    let v = run_json(&[
        "--json",
        "rate",
        "--url",
        &url,
        "-c",
        "2",
        "--rate",
        "200",
        "--warmup",
        "0",
        "--duration",
        "1",
        "--source-ip-count",
        "2",
        "--pid",
        &pid,
    ]);
    // 2 connections × 200/s × 1 s, give or take the edges of the window.
    let done = v["completed"].as_u64().unwrap();
    assert!((300..=500).contains(&done), "{v}");
    assert_eq!(v["extra"]["unanswered"], 0, "{v}");
    // The watched server: its listener and the two clients' sockets.
    let server_proc = &v["extra"]["processes"][0];
    assert_eq!(server_proc["pid"].as_u64().unwrap().to_string(), pid);
    assert!(server_proc["socket_fds"].as_u64().unwrap() >= 3, "{v}");
    assert!(server_proc["rss_bytes"].as_u64().unwrap() > 0, "{v}");

    let v = run_json(&[
        "--json",
        "connect",
        "--url",
        &url,
        "--total",
        "100",
        "--message",
    ]);
    assert_eq!(v["completed"], 100, "{v}");

    let v = run_json(&[
        "--json",
        "idle",
        "--url",
        &url,
        "-c",
        "50",
        "--hold",
        "0.2s",
        "--pid",
        &pid,
        "--source-ip-count",
        "2",
    ]);
    assert_eq!(v["extra"]["connected"], 50, "{v}");
    assert_eq!(
        v["extra"]["rss"][0]["pid"].as_u64().unwrap().to_string(),
        pid
    );
}

#[test]
fn compare_two_targets() {
    let server = EchoServer::start();
    let a = format!("a=ws://{}/@{}", server.addr, server.pid());
    let b = format!("b=ws://{}/other", server.addr);
    let v = run_json(&[
        "--json",
        "compare",
        "--target",
        &a,
        "--target",
        &b,
        "--rounds",
        "2",
        "--pause",
        "0s",
        "echo",
        "-c",
        "2",
        "--warmup",
        "0",
        "--duration",
        "0.5",
    ]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["ratio"], 1.0);
    assert_eq!(rows[0]["runs"].as_array().unwrap().len(), 2);
    assert!(rows[0]["cpu_us_per_unit"].as_f64().is_some(), "{v}");
    assert!(rows[1]["cpu_us_per_unit"].is_null(), "{v}");
}

/// A wss:// storm with resumption on resumes every connection except those
/// of the first wave: 64 connections finish and start again together, so a
/// client that kept only rustls' default 8 tickets per server would fall
/// back to full handshakes for most of them.
#[test]
fn wss_storm_resumes_after_the_first_wave() {
    let dir = std::env::temp_dir().join(format!("tidegate-loadtest-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let server = EchoServer::start_with(&[
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ]);
    let url = format!("wss://{}/", server.addr);
    let (total, concurrency) = (640u64, 64u64);
    let run = |resumption: &str| {
        run_json(&[
            "--json",
            "--workers",
            "1",
            "connect",
            "--url",
            &url,
            "--insecure",
            "--total",
            &total.to_string(),
            "--concurrency",
            &concurrency.to_string(),
            "--resumption",
            resumption,
        ])
    };
    let on = run("on");
    assert_eq!(on["completed"], total, "{on}");
    let resumed = on["extra"]["tls_resumed"].as_u64().unwrap();
    assert!(
        resumed >= total - concurrency,
        "{resumed} of {total} resumed: {on}"
    );
    let off = run("off");
    assert_eq!(off["completed"], total, "{off}");
    assert_eq!(off["extra"]["tls_resumed"], 0, "{off}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_remote_targets() {
    let out = Command::new(BIN)
        .args(["echo", "--url", "ws://192.168.1.10:80/", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}
