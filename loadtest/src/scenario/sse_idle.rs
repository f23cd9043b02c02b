//! `sse-idle`: hold many idle Server-Sent Events streams and see what each
//! one costs the proxy. Each connection sends `GET` for the target's path
//! (`/sse` on the bundled `http-server`), waits for the response head and
//! the first event, then holds the stream, reading nothing more, until the
//! hold is over. Streams are opened at a bounded concurrency (the ramp,
//! whose streams/s is reported); with `--pid`, the process's RSS before the
//! ramp and after it gives memory per stream, as `idle` does for WebSocket.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Ctx;
use crate::conn::Stream;
use crate::http1::{self, HttpError, ResponseReader};
use crate::monitor::{Monitor, MonitorOptions};
use crate::params;
use crate::procfs;
use crate::result::RunResult;
use crate::stats::Shared;

/// Settle time between the end of the ramp and the "after" RSS reading.
const SETTLE: Duration = Duration::from_secs(1);
/// Body bytes that make "the first event arrived": any byte of the body
/// (the bundled server's first event is one chunk).
const FIRST_EVENT_BYTES: u64 = 1;
/// Buffer of a stream's response reader; held only during the ramp step.
const HEAD_BUF: usize = http1::MAX_HEAD;

/// Parameters of an `sse-idle` run.
#[derive(Debug, Clone)]
pub struct SseIdleParams {
    pub streams: usize,
    pub concurrency: usize,
    pub hold: Duration,
    /// Processes whose RSS is measured.
    pub pids: Vec<u32>,
    /// Source addresses in use (for the report).
    pub sources: Vec<IpAddr>,
    /// Give up the ramp after this long.
    pub ramp_timeout: Duration,
}

/// Runs `sse-idle` against `ctx`'s target.
pub async fn run(ctx: &Ctx, p: &SseIdleParams) -> anyhow::Result<RunResult> {
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
            unit: "streams/s",
            pid: ctx.pid,
            watch: Vec::new(),
        },
    );
    let request: Arc<[u8]> = http1::get_request(&ctx.connector.target).into();
    let next = Arc::new(AtomicUsize::new(0));
    let holders = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
    let mut ramp = JoinSet::new();
    for _ in 0..p.concurrency.clamp(1, p.streams.max(1)) {
        let (ctx, shared, next, holders) =
            (ctx.clone(), shared.clone(), next.clone(), holders.clone());
        let (release_rx, total, request) = (release_rx.clone(), p.streams, request.clone());
        ramp.spawn(async move {
            let mut rec = shared.recorder(start);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= ramp_deadline {
                    break;
                }
                let t0 = Instant::now();
                let opened = match ctx.connector.open(i).await {
                    Ok(s) => subscribe(s, &request).await,
                    Err(e) => {
                        shared.error(e.label(), &e);
                        continue;
                    }
                };
                match opened {
                    Ok(s) => {
                        let now = Instant::now();
                        rec.record(t0, now);
                        rec.tick(now);
                        shared.open.fetch_add(1, Ordering::Relaxed);
                        let (shared, release) = (shared.clone(), release_rx.clone());
                        holders.lock().await.spawn(async move {
                            if let Err(e) = hold(s, release).await {
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
        rss.push(serde_json::json!({
            "pid": pid,
            "before_bytes": before,
            "after_bytes": after,
            "bytes_per_stream": (after as f64 - before as f64) / opened.max(1) as f64,
        }));
    }
    tokio::time::sleep(p.hold).await;
    let still_open = shared.open.load(Ordering::Relaxed);
    let _ = release_tx.send(true);
    let mut holders = holders.lock().await;
    while holders.join_next().await.is_some() {}
    let mut result = RunResult::new(
        "sse-idle",
        ctx.connector.target.to_string(),
        params! {
            "streams" => p.streams,
            "concurrency" => p.concurrency,
            "hold_secs" => p.hold.as_secs_f64(),
            "source_ips" => p.sources.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        },
        p.streams as u64,
        "streams/s",
        opened,
        window,
        shared.total(),
        &shared,
    );
    result.extra.insert("opened".into(), opened.into());
    result
        .extra
        .insert("open_at_end_of_hold".into(), still_open.into());
    result.extra.insert("rss".into(), rss.into());
    Ok(result)
}

/// Sends the GET and waits for a 200 head and the first event. The reader
/// (and its buffer) is dropped before the stream is held.
async fn subscribe(mut s: Stream, request: &[u8]) -> Result<Stream, HttpError> {
    s.write_all(request).await?;
    let mut reader = ResponseReader::new(HEAD_BUF);
    let head = reader.head(&mut s).await?;
    if head.status != 200 {
        return Err(HttpError::Status(head.status));
    }
    reader.body(&mut s, head.body, FIRST_EVENT_BYTES).await?;
    Ok(s)
}

/// Holds one stream until released; a stream the server ends early is an
/// error (the proxy cut an idle stream).
async fn hold(mut s: Stream, mut release: watch::Receiver<bool>) -> Result<(), HttpError> {
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            // The hold is over.
            _ = release.changed() => break,
            // Anything from the server while idle: more events are fine,
            // an end of stream is not.
            r = s.read(&mut sink) => {
                if r? == 0 {
                    return Err(HttpError::Eof);
                }
            }
        }
    }
    let _ = s.shutdown().await;
    Ok(())
}
