//! What a newcomer reads from the real `tidegate` binary: every `--help`
//! page (titles, listings, a description for every flag), and the `proxy`
//! one-liner's account of its path rule — the mapping printed at start and
//! the upstream URL named when the upstream refuses the upgrade.

#[path = "help/walk.rs"]
mod walk;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_tidegate");

#[test]
fn every_help_page_has_the_right_title() {
    walk::check(
        BIN,
        &[
            ("", "A WebSocket edge gateway and reverse proxy"),
            (
                "run",
                "Serve with a configuration file (plus TIDEGATE_ environment overrides)",
            ),
            (
                "check-config",
                "Validate a configuration: print it (secrets redacted) or every error",
            ),
            (
                "demo",
                "A gateway with an embedded echo upstream on /echo, to try at once",
            ),
            (
                "proxy",
                "A reverse proxy from flags alone: one route `/` to one upstream",
            ),
            (
                "echo",
                "A WebSocket echo server (the demo upstream), for tests and benchmarks",
            ),
            ("version", "Print the version"),
        ],
    );
}

#[test]
fn proxy_help_states_the_path_rule_with_an_example() {
    let out = Command::new(BIN)
        .args(["proxy", "--help"])
        .output()
        .expect("run tidegate proxy --help");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("`--upstream ws://127.0.0.1:15674/ws`")
            && text.contains("`ws://127.0.0.1:15674/ws/ws`"),
        "{text}"
    );
}

/// An upstream that answers every request with a 404, as an application
/// does for a path it does not serve.
fn not_found_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let port = listener.local_addr().expect("upstream addr").port();
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = tcp.read(&mut head);
            let _ = std::io::Write::write_all(
                &mut tcp,
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    port
}

#[test]
fn proxy_prints_the_mapping_and_names_the_refused_url_without_the_query() {
    let port = not_found_upstream();
    let mut child = Command::new(BIN)
        .args(["proxy", "--listen", "127.0.0.1:0", "--workers", "1"])
        .arg("--upstream")
        .arg(format!("ws://127.0.0.1:{port}/ws"))
        .env("TIDEGATE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tidegate proxy");
    // Stderr is read on a thread so the child never blocks on a full pipe.
    let stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .unwrap_or_else(|| panic!("no addr= in {line:?}"))
        .to_string();

    let mut client = std::net::TcpStream::connect(&addr).expect("connect to the gateway");
    std::io::Write::write_all(
        &mut client,
        format!(
            "GET /ws?token=s3cret HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("send the upgrade");
    let mut status = String::new();
    BufReader::new(&client)
        .read_line(&mut status)
        .expect("read the status line");
    assert!(status.contains(" 404"), "the 404 is relayed: {status:?}");

    let timeout = std::time::Duration::from_secs(10);
    let mut seen = Vec::new();
    let refused = loop {
        match rx.recv_timeout(timeout) {
            Ok(l) if l.contains("refused") => break l,
            Ok(l) => seen.push(l),
            Err(_) => panic!("no refusal logged within {timeout:?}; stderr: {seen:#?}"),
        }
    };
    let _ = child.kill();
    let _ = child.wait();

    let mapping = format!("client path /x → ws://127.0.0.1:{port}/ws/x");
    assert!(
        seen.iter().any(|l| l.contains(&mapping)),
        "start-up prints {mapping:?}: {seen:#?}"
    );
    assert!(
        refused.contains(&format!("ws://127.0.0.1:{port}/ws/ws ")),
        "the refusal names the URL requested upstream: {refused}"
    );
    assert!(
        !refused.contains("s3cret"),
        "the query stays out of the log: {refused}"
    );
}
