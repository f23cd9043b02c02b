//! Fan-out across gateway instances over a real `nats-server` (issue 18):
//! three release binaries share one NATS; subscribers on each, publishes
//! through each instance's HTTP publish API and through a mux
//! application's PUBLISH on one of them. Every subscriber receives every
//! message exactly once and each publisher's messages in order; a NATS
//! restart is survived (interest re-established, the gap counted); a
//! stopped gateway does not stop the others. Without a backplane, fan-out
//! stays local (tests/fanout.rs).
//!
//! Subscribers are passthrough clients that the upstream subscribes in its
//! 101 (`X-Tidegate-Subscribe: room`); the mux application is the tests'
//! own frame-by-frame peer (`support::mux_app::FakeApp`, extension
//! `fanout`), so the test depends on no SDK.

use crate::support::mux_app::FakeApp;
use crate::support::*;
use fastwebsockets::{OpCode, Role, WebSocket};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tidegate_mux::codec;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const TOKEN: &str = "publish-token-for-the-nats-tests";
const CHANNEL: &str = "room";

/// `nats-server` on a loopback port (Debian package, installed by
/// scripts/test.sh); killed on drop.
struct Nats {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl Nats {
    async fn start() -> Nats {
        let port = closed_port().await.port();
        let mut nats = Nats { port, child: None };
        nats.restart().await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)start it on the same port and wait until it accepts.
    async fn restart(&mut self) {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("nats-server"));
        let child = tokio::process::Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {}: {e} (Debian package nats-server)", bin.display())
            });
        self.child = Some(child);
        let port = self.port;
        within("nats-server accepts connections", async move {
            while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// SIGKILL: the connections drop at once, nothing is flushed.
    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.expect("kill nats-server");
        }
    }
}

/// An upstream that accepts every WebSocket and subscribes the session to
/// [`CHANNEL`] in its 101, then only answers pings.
async fn subscribing_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = tokio::io::BufReader::new(tcp);
                let Some(head) = read_head_bytes(&mut reader).await else {
                    return;
                };
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut headers);
                if req.parse(&head).is_err() {
                    return;
                }
                let key = owned_headers(req.headers);
                let key = header_of(&key, "sec-websocket-key").unwrap_or_default();
                let reply = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\
                     X-Tidegate-Subscribe: {CHANNEL}\r\n\r\n",
                    accept_for(key)
                );
                if reader.get_mut().write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                let mut ws = WebSocket::after_handshake(reader, Role::Server);
                while ws.read_frame().await.is_ok() {}
            });
        }
    });
    addr
}

/// One gateway binary with the publish API and the NATS backplane.
struct Instance {
    proc: Spawned,
    addr: SocketAddr,
    admin: SocketAddr,
    publish: SocketAddr,
    _dir: ConfigFile,
}

impl Instance {
    async fn start(upstream: SocketAddr, nats: &str, required: bool) -> Instance {
        Instance::start_with(upstream, nats, required, None).await
    }

    /// `app`: also a mux route `/app` to this application (one pool
    /// connection), whose PUBLISH frames this instance accepts.
    async fn start_with(
        upstream: SocketAddr,
        nats: &str,
        required: bool,
        app: Option<SocketAddr>,
    ) -> Instance {
        let file = ConfigFile::with_text("");
        let app_route = app.map_or_else(String::new, |app| {
            format!(
                r#"
[[upstreams]]
name = "app"
endpoints = ["ws://{app}"]
pool_size = 1

[[routes]]
name = "app"
path = "/app"
upstream = "app"
mode = "mux"
"#
            )
        });
        let token = file.dir().join("publish.token");
        std::fs::write(&token, TOKEN).expect("write token");
        file.write_text(&format!(
            r#"
[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "main"
listen = "127.0.0.1:0"

[[upstreams]]
name = "up"
endpoints = ["ws://{upstream}"]

[[routes]]
name = "r"
upstream = "up"

[fanout.publish]
listen = "127.0.0.1:0"
token_file = "{}"

[fanout.backplane]
kind = "nats"
servers = ["{nats}"]
required = {required}
connect_timeout = "500ms"
reconnect_max = "200ms"
{app_route}"#,
            token.display()
        ));
        let mut cmd = tidegate_command();
        cmd.arg("run")
            .arg("--config")
            .arg(file.dir().join("tidegate.toml"))
            .stderr(Stdio::null());
        let mut proc = Spawned::spawn(cmd);
        let addr = addr_field(&proc.line_starting("tidegate listening ").await);
        let admin = addr_field(&proc.line_starting("tidegate admin ").await);
        let publish = addr_field(&proc.line_starting("tidegate fanout-publish ").await);
        Instance {
            proc,
            addr,
            admin,
            publish,
            _dir: file,
        }
    }

    /// `POST /publish/room` with a text body; returns the HTTP status.
    async fn publish(&self, text: &str) -> u16 {
        let req = format!(
            "POST /publish/{CHANNEL} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        raw_request(self.publish, req.as_bytes()).await.status
    }

    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        scrape(self.admin).await.sum(name, labels)
    }
}

/// A subscribed client: every text message it receives, in order.
struct Client {
    rx: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Client {
    async fn connect(gw: &Instance) -> Client {
        let mut ws = ws_connect(gw.addr, "/").await;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(f) = ws.read_frame().await {
                match f.opcode {
                    OpCode::Text => {
                        let text = String::from_utf8_lossy(&f.payload).into_owned();
                        if tx.send(text).is_err() {
                            return;
                        }
                    }
                    OpCode::Close => return,
                    _ => {}
                }
            }
        });
        Client {
            rx,
            seen: Vec::new(),
        }
    }

    /// Receive until `done` holds for what was seen since `from`.
    async fn until(&mut self, what: &str, from: usize, done: impl Fn(&[String]) -> bool) {
        within_for(Duration::from_secs(30), what, async {
            while !done(&self.seen[from..]) {
                let m = self.rx.recv().await.expect("client connection open");
                self.seen.push(m);
            }
        })
        .await;
    }
}

/// Each publisher's messages `tag-P-N` among `seen`: exactly `0..count`,
/// each once, in order.
fn assert_exactly_once_in_order(seen: &[String], tag: &str, publishers: &[usize], count: usize) {
    let mut by: HashMap<usize, Vec<usize>> = HashMap::new();
    for m in seen {
        let mut parts = m.splitn(3, '-');
        if parts.next() != Some(tag) {
            continue;
        }
        let p = parts
            .next()
            .and_then(|p| p.parse().ok())
            .expect("publisher");
        let n = parts.next().and_then(|n| n.parse().ok()).expect("number");
        by.entry(p).or_default().push(n);
    }
    for p in publishers {
        let want: Vec<usize> = (0..count).collect();
        assert_eq!(
            by.get(p).map(Vec::as_slice).unwrap_or_default(),
            want.as_slice(),
            "{tag}: publisher {p}'s messages, each once and in order"
        );
    }
    let total: usize = by.values().map(Vec::len).sum();
    assert_eq!(total, publishers.len() * count, "{tag}: no stray messages");
}

/// Every publisher sends `count` messages `tag-P-N`, the publishers
/// concurrently, each in sequence.
async fn publish_all(gws: &[Instance], publishers: &[usize], tag: &str, count: usize) {
    let sends = publishers.iter().map(|&p| {
        let gw = &gws[p];
        async move {
            for n in 0..count {
                assert_eq!(gw.publish(&format!("{tag}-{p}-{n}")).await, 200);
            }
        }
    });
    futures_util::future::join_all(sends).await;
}

fn has_count(tag: &str, want: usize) -> impl Fn(&[String]) -> bool + '_ {
    move |seen| seen.iter().filter(|m| m.starts_with(tag)).count() >= want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_deliver_once_in_order_across_a_nats_restart() {
    let _turn = serial().await;
    let mut nats = Nats::start().await;
    let upstream = subscribing_upstream().await;
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(Instance::start(upstream, &nats.url(), true).await);
    }
    for gw in &gws {
        wait_ready(gw.admin).await;
    }
    // Two subscribers per instance; each instance subscribes to the
    // channel's subject once.
    let mut clients = Vec::new();
    for gw in &gws {
        for _ in 0..2 {
            clients.push((gw.admin, Client::connect(gw).await));
        }
    }
    for gw in &gws {
        wait_metric(gw.admin, "tidegate_fanout_backplane_subjects", &[], 1.0).await;
    }

    // 1. Every publisher on every instance, every subscriber everywhere.
    let all = [0, 1, 2];
    publish_all(&gws, &all, "a", 40).await;
    for (_, c) in &mut clients {
        c.until("phase a: 120 messages", 0, has_count("a-", 120))
            .await;
        assert_exactly_once_in_order(&c.seen, "a", &all, 40);
    }
    for gw in &gws {
        let out = gw
            .metric(
                "tidegate_fanout_backplane_messages_total",
                &[("direction", "out")],
            )
            .await;
        assert_eq!(out, 40.0, "each instance published its own 40 to NATS");
    }

    // 2. NATS goes away: local delivery goes on, cross-instance publishes
    //    are dropped and counted, /readyz (required = true) says 503.
    nats.kill().await;
    for gw in &gws {
        wait_metric(gw.admin, "tidegate_fanout_backplane_connected", &[], 0.0).await;
    }
    for gw in &gws {
        assert_eq!(http_get(gw.admin, "/readyz").await.status, 503);
    }
    publish_all(&gws, &all, "gap", 5).await;
    for (i, (_, c)) in clients.iter_mut().enumerate() {
        let own = i / 2;
        let from = c.seen.len();
        c.until(
            "own instance's messages during the outage",
            from,
            has_count("gap-", 5),
        )
        .await;
        assert!(c.seen[from..]
            .iter()
            .all(|m| m.starts_with(&format!("gap-{own}-"))));
    }
    for gw in &gws {
        let drops = gw
            .metric(
                "tidegate_fanout_backplane_drops_total",
                &[("reason", "disconnected")],
            )
            .await;
        assert_eq!(drops, 5.0, "the gap is counted");
    }

    // 3. NATS is back: every instance reconnects and re-subscribes.
    nats.restart().await;
    for gw in &gws {
        wait_metric(gw.admin, "tidegate_fanout_backplane_connected", &[], 1.0).await;
        wait_metric(
            gw.admin,
            "tidegate_fanout_backplane_resubscribes_total",
            &[],
            1.0,
        )
        .await;
        wait_ready(gw.admin).await;
    }
    // The server may see an instance's SUB a moment after another's first
    // publish (at-most-once): probe until every instance hears every other.
    probe_until_connected(&gws, &mut clients).await;
    let from: Vec<usize> = clients.iter().map(|(_, c)| c.seen.len()).collect();
    publish_all(&gws, &all, "b", 20).await;
    for ((_, c), from) in clients.iter_mut().zip(&from) {
        c.until("phase b: 60 messages", *from, has_count("b-", 60))
            .await;
        assert_exactly_once_in_order(&c.seen[*from..], "b", &all, 20);
    }

    // 4. One gateway stops; the two others keep delivering to each other.
    let stopped = gws.pop().expect("three instances");
    stopped.proc.signal("-KILL");
    clients.truncate(4);
    let two = [0, 1];
    publish_all(&gws, &two, "c", 20).await;
    for (_, c) in &mut clients {
        let from = c.seen.len();
        c.until("phase c: 40 messages", from, has_count("c-", 40))
            .await;
        assert_exactly_once_in_order(&c.seen[from..], "c", &two, 20);
    }
}

/// A mux application connected to instance A PUBLISHes (one frame per
/// message, as an SDK does) while an HTTP client publishes through B at
/// the same time: the two subscribers on each of A, B and C receive both
/// publishers' messages, each exactly once and in its publisher's order.
/// A's subscribers get the application's messages from A itself, B's and
/// C's only through NATS — so the test fails if a mux PUBLISH is not
/// forwarded to the backplane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_publish_on_one_instance_and_http_on_another_reach_every_instance() {
    const COUNT: usize = 60;
    let _turn = serial().await;
    let nats = Nats::start().await;
    let upstream = subscribing_upstream().await;
    let mut app = FakeApp::start_with(Some("fanout")).await;
    let mut gws = vec![Instance::start_with(upstream, &nats.url(), true, Some(app.addr)).await];
    let conn = app.conn().await;
    assert_eq!(
        conn.offered.as_deref(),
        Some("fanout"),
        "instance A offers extension fanout to the application"
    );
    for _ in 0..2 {
        gws.push(Instance::start(upstream, &nats.url(), true).await);
    }
    for gw in &gws {
        wait_ready(gw.admin).await;
    }
    let mut clients = Vec::new();
    for gw in &gws {
        for _ in 0..2 {
            clients.push(Client::connect(gw).await);
        }
    }
    for gw in &gws {
        wait_metric(gw.admin, "tidegate_fanout_backplane_subjects", &[], 1.0).await;
    }

    // Publisher 0: the application on A; publisher 1: HTTP through B. Both
    // run at once, interleaving on every instance.
    let mux = async {
        for n in 0..COUNT {
            let text = format!("x-0-{n}");
            conn.send(&[codec::Frame::publish(CHANNEL, true, text.as_bytes(), None)]);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let http = async {
        for n in 0..COUNT {
            assert_eq!(gws[1].publish(&format!("x-1-{n}")).await, 200);
        }
    };
    tokio::join!(mux, http);
    for c in &mut clients {
        c.until("both publishers' messages", 0, has_count("x-", 2 * COUNT))
            .await;
        assert_exactly_once_in_order(&c.seen, "x", &[0, 1], COUNT);
    }
    let a = &gws[0];
    assert_eq!(
        a.metric("tidegate_fanout_publishes_total", &[("source", "mux")])
            .await,
        COUNT as f64,
        "A accepted the application's PUBLISH frames"
    );
    let out = [("direction", "out")];
    let forwarded = "tidegate_fanout_backplane_messages_total";
    for (gw, want, what) in [
        (a, COUNT, "A forwarded each mux publish once"),
        (&gws[1], COUNT, "B forwarded each HTTP publish once"),
        (&gws[2], 0, "C published nothing"),
    ] {
        assert_eq!(gw.metric(forwarded, &out).await, want as f64, "{what}");
    }
}

/// Publish `probe-P-K` from every instance until every client has a probe
/// from every instance; then the interest of all is known to NATS.
async fn probe_until_connected(gws: &[Instance], clients: &mut [(SocketAddr, Client)]) {
    within_for(
        Duration::from_secs(30),
        "probes cross every instance",
        async {
            for k in 0.. {
                for (p, gw) in gws.iter().enumerate() {
                    assert_eq!(gw.publish(&format!("probe-{p}-{k}")).await, 200);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut all = true;
                for (_, c) in clients.iter_mut() {
                    while let Ok(m) = c.rx.try_recv() {
                        c.seen.push(m);
                    }
                    all &= (0..gws.len())
                        .all(|p| c.seen.iter().any(|m| m.starts_with(&format!("probe-{p}-"))));
                }
                if all {
                    return;
                }
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_nats_leaves_the_gateway_serving_locally() {
    let nowhere = format!("nats://{}", refused_port().await);
    let upstream = subscribing_upstream().await;
    // required = false: ready without NATS, fan-out degraded to local.
    let gw = Instance::start(upstream, &nowhere, false).await;
    wait_ready(gw.admin).await;
    let mut c = Client::connect(&gw).await;
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 1.0).await;
    assert_eq!(gw.publish("local-0-0").await, 200);
    c.until("the local delivery", 0, has_count("local-", 1))
        .await;
    assert_eq!(
        gw.metric("tidegate_fanout_backplane_connected", &[]).await,
        0.0
    );
    wait_metric(
        gw.admin,
        "tidegate_fanout_backplane_drops_total",
        &[("reason", "disconnected")],
        1.0,
    )
    .await;
    // required = true: not ready until NATS is there.
    let strict = Instance::start(upstream, &nowhere, true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(http_get(strict.admin, "/readyz").await.status, 503);
}
