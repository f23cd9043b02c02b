//! `sse-idle`: hold many idle Server-Sent Events streams and see what each
//! one costs the proxy. Each connection sends `GET` for the target's path
//! (`/sse` on the bundled `http-server`), waits for the response head and
//! the first event, then holds the stream, reading nothing more, until the
//! hold is over. Streams are opened at a bounded concurrency (the ramp,
//! whose streams/s is reported); with `--pid`, the process's RSS before the
//! ramp and after it gives memory per stream, as `idle` does for WebSocket.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::hold::{ramp_and_hold, HoldPlan, Labelled};
use super::Ctx;
use crate::conn::{ConnError, Stream};
use crate::http1::{self, HttpError, ResponseReader};
use crate::params;
use crate::result::RunResult;
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

/// Why a stream could not be opened: the connection, or the subscription.
#[derive(Debug, Error)]
enum OpenError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl Labelled for OpenError {
    fn label(&self) -> &'static str {
        match self {
            Self::Conn(e) => e.label(),
            Self::Http(e) => e.label(),
        }
    }
}

/// Runs `sse-idle` against `ctx`'s target.
pub async fn run(ctx: &Ctx, p: &SseIdleParams) -> anyhow::Result<RunResult> {
    let plan = HoldPlan {
        total: p.streams,
        concurrency: p.concurrency,
        hold: p.hold,
        ramp_timeout: p.ramp_timeout,
        pids: &p.pids,
        unit: "streams/s",
        per_key: "bytes_per_stream",
    };
    let request: Arc<[u8]> = http1::get_request(&ctx.connector.target).into();
    let open = move |ctx: Ctx, i| {
        let request = request.clone();
        async move {
            let s = ctx.connector.open(i).await?;
            Ok::<_, OpenError>(subscribe(s, &request).await?)
        }
    };
    let out = ramp_and_hold(ctx, &plan, open, hold).await?;
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
        plan.unit,
        out.opened,
        out.window,
        out.shared.total(),
        &out.shared,
    );
    result.extra.insert("opened".into(), out.opened.into());
    result
        .extra
        .insert("open_at_end_of_hold".into(), out.still_open.into());
    result.extra.insert("rss".into(), out.rss.into());
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
