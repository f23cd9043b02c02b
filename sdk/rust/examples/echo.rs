//! A mux application that echoes every message back: the upstream the
//! gateway's mux tests and the load test run against.
//!
//! ```text
//! cargo run -p tidegate-mux --example echo -- --listen 127.0.0.1:9000
//! ```
//!
//! Prints one line, `tidegate-mux echo listening addr=IP:PORT`, once it
//! listens. Accepts the first sub-protocol a client offered. A client whose
//! path is `/reject`, or whose query has `reject=STATUS`, is rejected with
//! that status (403 by default) and the body "rejected by app". A text
//! message `!close CODE [REASON]` makes the app close the session with that
//! code; `!flood N SIZE` makes it send N binary messages of SIZE bytes (a
//! client that does not read them is a slow consumer). On SIGTERM it stops
//! listening, sends GOAWAY on every mux connection and keeps serving until
//! the gateway has closed them (at most 35 s), then exits 0
//! (`server::run_until_signal`). `--reuse-port` binds with SO_REUSEPORT for
//! a side-by-side restart.
//! With `TIDEGATE_MUX_SECRET` set, only mux connections carrying that
//! secret (the gateway's `upstreams[].mux_secret`) are accepted.

use std::io::Write;
use std::process::ExitCode;

use tidegate_mux::server::{
    run_until_signal, Event, Incoming, MuxServer, SendError, Session, DRAIN_MAX,
};
use tidegate_mux::{AcceptBody, RejectBody};

#[tokio::main]
async fn main() -> ExitCode {
    let (listen, reuse_port) = match parse_args() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo: {e}\nusage: echo [--listen ADDR] [--reuse-port]");
            return ExitCode::from(64);
        }
    };
    // The gateway's `upstreams[].mux_secret`, when it sends one.
    let config = tidegate_mux::server::Config {
        gateway_secret: std::env::var("TIDEGATE_MUX_SECRET")
            .ok()
            .filter(|s| !s.is_empty()),
        reuse_port,
        ..tidegate_mux::server::Config::default()
    };
    let server = match MuxServer::bind_with(listen.as_str(), config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("tidegate-mux echo listening addr={}", server.local_addr());
    let _ = std::io::stdout().flush();
    // SIGTERM: stop listening, GOAWAY, serve until the gateway lets go.
    match run_until_signal(&server, DRAIN_MAX, serve).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: cannot watch signals: {e}");
            ExitCode::from(1)
        }
    }
}

/// `(listen address, reuse_port)`.
fn parse_args() -> Result<(String, bool), String> {
    let mut listen = "127.0.0.1:0".to_string();
    let mut reuse_port = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            "--reuse-port" => reuse_port = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((listen, reuse_port))
}

/// The status a client asked to be rejected with, if any.
fn wants_reject(path: &str, query: &str) -> Option<u16> {
    let asked = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "reject")
        .map(|(_, v)| {
            v.parse::<u16>()
                .ok()
                .filter(|s| (400..=599).contains(s))
                .unwrap_or(403)
        });
    match asked {
        Some(status) => Some(status),
        None if path == "/reject" => Some(403),
        None => None,
    }
}

async fn serve(incoming: Incoming) {
    if let Some(status) = wants_reject(&incoming.open.path, &incoming.open.query) {
        incoming.reject(RejectBody {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: "rejected by app".into(),
        });
        return;
    }
    let protocol = incoming.open.protocols.first().cloned();
    let mut session = incoming.accept(AcceptBody {
        protocol,
        headers: Vec::new(),
    });
    while let Some(event) = session.recv().await {
        let sent = match event {
            Event::Text(t) => match Command::parse(&t) {
                Some(Command::Close(code, reason)) => {
                    let _ = session.close(code, reason);
                    continue;
                }
                Some(Command::Flood(n, size)) => flood(&session, n, size).await,
                None => session.send_text(t).await,
            },
            Event::Binary(b) => session.send_binary(b).await,
            Event::Closed(_) => break,
        };
        if sent.is_err() {
            break;
        }
    }
}

/// A text message the echo answers with an action instead of an echo.
enum Command<'a> {
    /// `!close CODE [REASON]`
    Close(u16, &'a str),
    /// `!flood N SIZE`
    Flood(usize, usize),
}

impl<'a> Command<'a> {
    fn parse(text: &'a str) -> Option<Command<'a>> {
        if let Some(cmd) = text.strip_prefix("!close ") {
            let (code, reason) = cmd.split_once(' ').unwrap_or((cmd, ""));
            return Some(Command::Close(code.trim().parse().unwrap_or(1000), reason));
        }
        let mut args = text.strip_prefix("!flood ")?.split_whitespace();
        let n = args.next()?.parse().ok()?;
        let size = args.next()?.parse().ok()?;
        Some(Command::Flood(n, size))
    }
}

/// Send `n` binary messages of `size` bytes; stops early once the session
/// is closed (e.g. the gateway closed a slow consumer).
async fn flood(session: &Session, n: usize, size: usize) -> Result<(), SendError> {
    let payload = bytes::Bytes::from(vec![0x5a; size]);
    for _ in 0..n {
        session.send_binary(payload.clone()).await?;
    }
    Ok(())
}
