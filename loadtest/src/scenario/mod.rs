//! The load scenarios, and what they share: the run context, per-connection
//! errors, opening many connections at a bounded concurrency, and the clean
//! close at the end of a connection's life.

pub mod connect;
pub mod echo;
pub mod fanout;
mod hold;
pub mod http_get;
pub mod idle;
pub mod rate;
pub mod sse_idle;

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use crate::conn::{ConnError, Connected, Connector};
use crate::frame;
use crate::monitor::{Monitor, MonitorOptions};
use crate::reader::{Batch, FrameReader, ReadError};
use crate::stats::Shared;

/// How long a connection waits for the server's close frame (and then its
/// TCP FIN) after sending its own.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Run-wide settings every scenario takes.
#[derive(Clone)]
pub struct Ctx {
    /// Opens connections to the target.
    pub connector: Connector,
    /// Draw the live progress line.
    pub progress: bool,
    /// Process to charge CPU time to (compare, or `--pid`).
    pub pid: Option<u32>,
}

/// When a run's phases begin: its start, the end of the warm-up (the
/// measured window opens) and the deadline.
pub struct Timeline {
    pub start: Instant,
    pub measure_from: Instant,
    pub deadline: Instant,
}

/// Starts a run's clock now, once its connections are open, and the
/// progress monitor over its measured window: `unit` names the rate on the
/// progress line, `watch` the processes sampled besides `ctx.pid`.
pub fn start_clock(
    ctx: &Ctx,
    shared: &Arc<Shared>,
    (warmup, duration): (Duration, Duration),
    unit: &'static str,
    watch: Vec<u32>,
) -> (Timeline, Monitor) {
    let start = Instant::now();
    let measure_from = start + warmup;
    let monitor = Monitor::spawn(
        shared.clone(),
        measure_from,
        MonitorOptions {
            show: ctx.progress,
            unit,
            pid: ctx.pid,
            watch,
        },
    );
    let deadline = measure_from + duration;
    let timeline = Timeline {
        start,
        measure_from,
        deadline,
    };
    (timeline, monitor)
}

/// Why one connection stopped early.
#[derive(Debug, Error)]
pub enum ConnRunError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("write: {0}")]
    Write(#[from] io::Error),
    #[error("server closed the connection with code {0}")]
    ServerClosed(u16),
    #[error("server sent more messages than were sent to it")]
    Unexpected,
}

impl ConnRunError {
    /// Bounded label for error tallies.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Read(r) => r.label(),
            Self::Write(_) => "write_io",
            Self::ServerClosed(_) => "server_closed",
            Self::Unexpected => "unexpected_message",
        }
    }
}

/// A random masking key for one connection.
pub fn mask_key() -> [u8; 4] {
    rand::random()
}

/// Opens `count` connections, at most `concurrency` at a time, counting
/// each success in `shared.open`. Fails on the first error: throughput
/// scenarios are meaningless with a connection missing.
pub async fn connect_all(
    ctx: &Ctx,
    count: usize,
    concurrency: usize,
    shared: &Arc<Shared>,
) -> anyhow::Result<Vec<Connected>> {
    open_many(ctx, count, concurrency, shared, |c, i| async move {
        c.connect(i).await
    })
    .await
}

/// Opens `count` connections with `open(connector, index)`, at most
/// `concurrency` at a time, counting each success in `shared.open`; fails
/// on the first error.
pub async fn open_many<T, O, F>(
    ctx: &Ctx,
    count: usize,
    concurrency: usize,
    shared: &Arc<Shared>,
    open: O,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    O: Fn(Connector, usize) -> F + Clone + Send + 'static,
    F: Future<Output = Result<T, ConnError>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (connector, next, shared) = (ctx.connector.clone(), next.clone(), shared.clone());
        let open = open.clone();
        set.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, ConnError>(mine);
                }
                mine.push(open(connector.clone(), i).await?);
                shared.open.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(r) = set.join_next().await {
        match r? {
            Ok(mut c) => all.append(&mut c),
            Err(e) => anyhow::bail!("connecting to {}: {e}", ctx.connector.target),
        }
    }
    Ok(all)
}

/// Sends Close 1000, waits for the server's close frame (answering pings,
/// skipping late echoes) and then for the server to end TCP, so TIME_WAIT
/// lands on the server as RFC 6455 §7.1.1 intends.
pub async fn close_gracefully<S>(
    s: &mut S,
    reader: &mut FrameReader,
    mask: [u8; 4],
) -> Result<(), ConnRunError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let close = async {
        // Even the close frame may wait for socket space, so it is inside
        // the timeout too.
        s.write_all(&frame::client_close(1000, mask)).await?;
        let mut batch = Batch::default();
        loop {
            match reader.read_batch(s, &mut batch).await {
                Ok(()) if batch.close.is_some() => break,
                Ok(()) => {}
                // The server may end TCP right after its close frame.
                Err(ReadError::Eof) => return Ok(()),
                Err(e) => return Err(ConnRunError::from(e)),
            }
        }
        // Close frames exchanged; the server now closes TCP.
        while reader.read_batch(s, &mut batch).await.is_ok() {}
        Ok(())
    };
    tokio::time::timeout(CLOSE_TIMEOUT, close)
        .await
        .unwrap_or(Ok(()))
}

/// A scenario with its parameters, as `compare` repeats it.
#[derive(Debug, Clone)]
pub enum Spec {
    Echo(echo::EchoParams),
    Rate(rate::RateParams),
    Connect(connect::ConnectParams),
    Idle(idle::IdleParams),
    HttpGet(http_get::HttpGetParams),
    SseIdle(sse_idle::SseIdleParams),
    Fanout(fanout::FanoutParams),
}

impl Spec {
    /// Runs this scenario once against `ctx`'s target.
    pub async fn run(&self, ctx: &Ctx) -> anyhow::Result<crate::result::RunResult> {
        match self {
            Spec::Echo(p) => echo::run(ctx, p).await,
            Spec::Rate(p) => rate::run(ctx, p).await,
            Spec::Connect(p) => connect::run(ctx, p).await,
            Spec::Idle(p) => idle::run(ctx, p).await,
            Spec::HttpGet(p) => http_get::run(ctx, p).await,
            Spec::SseIdle(p) => sse_idle::run(ctx, p).await,
            Spec::Fanout(p) => fanout::run(ctx, p).await,
        }
    }
}
