//! `http-get`: closed-loop HTTP/1.1 requests on keep-alive connections.
//! Each connection sends one GET, reads the whole response, and sends the
//! next: throughput is bounded by the server (or the proxy in front of it),
//! not a timer. The URL's path picks the response (`/` small, `/bytes/N`
//! large on the bundled `http-server`). With `--pid`, the proxy's CPU time
//! per request is reported, as for the WebSocket scenarios.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::{open_many, start_clock, Ctx};
use crate::conn::Stream;
use crate::http1::{self, HttpError, ResponseReader};
use crate::params;
use crate::result::RunResult;
use crate::stats::{Recorder, Shared};

/// Connections opened at once before the run.
const OPEN_CONCURRENCY: usize = 64;

/// Parameters of an `http-get` run.
#[derive(Debug, Clone)]
pub struct HttpGetParams {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Why one connection stopped early.
#[derive(Debug, Error)]
enum GetError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("write: {0}")]
    Write(#[from] std::io::Error),
}

impl GetError {
    fn label(&self) -> &'static str {
        match self {
            Self::Http(h) => h.label(),
            Self::Write(_) => "write_io",
        }
    }
}

/// Runs `http-get` against `ctx`'s target.
pub async fn run(ctx: &Ctx, p: &HttpGetParams) -> anyhow::Result<RunResult> {
    let shared = Shared::new();
    let conns = open_all(ctx, p.connections, &shared).await?;
    let window = (p.warmup, p.duration);
    let (t, monitor) = start_clock(ctx, &shared, window, "reqs/s", Vec::new());
    let (measure_from, deadline) = (t.measure_from, t.deadline);
    let request: Arc<[u8]> = http1::get_request(&ctx.connector.target).into();
    let body_bytes = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for c in conns {
        let rec = shared.recorder(measure_from);
        let (shared, request, body_bytes) = (shared.clone(), request.clone(), body_bytes.clone());
        set.spawn(async move {
            match drive(c, &request, rec, measure_from, deadline).await {
                Ok(bytes) => {
                    body_bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Err(e) => shared.error(e.label(), &e),
            }
            shared.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    tokio::time::sleep_until(deadline.into()).await;
    let window = monitor.finish().await;
    while set.join_next().await.is_some() {}
    let completed = shared.completed.load(Ordering::Relaxed);
    let bytes = body_bytes.load(Ordering::Relaxed);
    let mut result = RunResult::new(
        "http-get",
        ctx.connector.target.to_string(),
        params! {
            "connections" => p.connections,
            "warmup_secs" => p.warmup.as_secs_f64(),
            "duration_secs" => p.duration.as_secs_f64(),
        },
        p.connections as u64,
        "reqs/s",
        completed,
        window,
        shared.total(),
        &shared,
    );
    let per_response = bytes as f64 / completed.max(1) as f64;
    result
        .extra
        .insert("body_bytes_per_response".into(), per_response.into());
    result.extra.insert(
        "body_mib_per_sec".into(),
        (result.rate * per_response / (1024.0 * 1024.0)).into(),
    );
    Ok(result)
}

/// Opens `count` plain connections (no upgrade), `OPEN_CONCURRENCY` at a
/// time. Fails on the first error: a throughput run with a connection
/// missing is meaningless.
async fn open_all(ctx: &Ctx, count: usize, shared: &Arc<Shared>) -> anyhow::Result<Vec<Stream>> {
    open_many(ctx, count, OPEN_CONCURRENCY, shared, |c, i| async move {
        c.open(i).await
    })
    .await
}

/// One connection's request loop until `deadline`; returns the body bytes
/// received in the measured window.
async fn drive(
    mut s: Stream,
    request: &[u8],
    mut rec: Recorder,
    measure_from: Instant,
    deadline: Instant,
) -> Result<u64, GetError> {
    let mut reader = ResponseReader::new(http1::READ_BUF);
    let mut bytes = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= deadline {
            break;
        }
        s.write_all(request).await?;
        let n = reader.response(&mut s).await?;
        let now = Instant::now();
        rec.record(t0, now);
        rec.tick(now);
        if now >= measure_from {
            bytes += n;
        }
    }
    rec.flush(Instant::now());
    let _ = s.shutdown().await;
    Ok(bytes)
}
