//! The ramp-then-hold loop shared by `idle` and `sse-idle`: open many
//! connections at a bounded concurrency (the ramp, whose opens/s is
//! reported), hold each open until the hold is over, and read the RSS of
//! the measured processes before the ramp and after it, so the report can
//! give memory per held connection. What "open" and "hold" mean is the
//! scenario's; the ramp, the timing and the RSS report are here.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{ConnRunError, Ctx};
use crate::conn::ConnError;
use crate::http1::HttpError;
use crate::monitor::{Monitor, MonitorOptions, Window};
use crate::procfs;
use crate::stats::Shared;

/// Settle time between the end of the ramp and the "after" RSS reading, so
/// the server has finished setting the last connections up.
const SETTLE: Duration = Duration::from_secs(1);

/// An error a ramp or hold step can end with, tallied under its label.
pub trait Labelled: std::fmt::Display + Send + 'static {
    /// Bounded label for error tallies.
    fn label(&self) -> &'static str;
}

impl Labelled for ConnError {
    fn label(&self) -> &'static str {
        ConnError::label(self)
    }
}

impl Labelled for HttpError {
    fn label(&self) -> &'static str {
        HttpError::label(self)
    }
}

impl Labelled for ConnRunError {
    fn label(&self) -> &'static str {
        ConnRunError::label(self)
    }
}

/// How many to open and for how long to hold them.
pub struct HoldPlan<'a> {
    pub total: usize,
    pub concurrency: usize,
    pub hold: Duration,
    pub ramp_timeout: Duration,
    /// Processes whose RSS is measured.
    pub pids: &'a [u32],
    /// Unit of the ramp rate, e.g. `connects/s`.
    pub unit: &'static str,
    /// Report key of the per-connection memory, e.g. `bytes_per_stream`.
    pub per_key: &'static str,
}

/// What a ramp and hold measured.
pub struct HoldOutcome {
    pub shared: Arc<Shared>,
    pub window: Window,
    /// Connections the ramp opened.
    pub opened: u64,
    /// Connections still open when the hold ended.
    pub still_open: usize,
    /// One RSS record per measured process.
    pub rss: Vec<Value>,
}

/// Opens `plan.total` connections with `open(ctx, index)`, each then kept by
/// `hold(conn, release)` until `release` changes after `plan.hold`.
pub async fn ramp_and_hold<C, O, OF, OE, H, HF, HE>(
    ctx: &Ctx,
    plan: &HoldPlan<'_>,
    open: O,
    hold: H,
) -> anyhow::Result<HoldOutcome>
where
    C: Send + 'static,
    O: Fn(Ctx, usize) -> OF + Clone + Send + 'static,
    OF: Future<Output = Result<C, OE>> + Send,
    OE: Labelled,
    H: Fn(C, watch::Receiver<bool>) -> HF + Clone + Send + 'static,
    HF: Future<Output = Result<(), HE>> + Send + 'static,
    HE: Labelled,
{
    let shared = Shared::new();
    let rss_before: Vec<(u32, u64)> = plan
        .pids
        .iter()
        .map(|&pid| Ok((pid, procfs::rss_bytes(pid)?)))
        .collect::<anyhow::Result<_>>()?;
    let (release_tx, release_rx) = watch::channel(false);
    let start = Instant::now();
    let ramp_deadline = start + plan.ramp_timeout;
    let monitor = Monitor::spawn(
        shared.clone(),
        start,
        MonitorOptions {
            show: ctx.progress,
            unit: plan.unit,
            pid: ctx.pid,
            watch: Vec::new(),
        },
    );
    let next = Arc::new(AtomicUsize::new(0));
    let holders = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
    let mut ramp = JoinSet::new();
    for _ in 0..plan.concurrency.clamp(1, plan.total.max(1)) {
        let (ctx, shared, next, holders) =
            (ctx.clone(), shared.clone(), next.clone(), holders.clone());
        let (release_rx, total) = (release_rx.clone(), plan.total);
        let (open, hold) = (open.clone(), hold.clone());
        ramp.spawn(async move {
            let mut rec = shared.recorder(start);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= ramp_deadline {
                    break;
                }
                let t0 = Instant::now();
                match open(ctx.clone(), i).await {
                    Ok(c) => {
                        let now = Instant::now();
                        rec.record(t0, now);
                        rec.tick(now);
                        shared.open.fetch_add(1, Ordering::Relaxed);
                        let shared = shared.clone();
                        let held = hold(c, release_rx.clone());
                        holders.lock().await.spawn(async move {
                            if let Err(e) = held.await {
                                shared.error(e.label(), &e);
                            }
                            shared.open.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Err(e) => shared.error(e.label(), &e),
                }
            }
        });
    }
    while ramp.join_next().await.is_some() {}
    let window = monitor.finish().await;
    let opened = shared.completed.load(Ordering::Relaxed);
    tokio::time::sleep(SETTLE).await;
    let mut rss = Vec::new();
    for (pid, before) in rss_before {
        let after = procfs::rss_bytes(pid)?;
        let mut record = serde_json::json!({
            "pid": pid,
            "before_bytes": before,
            "after_bytes": after,
        });
        record[plan.per_key] = ((after as f64 - before as f64) / opened.max(1) as f64).into();
        rss.push(record);
    }
    tokio::time::sleep(plan.hold).await;
    let still_open = shared.open.load(Ordering::Relaxed);
    let _ = release_tx.send(true);
    let mut holders = holders.lock().await;
    while holders.join_next().await.is_some() {}
    drop(holders);
    Ok(HoldOutcome {
        shared,
        window,
        opened,
        still_open,
        rss,
    })
}
