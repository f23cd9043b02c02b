//! tidegate's integration tests: one test binary (`cargo test --release
//! -p tidegate --test it`), one module per area of the product, all
//! standing on `support`. Each test starts its own gateway on port 0 with
//! real sockets, real clients and a real upstream; most run it in-process,
//! the CLI, SIGHUP and 10,000-session tests run the release binary
//! (`TG_TEST_BIN`). Test threads run in parallel; the few tests that must
//! not share the machine take turns through `support::serial`.

mod support;

mod auth;
mod auth_trust;
mod balance;
mod cli;
mod deflate;
mod deflate_edge;
mod fanout;
mod fanout_batch;
mod fanout_workers;
mod handshake;
mod help;
mod http;
mod http_pool;
mod http_timeouts;
mod http_upstream;
mod keepalive;
mod metrics;
mod mux;
mod mux_scale;
mod mux_trust;
mod nats;
mod ops;
mod relay;
mod reload;
mod runtime;
mod tls;
