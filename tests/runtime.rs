//! The thread-per-core layout (`[runtime]`, issue #20) as an operator runs
//! it: the release binary with several workers, each accepting on its own
//! `SO_REUSEPORT` socket. What is per process must stay per process across
//! the workers: one reload reaches every worker's new connections, metrics
//! count every worker's traffic, and one SIGTERM drains every worker's
//! sessions with Close 1001 before the process exits 0.

use crate::support::*;
use tidegate::config::raw::RawConfig;

/// Workers in these tests: more than one, whatever the machine's cores.
const WORKERS: u64 = 3;

/// Connections per phase: with the kernel hashing each one to one of
/// `WORKERS` sockets, the chance that all land on a single worker is
/// 3 × (1/3)^24, about 1e-11.
const CLIENTS: usize = 24;

fn config(upstream: std::net::SocketAddr, path: &str) -> RawConfig {
    let mut raw = raw_config(&[ws_url(upstream)]);
    raw.routes[0].path = path.into();
    raw.runtime.layout = "thread_per_core".into();
    raw.runtime.workers = WORKERS;
    raw
}

/// Accepted connections per worker, from `/metrics`.
async fn accepted_per_worker(admin: std::net::SocketAddr) -> Vec<f64> {
    let text = scrape(admin).await;
    (0..WORKERS)
        .map(|w| {
            text.get(
                "tidegate_worker_accepted_total",
                &[("worker", &w.to_string())],
            )
            .unwrap_or(0.0)
        })
        .collect()
}

async fn connect_all(addr: std::net::SocketAddr, path: &str) -> Vec<Ws<tokio::net::TcpStream>> {
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut ws = ws_connect(addr, path).await;
        echo_text(&mut ws, &format!("client {i}")).await;
        clients.push(ws);
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_per_core_workers_share_reload_metrics_and_drain() {
    let echo = start_echo().await;
    let file = ConfigFile::new(&config(echo, "/a"));
    let mut gw = GatewayProc::start(&file).await;
    let (addr, admin) = (gw.addr, gw.admin);

    // Connections spread over the workers, and every worker relays.
    let mut before = connect_all(addr, "/a/room").await;
    let spread = accepted_per_worker(admin).await;
    assert_eq!(spread.iter().sum::<f64>(), CLIENTS as f64, "{spread:?}");
    assert!(
        spread.iter().filter(|&&n| n > 0.0).count() >= 2,
        "connections reached more than one worker: {spread:?}"
    );
    // Metrics: one registry for every worker's sessions.
    let text = scrape(admin).await;
    assert_eq!(
        text.sum(
            "tidegate_messages_total",
            &[("direction", "client_to_upstream")]
        ),
        CLIENTS as f64,
        "{}",
        text.text()
    );

    // One reload, seen by every worker's next connections.
    file.write(&config(echo, "/b"));
    let resp = post_reload(admin).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body_text());
    let mut after = connect_all(addr, "/b/room").await;
    for _ in 0..CLIENTS {
        let (resp, ws) = ws_try(addr, "localhost", "/a/room", &[]).await;
        assert!(ws.is_none());
        assert_eq!(resp.status, 404, "the old route is gone on every worker");
    }
    let spread = accepted_per_worker(admin).await;
    assert!(
        spread.iter().all(|&n| n > 0.0),
        "every worker accepted by now: {spread:?}"
    );
    for (i, ws) in before.iter_mut().enumerate() {
        echo_text(ws, &format!("session {i} kept across the reload")).await;
    }

    // One SIGTERM drains every worker's sessions.
    gw.proc.signal("-TERM");
    for (i, ws) in before.iter_mut().chain(after.iter_mut()).enumerate() {
        let (code, reason) = expect_close(ws).await;
        assert_eq!(code, 1001, "client {i} hears 1001 ({reason:?})");
    }
    let status = within_for(
        std::time::Duration::from_secs(30),
        "tidegate exits after the drain",
        gw.proc.child.wait(),
    )
    .await
    .expect("wait for tidegate");
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{}", gw.log());
}

/// Mux sessions in these tests: enough that the kernel's hash spreads
/// them over the workers nearly evenly (±5 per worker is one standard
/// deviation), so that few of them exceed the imbalance a session's own
/// worker may cause (`mux::pool::choose`) and cross.
const MUX_CLIENTS: usize = 120;

/// Mux connections are dealt round the workers, and a session takes a
/// connection of its own worker. With `pool_size` unset the pool has one
/// connection per worker, and at most a quarter of the sessions are
/// placed across threads (2–11 of 120 in six runs: those that would have
/// made their worker's connection a quarter busier than the least busy
/// one), where placing them by load alone would cross about two thirds.
/// With one connection the sessions of the workers without it all cross:
/// the counter moves when locality is lost. Every echo arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_sessions_use_a_connection_of_their_own_worker() {
    let app = EchoApp::start("127.0.0.1:0").await;
    for (pool_size, crossing) in [(None, false), (Some(1), true)] {
        let mut raw = mux_config(&[app.url()], 1);
        raw.upstreams[0].pool_size = pool_size;
        let slots = pool_size.unwrap_or(WORKERS);
        raw.runtime.layout = "thread_per_core".into();
        raw.runtime.workers = WORKERS;
        let file = ConfigFile::new(&raw);
        let gw = GatewayProc::start(&file).await;
        // Every slot up first: a session finding its own worker's slot
        // still connecting takes another (and is rightly counted).
        within("every mux connection up", async {
            while scrape(gw.admin)
                .await
                .sum("tidegate_mux_connections_up", &[])
                < slots as f64
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        let mut clients = Vec::new();
        for i in 0..MUX_CLIENTS {
            let mut ws = ws_connect(gw.addr, "/room").await;
            echo_text(&mut ws, &format!("client {i}")).await;
            clients.push(ws);
        }
        let spread = accepted_per_worker(gw.admin).await;
        assert!(
            spread.iter().filter(|&&n| n > 0.0).count() >= 2,
            "clients reached more than one worker: {spread:?}"
        );
        let text = scrape(gw.admin).await;
        assert_eq!(
            text.sum("tidegate_mux_connections_up", &[]),
            slots as f64,
            "pool_size {pool_size:?}: connections"
        );
        assert_eq!(spread.iter().sum::<f64>(), MUX_CLIENTS as f64);
        let crossed = text.sum(
            "tidegate_mux_cross_worker_sessions_total",
            &[("upstream", "up")],
        );
        if crossing {
            // Worker 0 runs the only connection: every client of the
            // other workers crossed.
            let others: f64 = spread[1..].iter().sum();
            assert_eq!(crossed, others, "pool_size 1: {spread:?}\n{text}");
            assert!(crossed > (MUX_CLIENTS / 4) as f64, "{crossed}: {spread:?}");
        } else {
            assert!(
                crossed <= (MUX_CLIENTS / 4) as f64,
                "pool_size {pool_size:?}: {crossed} crossed; {spread:?}\n{text}"
            );
        }
        drop(clients);
    }
}
