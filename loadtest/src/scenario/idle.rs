//! `idle`: hold many idle connections and see what each one costs the
//! server. Connections are opened at a bounded concurrency (the ramp, whose
//! connects/s is reported), spread over several 127.0.0.x source addresses
//! so that more connections fit than one ephemeral port range allows, then
//! held for `hold` while only pings are answered. With `--pid`, the
//! process's RSS before the ramp and after it gives memory per connection.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{close_gracefully, mask_key, ConnRunError, Ctx};
use crate::conn::Connected;
use crate::monitor::{Monitor, MonitorOptions};
use crate::params;
use crate::procfs;
use crate::reader::{Batch, FrameReader};
use crate::result::RunResult;
use crate::stats::Shared;

/// Settle time between the end of the ramp and the "after" RSS reading, so
/// the server has finished setting the last connections up.
const SETTLE: Duration = Duration::from_secs(1);
/// Read buffer of a held connection: it only ever sees pings and a close.
const IDLE_READ_BUF: usize = 512;

/// Parameters of an `idle` run.
#[derive(Debug, Clone)]
pub struct IdleParams {
    pub connections: usize,
    pub concurrency: usize,
    pub hold: Duration,
    /// Processes whose RSS is measured.
    pub pids: Vec<u32>,
    /// Source addresses in use (for the report).
    pub sources: Vec<IpAddr>,
    /// Give up the ramp after this long.
    pub ramp_timeout: Duration,
}

/// Runs `idle` against `ctx`'s target.
pub async fn run(ctx: &Ctx, p: &IdleParams) -> anyhow::Result<RunResult> {
    let shared = Shared::new();
    let rss_before: Vec<(u32, u64)> = p
        .pids
        .iter()
        .map(|&pid| Ok((pid, procfs::rss_bytes(pid)?)))
        .collect::<anyhow::Result<_>>()?;
    let (release_tx, release_rx) = watch::channel(false);
    let start = Instant::now();
    let ramp_deadline = start + p.ramp_timeout;
    let monitor = Monitor::spawn(
        shared.clone(),
        start,
        MonitorOptions {
            show: ctx.progress,
            unit: "connects/s",
            pid: ctx.pid,
            watch: Vec::new(),
        },
    );
    let next = Arc::new(AtomicUsize::new(0));
    let holders = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
    let mut ramp = JoinSet::new();
    for _ in 0..p.concurrency.clamp(1, p.connections.max(1)) {
        let (ctx, shared, next, holders) =
            (ctx.clone(), shared.clone(), next.clone(), holders.clone());
        let (release_rx, total) = (release_rx.clone(), p.connections);
        ramp.spawn(async move {
            let mut rec = shared.recorder(start);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= ramp_deadline {
                    break;
                }
                let t0 = Instant::now();
                match ctx.connector.connect(i).await {
                    Ok(c) => {
                        let now = Instant::now();
                        rec.record(t0, now);
                        rec.tick(now);
                        shared.open.fetch_add(1, Ordering::Relaxed);
                        let (shared, release) = (shared.clone(), release_rx.clone());
                        holders.lock().await.spawn(async move {
                            if let Err(e) = hold(c, release).await {
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
    let connected = shared.completed.load(Ordering::Relaxed);
    tokio::time::sleep(SETTLE).await;
    let mut rss = Vec::new();
    for (pid, before) in rss_before {
        let after = procfs::rss_bytes(pid)?;
        rss.push(serde_json::json!({
            "pid": pid,
            "before_bytes": before,
            "after_bytes": after,
            "bytes_per_connection": (after as f64 - before as f64) / connected.max(1) as f64,
        }));
    }
    tokio::time::sleep(p.hold).await;
    let still_open = shared.open.load(Ordering::Relaxed);
    let _ = release_tx.send(true);
    let mut holders = holders.lock().await;
    while holders.join_next().await.is_some() {}
    let mut result = RunResult::new(
        "idle",
        ctx.connector.target.to_string(),
        params! {
            "connections" => p.connections,
            "concurrency" => p.concurrency,
            "hold_secs" => p.hold.as_secs_f64(),
            "source_ips" => p.sources.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        },
        p.connections as u64,
        "connects/s",
        connected,
        window,
        shared.total(),
        &shared,
    );
    result.extra.insert("connected".into(), connected.into());
    result
        .extra
        .insert("open_at_end_of_hold".into(), still_open.into());
    result.extra.insert("rss".into(), rss.into());
    Ok(result)
}

/// Keeps one connection open, answering pings, until released; then closes.
async fn hold(c: Connected, mut release: watch::Receiver<bool>) -> Result<(), ConnRunError> {
    let mask = mask_key();
    let mut s = c.stream;
    let mut reader = FrameReader::new(IDLE_READ_BUF, &c.leftover, mask);
    let mut batch = Batch::default();
    loop {
        tokio::select! {
            // The hold is over.
            _ = release.changed() => break,
            // Anything from the server while idle: pings (answered) or a close.
            r = reader.read_batch(&mut s, &mut batch) => {
                r?;
                if !batch.pongs.is_empty() {
                    s.write_all(&batch.pongs).await?;
                }
                if let Some(code) = batch.close {
                    return Err(ConnRunError::ServerClosed(code));
                }
            }
        }
    }
    close_gracefully(&mut s, &mut reader, mask).await
}
