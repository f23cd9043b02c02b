//! `connect`: a connection storm. `total` connections are opened by
//! `concurrency` workers, each doing TCP connect, TLS (for `wss://`) and the
//! upgrade, optionally one echoed message, then a clean Close 1000. The
//! recorded latency is the handshake alone (TCP + TLS + upgrade); the rate
//! is whole connection lifecycles per second.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::{close_gracefully, mask_key, ConnRunError, Ctx};
use crate::conn::Connected;
use crate::frame::{FrameBatch, OP_BINARY};
use crate::monitor::{Monitor, MonitorOptions};
use crate::params;
use crate::reader::{Batch, FrameReader};
use crate::result::RunResult;
use crate::stats::Shared;

/// Parameters of a `connect` run.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub total: usize,
    pub concurrency: usize,
    /// Send one message and wait for its echo before closing.
    pub message: bool,
    pub size: usize,
    /// Upper bound on the run, even if `total` is not reached.
    pub duration: Duration,
    /// TLS session resumption on (for the report; the connector carries it).
    pub resumption: bool,
}

/// Runs `connect` against `ctx`'s target.
pub async fn run(ctx: &Ctx, p: &ConnectParams) -> anyhow::Result<RunResult> {
    let shared = Shared::new();
    let resumed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + p.duration;
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
    let mut set = JoinSet::new();
    for _ in 0..p.concurrency.clamp(1, p.total.max(1)) {
        let (ctx, shared, next, resumed) =
            (ctx.clone(), shared.clone(), next.clone(), resumed.clone());
        let (total, message, size) = (p.total, p.message, p.size);
        set.spawn(async move {
            let mut rec = shared.recorder(start);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    break;
                }
                let t0 = Instant::now();
                let c = match ctx.connector.connect(i).await {
                    Ok(c) => c,
                    Err(e) => {
                        shared.error(e.label(), &e);
                        continue;
                    }
                };
                let now = Instant::now();
                rec.record(t0, now);
                rec.tick(now);
                if c.stream.resumed() {
                    resumed.fetch_add(1, Ordering::Relaxed);
                }
                shared.open.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = lifecycle(c, message, size).await {
                    shared.error(e.label(), &e);
                }
                shared.open.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }
    while set.join_next().await.is_some() {}
    let window = monitor.finish().await;
    let mut result = RunResult::new(
        "connect",
        ctx.connector.target.to_string(),
        params! {
            "total" => p.total,
            "concurrency" => p.concurrency,
            "message" => p.message,
            "size" => p.size,
            "max_duration_secs" => p.duration.as_secs_f64(),
            "tls" => ctx.connector.target.tls,
            "resumption" => p.resumption,
        },
        p.total as u64,
        "connects/s",
        shared.completed.load(Ordering::Relaxed),
        window,
        shared.total(),
        &shared,
    );
    if ctx.connector.target.tls {
        result
            .extra
            .insert("tls_resumed".into(), resumed.load(Ordering::Relaxed).into());
    }
    Ok(result)
}

/// After the upgrade: optionally one round trip, then the close handshake.
async fn lifecycle(c: Connected, message: bool, size: usize) -> Result<(), ConnRunError> {
    let mask = mask_key();
    let mut s = c.stream;
    let mut reader = FrameReader::new(4096, &c.leftover, mask);
    if message {
        s.write_all(FrameBatch::new(OP_BINARY, size, 1, mask).frames(1))
            .await?;
        let mut batch = Batch::default();
        loop {
            reader.read_batch(&mut s, &mut batch).await?;
            if !batch.pongs.is_empty() {
                s.write_all(&batch.pongs).await?;
            }
            if let Some(code) = batch.close {
                return Err(ConnRunError::ServerClosed(code));
            }
            if batch.messages > 0 {
                break;
            }
        }
    }
    close_gracefully(&mut s, &mut reader, mask).await
}
