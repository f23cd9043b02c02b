//! Endpoint health: what the balancer may choose. Two sources decide it:
//! **active checks** (a plain HTTP/1.1 `GET health.path` over
//! `Upstream::open` every `health.interval`; 2xx/3xx passes; thresholds of
//! passes and failures in a row flip the verdict) and **passive ejection**
//! (`health.eject_after` connect failures or 5xx answers in a row take the
//! endpoint out for `eject_for`, doubling per ejection in a row up to
//! `eject_max`; once the back-off has run out one request is let through
//! and a single failure ejects again).
//!
//! An unhealthy endpoint gets no new sessions or requests; sessions that
//! already run on it are left alone. The checker task holds only a weak
//! reference to its [`Upstream`], so it ends with the configuration that
//! created it (a reload builds new upstreams with their own checkers).

use super::Upstream;
use crate::config::balance::{HealthCheck, Passive};
use prometheus::{IntCounter, IntGauge};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::timeout;

/// Largest health-check answer read: the status line is all that counts.
const MAX_CHECK_READ: usize = 1024;

/// Active-check verdicts (`EndpointState::checked`).
const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Milliseconds since the first call: a clock an atomic can hold.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Metric handles of one endpoint, resolved once.
pub(crate) struct HealthMetrics {
    pub healthy: IntGauge,
    pub selections: IntCounter,
    pub connect_failures: IntCounter,
    pub server_errors: IntCounter,
    pub check_failures: IntCounter,
    pub ejections: IntCounter,
    /// Addresses the endpoint's name resolved to (1 for an IP literal).
    pub addresses: IntGauge,
}

/// The live state of one configured endpoint.
pub(crate) struct EndpointState {
    /// Verdict of the active checks: UNKNOWN until the first one.
    checked: AtomicU8,
    /// Passive: failures in a row.
    failures: AtomicU32,
    /// Passive: ejections in a row (reset by a success); > 0 while on
    /// probation.
    ejections: AtomicU32,
    /// Passive: ejected until this `now_ms` (0: not ejected).
    ejected_until: AtomicU64,
    /// Sessions and requests in flight (`least_connections`).
    pub active: AtomicUsize,
    pub metrics: HealthMetrics,
}

impl EndpointState {
    pub fn new(metrics: HealthMetrics) -> EndpointState {
        metrics.healthy.set(1);
        EndpointState {
            checked: AtomicU8::new(UNKNOWN),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            metrics,
        }
    }

    /// May get new sessions: not failed by the active checks (unknown
    /// counts as healthy, so a gateway without checks routes as before)
    /// and not ejected.
    pub fn usable(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        self.checked.load(Ordering::Relaxed) != DOWN && (until == 0 || now_ms() >= until)
    }

    /// Passed the last active check (readiness wants evidence, not hope).
    pub fn checked_up(&self) -> bool {
        self.checked.load(Ordering::Relaxed) == UP
    }

    fn refresh_gauge(&self) {
        self.metrics.healthy.set(i64::from(self.usable()));
    }

    /// A session or request on this endpoint went well.
    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
        self.refresh_gauge();
    }

    /// A connect failure or a 5xx: eject after `eject_after` in a row, or
    /// at once while on probation after an ejection.
    pub fn failed(&self, passive: &Passive, endpoint: &str) {
        if passive.eject_after == 0 {
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let until = self.ejected_until.load(Ordering::Relaxed);
        let probation = self.ejections.load(Ordering::Relaxed) > 0 && now_ms() >= until;
        if failures < passive.eject_after && !probation {
            return;
        }
        let n = self.ejections.fetch_add(1, Ordering::Relaxed);
        let back_off = back_off(passive, n);
        self.failures.store(0, Ordering::Relaxed);
        self.ejected_until
            .store(now_ms() + back_off.as_millis() as u64, Ordering::Relaxed);
        self.metrics.ejections.inc();
        self.metrics.healthy.set(0);
        tracing::warn!(%endpoint, failures, ?back_off, "endpoint ejected");
    }

    /// Take over the verdicts of the same endpoint under the previous
    /// configuration (a reload): an endpoint found down stays down until
    /// its checks pass `healthy_threshold` times, an ejected one serves
    /// out its back-off, instead of both starting afresh as healthy.
    pub fn carry(&self, old: &EndpointState) {
        let copy =
            |a: &AtomicU32, b: &AtomicU32| a.store(b.load(Ordering::Relaxed), Ordering::Relaxed);
        self.checked
            .store(old.checked.load(Ordering::Relaxed), Ordering::Relaxed);
        copy(&self.failures, &old.failures);
        copy(&self.ejections, &old.ejections);
        self.ejected_until
            .store(old.ejected_until.load(Ordering::Relaxed), Ordering::Relaxed);
        self.refresh_gauge();
    }

    fn set_checked(&self, up: bool, endpoint: &str) {
        let new = if up { UP } else { DOWN };
        if self.checked.swap(new, Ordering::Relaxed) != new {
            tracing::info!(%endpoint, healthy = up, "health check verdict changed");
        }
        self.refresh_gauge();
    }
}

/// Check every endpoint of `upstream` each interval, while it exists.
pub(crate) async fn run_checks(upstream: Weak<Upstream>, check: HealthCheck) {
    // Passes (> 0) or failures (< 0) in a row, per endpoint.
    let mut streak: Vec<i64> = Vec::new();
    loop {
        let Some(up) = upstream.upgrade() else { return };
        streak.resize(up.config.endpoints.len(), 0);
        let mut checks = JoinSet::new();
        for i in 0..up.config.endpoints.len() {
            let (up, path, limit) = (Arc::clone(&up), check.path.clone(), check.timeout);
            checks.spawn(async move {
                let passed = timeout(limit, probe(&up, i, &path)).await;
                (i, matches!(passed, Ok(true)))
            });
        }
        while let Some(done) = checks.join_next().await {
            let Ok((i, passed)) = done else { continue };
            let state = &up.state[i];
            let url = &up.config.endpoints[i].url;
            streak[i] = match (passed, streak[i]) {
                (true, s) if s > 0 => s + 1,
                (true, _) => 1,
                (false, s) if s < 0 => s - 1,
                (false, _) => -1,
            };
            let threshold = if passed {
                check.healthy_threshold
            } else {
                check.unhealthy_threshold
            };
            // The first verdict is taken at once: an endpoint that is down
            // at start must not get sessions for `threshold` intervals.
            let first = state.checked.load(Ordering::Relaxed) == UNKNOWN;
            if first || streak[i].unsigned_abs() >= u64::from(threshold) {
                state.set_checked(passed, url);
            }
            // Counted after the verdict, so a reader who sees the count
            // sees the verdict it led to.
            if !passed {
                state.metrics.check_failures.inc();
            }
        }
        drop(up);
        tokio::time::sleep(check.interval).await;
    }
}

/// One check: GET `path`, true on a 2xx or 3xx status line.
async fn probe(up: &Upstream, i: usize, path: &str) -> bool {
    let ep = &up.config.endpoints[i];
    let Ok(mut io) = up.open(i, ep).await else {
        return false;
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tidegate-health\r\nConnection: close\r\n\r\n",
        ep.authority
    );
    if io.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; MAX_CHECK_READ];
    let mut len = 0;
    while !buf[..len].contains(&b'\n') && len < buf.len() {
        match io.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    status_passes(&buf[..len])
}

/// `HTTP/1.x 2xx` or `3xx`.
fn status_passes(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().unwrap_or_default();
    version.starts_with(b"HTTP/1.") && status.len() == 3 && matches!(status[0], b'2' | b'3')
}

/// How long the `n`+1-th ejection in a row lasts.
fn back_off(p: &Passive, n: u32) -> Duration {
    p.eject_for.saturating_mul(1 << n.min(16)).min(p.eject_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> EndpointState {
        let c = || IntCounter::new("c", "c").expect("valid");
        EndpointState::new(HealthMetrics {
            healthy: IntGauge::new("g", "g").expect("valid"),
            selections: c(),
            connect_failures: c(),
            server_errors: c(),
            check_failures: c(),
            ejections: c(),
            addresses: IntGauge::new("a", "a").expect("valid"),
        })
    }

    #[test]
    fn status_lines() {
        assert!(status_passes(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_passes(b"HTTP/1.0 302 Found\r\n"));
        assert!(!status_passes(b"HTTP/1.1 503 Unavailable\r\n"));
        assert!(!status_passes(b"HTTP/1.1 404 Not Found\r\n"));
        assert!(!status_passes(b""));
        assert!(!status_passes(b"SSH-2.0-OpenSSH\r\n"));
    }

    #[test]
    fn ejected_after_failures_in_a_row_and_back_on_probation() {
        let passive = Passive {
            eject_after: 3,
            eject_for: Duration::from_millis(50),
            eject_max: Duration::from_secs(1),
        };
        let s = state();
        s.failed(&passive, "e");
        s.failed(&passive, "e");
        s.succeeded();
        s.failed(&passive, "e");
        s.failed(&passive, "e");
        assert!(s.usable(), "a success in between resets the count");
        s.failed(&passive, "e");
        assert!(!s.usable(), "three in a row eject");
        assert_eq!(s.metrics.healthy.get(), 0);
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.usable(), "the back-off ran out: on probation");
        s.failed(&passive, "e");
        assert!(!s.usable(), "one failure on probation ejects again");
        assert_eq!(back_off(&passive, 1), Duration::from_millis(100));
        assert_eq!(back_off(&passive, 30), Duration::from_secs(1));
    }

    #[test]
    fn verdicts_carry_over_to_a_new_state() {
        let passive = Passive {
            eject_after: 1,
            eject_for: Duration::from_secs(60),
            eject_max: Duration::from_secs(60),
        };
        let (old, new) = (state(), state());
        old.failed(&passive, "e");
        new.carry(&old);
        assert!(!new.usable(), "still ejected");
        let (old, new) = (state(), state());
        old.set_checked(false, "e");
        new.carry(&old);
        assert!(!new.usable() && !new.checked_up(), "still checked down");
    }

    #[test]
    fn active_verdict_gates_use() {
        let s = state();
        assert!(
            s.usable() && !s.checked_up(),
            "unknown: routable, not ready"
        );
        s.set_checked(false, "e");
        assert!(!s.usable());
        s.set_checked(true, "e");
        assert!(s.usable() && s.checked_up());
    }
}
