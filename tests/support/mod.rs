//! What the integration tests stand on: the gateway started in-process or
//! as the release binary (`gateway`), child processes (`process`), real
//! clients over raw bytes, fastwebsockets and rustls (`client`, `tls`),
//! hand-made upstreams (`upstream`), mux applications (`mux_app`) and the
//! one reader of `/metrics` (`metrics`).
//!
//! Every wait is bounded by [`TIMEOUT`], generous on purpose: a loaded
//! 2-core machine must not fail a test. Timeouts are never what a test
//! asserts.

pub mod client;
pub mod fanout;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod mux_app;
pub mod named_app;
pub mod process;
pub mod tls;
pub mod upstream;

pub use client::*;
pub use gateway::*;
pub use metrics::*;
pub use process::*;
pub use tls::*;
pub use upstream::*;

use std::future::Future;
use std::time::Duration;

/// Upper bound of every wait in the tests.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Run `f`, failing the test (naming `what`) if it takes longer than
/// [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    within_for(TIMEOUT, what, f).await
}

/// [`within`] with a longer bound, for phases that are several timeouts
/// long (traffic across a mux reconnect, a process draining).
pub async fn within_for<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Held by the tests that must not share the machine with each other: the
/// 10,000-session test (sockets and CPU by the thousand) and the tests
/// whose correctness depends on answering in time (keepalive pings, mux
/// traffic across a reconnect). All tests live in one binary whose test
/// threads run in parallel; these take turns. Not poisoned by a failing
/// test (tokio's mutex has no poisoning), and usable from every test's own
/// runtime.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}
