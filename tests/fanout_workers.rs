//! Fan-out across workers (issue #17, `src/fanout/worker.rs`): with
//! `runtime.workers = 2` the clients are spread over both workers by
//! their `SO_REUSEPORT` sockets, the publishing mux connection lives on
//! one of them, and the subscribers of the other get each publish through
//! that worker's batch. Every subscriber must get every message, in
//! publish order.

use crate::fanout::{connect_subscribers, publish_and_read_all, subscribing_app};
use crate::support::mux_app::FakeApp;
use crate::support::*;

const CLIENTS: usize = 600;
const MESSAGES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_on_either_worker_gets_every_publish_in_order() {
    let _serial = serial().await;
    raise_nofile();
    let mut app = FakeApp::start_with(Some("fanout")).await;
    let mut raw = mux_config(&[format!("ws://{}", app.addr)], 2);
    raw.runtime.workers = 2;
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let publisher = subscribing_app(&mut app, 2, "wide").await;

    let clients = connect_subscribers(gw.addr, CLIENTS, gw.admin).await;
    let m = scrape(gw.admin).await;
    for worker in ["0", "1"] {
        assert!(
            m.sum("tidegate_worker_accepted_total", &[("worker", worker)]) > 0.0,
            "clients on worker {worker} (the kernel spreads {CLIENTS} connections)"
        );
    }

    let clients = publish_and_read_all(&publisher, clients, ("wide", "w"), MESSAGES, 20).await;
    let m = scrape(gw.admin).await;
    assert_eq!(
        m.sum("tidegate_fanout_deliveries_total", &[]),
        (CLIENTS * MESSAGES) as f64,
        "each delivery counted once, on whichever worker made it"
    );
    assert_eq!(m.sum("tidegate_fanout_drops_total", &[]), 0.0);
    drop(clients);
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 0.0).await;
}
