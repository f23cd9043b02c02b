//! Honest readiness: with `readiness.require_upstream`, `/readyz` answers
//! 200 only while every passthrough upstream has an endpoint that accepts
//! a TCP connection, so a Service stops sending clients to a pod whose
//! application is down instead of answering each of them 502.
//!
//! The probe is a TCP connect (and immediate close) to each endpoint every
//! `readiness.probe_interval`, bounded by the upstream's connect timeout;
//! no WebSocket handshake, so the application sees no session. Mux
//! upstreams need no probe: their pooled connections are the evidence
//! (`Gateway::is_ready`). An upstream with active health checks
//! (`[upstreams.health] path`) is ready when one endpoint passed its last
//! check, instead of the TCP probe.

use super::{Gateway, State};
use crate::config::{RouteMode, UpstreamConfig};
use crate::upstream::Upstream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// Probe while the configuration asks for it; until `stop`.
pub(super) async fn probe_upstreams(gw: Arc<Gateway>, stop: CancellationToken) {
    loop {
        let state = gw.state();
        let readiness = state.config.readiness.clone();
        if readiness.require_upstream {
            let mut all = true;
            for (u, runtime) in passthrough_upstreams(&state) {
                // Active health checks are the better evidence where they
                // are configured; else a TCP connect.
                let up = match runtime.any_checked_up() {
                    Some(checked) => checked,
                    None => reachable(&u).await,
                };
                gw.metrics
                    .upstream_reachable
                    .with_label_values(&[&u.name])
                    .set(i64::from(up));
                if !up {
                    tracing::warn!(upstream = %u.name, "no endpoint accepts a connection; not ready");
                }
                all &= up;
            }
            gw.upstreams_reachable.store(all, Ordering::SeqCst);
        }
        drop(state);
        tokio::select! {
            // Process exit.
            _ = stop.cancelled() => return,
            // Next round (a reload may have changed the interval).
            _ = tokio::time::sleep(readiness.probe_interval) => {}
        }
    }
}

/// The upstreams of passthrough routes, each once, with their run-time
/// state (health verdicts).
fn passthrough_upstreams(state: &State) -> Vec<(Arc<UpstreamConfig>, Arc<Upstream>)> {
    let mut out: Vec<(Arc<UpstreamConfig>, Arc<Upstream>)> = Vec::new();
    for r in state
        .config
        .routes
        .iter()
        .filter(|r| r.mode == RouteMode::Passthrough)
    {
        if !out.iter().any(|(u, _)| u.name == r.upstream.name) {
            let runtime = Arc::clone(&state.runtime[&r.name].upstream);
            out.push((Arc::clone(&r.upstream), runtime));
        }
    }
    out
}

/// Whether any endpoint of `u` accepts a TCP connection within its
/// connect timeout; the endpoints are tried at once.
async fn reachable(u: &UpstreamConfig) -> bool {
    let mut tries = JoinSet::new();
    for ep in &u.endpoints {
        let (host, port, limit) = (ep.host.clone(), ep.port, u.connect_timeout);
        tries.spawn(async move {
            matches!(
                timeout(limit, TcpStream::connect((host.as_str(), port))).await,
                Ok(Ok(_))
            )
        });
    }
    while let Some(done) = tries.join_next().await {
        if matches!(done, Ok(true)) {
            // The other attempts end with the JoinSet.
            return true;
        }
    }
    false
}
