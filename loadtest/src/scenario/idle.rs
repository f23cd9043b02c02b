//! `idle`: hold many idle connections and see what each one costs the
//! server. Connections are opened at a bounded concurrency (the ramp, whose
//! connects/s is reported), spread over several 127.0.0.x source addresses
//! so that more connections fit than one ephemeral port range allows, then
//! held for `hold` while only pings are answered. With `--pid`, the
//! process's RSS before the ramp and after it gives memory per connection.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::hold::{ramp_and_hold, HoldPlan};
use super::{close_gracefully, mask_key, ConnRunError, Ctx};
use crate::conn::Connected;
use crate::params;
use crate::reader::{Batch, FrameReader};
use crate::result::RunResult;
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
    let plan = HoldPlan {
        total: p.connections,
        concurrency: p.concurrency,
        hold: p.hold,
        ramp_timeout: p.ramp_timeout,
        pids: &p.pids,
        unit: "connects/s",
        per_key: "bytes_per_connection",
    };
    let out = ramp_and_hold(
        ctx,
        &plan,
        |ctx: Ctx, i| async move { ctx.connector.connect(i).await },
        hold,
    )
    .await?;
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
        plan.unit,
        out.opened,
        out.window,
        out.shared.total(),
        &out.shared,
    );
    result.extra.insert("connected".into(), out.opened.into());
    result
        .extra
        .insert("open_at_end_of_hold".into(), out.still_open.into());
    result.extra.insert("rss".into(), out.rss.into());
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
