//! `fanout`: broadcast load (issue #17). N subscribers connect to a route
//! and only read; the application behind the gateway publishes on its own
//! schedule (the SDK's `fanout` example: one PUBLISH, one MESSAGE per
//! session, or one message per socket). Every payload starts with the
//! publish's sequence number and its send time (see [`stamp`]), so the
//! harness measures, without talking to the application:
//!
//! - deliveries per second (the run's unit);
//! - publish-to-delivery latency of every delivery (`latency`), and
//!   publish-to-**last**-delivery per publish (`extra.last_delivery`): the
//!   time until the slowest subscriber had it, over the publishes sent in
//!   the window that reached every subscriber;
//! - deliveries missing (publishes in the window not seen by everyone);
//! - CPU per delivery of the gateway (`--pid`) and the application
//!   (second `--pid`), as `rate` does.
//!
//! Send and receive times are wall-clock (`SystemTime`): the same clock in
//! both processes on one machine. The generator's own limits are in the
//! result too: its CPU per delivery and in percent of a core (a generator
//! near 100 % of its core delays deliveries itself), and `read_batch`, the
//! deliveries per read (large batches mean it fell behind).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::{connect_all, mask_key, ConnRunError, Ctx, CLOSE_TIMEOUT};
use crate::conn::Connected;
use crate::monitor::{Monitor, MonitorOptions};
use crate::params;
use crate::result::RunResult;
use crate::stats::{new_histogram, Percentiles, Recorder, Shared};

pub mod stamp;

use stamp::Deliveries;

/// How often a subscriber hands its per-publish tallies to the shared map.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Connections opened at once during the ramp.
const RAMP_CONCURRENCY: usize = 64;

/// Parameters of a `fanout` run.
#[derive(Debug, Clone)]
pub struct FanoutParams {
    pub subscribers: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Processes sampled over the window besides the target (`--pid`
    /// after the first): the application.
    pub watch: Vec<u32>,
}

/// Per publish: how many subscribers had it, and the slowest delivery.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    /// Send time, nanoseconds since the UNIX epoch.
    sent_ns: u64,
    count: u64,
    max_latency_ns: u64,
}

/// Tallies of all subscribers by publish sequence number.
type Tallies = Arc<Mutex<BTreeMap<u64, Tally>>>;

/// Now, in nanoseconds since the UNIX epoch (what the publisher stamps).
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Runs `fanout` against `ctx`'s target.
pub async fn run(ctx: &Ctx, p: &FanoutParams) -> anyhow::Result<RunResult> {
    let shared = Shared::new();
    let tallies: Tallies = Arc::default();
    let reads: Arc<Mutex<ReadStats>> = Arc::default();
    let conns = connect_all(ctx, p.subscribers, RAMP_CONCURRENCY, &shared).await?;
    let start = Instant::now();
    let wall_start = wall_ns();
    let measure_from = start + p.warmup;
    let deadline = measure_from + p.duration;
    let window_ns = (
        wall_start + p.warmup.as_nanos() as u64,
        wall_start + (p.warmup + p.duration).as_nanos() as u64,
    );
    let monitor = Monitor::spawn(
        shared.clone(),
        measure_from,
        MonitorOptions {
            show: ctx.progress,
            unit: "deliveries/s",
            pid: ctx.pid,
            watch: p.watch.clone(),
        },
    );
    let mut set = JoinSet::new();
    for c in conns {
        let rec = shared.recorder(measure_from);
        let (shared, tallies, reads) = (shared.clone(), tallies.clone(), reads.clone());
        set.spawn(async move {
            let mut mine = ReadStats::default();
            if let Err(e) = subscribe(c, deadline, rec, &tallies, &mut mine).await {
                shared.error(e.label(), &e);
            }
            reads
                .lock()
                .expect("read stats lock not poisoned")
                .add(&mine);
            shared.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    tokio::time::sleep_until(deadline.into()).await;
    let window = monitor.finish().await;
    let completed = shared.completed.load(Ordering::Relaxed);
    let processes = super::rate::process_figures(&window, completed);
    while set.join_next().await.is_some() {}
    let summary = summarise(&tallies, window_ns, p.subscribers as u64);
    let mut result = RunResult::new(
        "fanout",
        ctx.connector.target.to_string(),
        params! {
            "subscribers" => p.subscribers,
            "warmup_secs" => p.warmup.as_secs_f64(),
            "duration_secs" => p.duration.as_secs_f64(),
        },
        p.subscribers as u64,
        "deliveries/s",
        completed,
        window,
        shared.total(),
        &shared,
    );
    result
        .extra
        .insert("publishes".into(), summary.publishes.into());
    result.extra.insert(
        "publishes_per_sec".into(),
        (summary.publishes as f64 / p.duration.as_secs_f64()).into(),
    );
    result
        .extra
        .insert("publishes_complete".into(), summary.complete.into());
    result
        .extra
        .insert("missing_deliveries".into(), summary.missing.into());
    result.extra.insert(
        "last_delivery".into(),
        serde_json::to_value(Percentiles::from_histogram(&summary.last))?,
    );
    let r = *reads.lock().expect("read stats lock not poisoned");
    result.extra.insert(
        "read_batch".into(),
        serde_json::json!({
            "mean": r.deliveries as f64 / r.reads.max(1) as f64,
            "max": r.max,
        }),
    );
    if !p.watch.is_empty() {
        result.extra.insert("processes".into(), processes.into());
    }
    Ok(result)
}

/// Deliveries per read, over the whole run: a generator that keeps up
/// reads about one delivery per wake-up; large batches mean it was late.
#[derive(Debug, Default, Clone, Copy)]
struct ReadStats {
    reads: u64,
    deliveries: u64,
    max: u64,
}

impl ReadStats {
    fn add(&mut self, o: &ReadStats) {
        self.reads += o.reads;
        self.deliveries += o.deliveries;
        self.max = self.max.max(o.max);
    }
}

/// What the per-publish tallies add up to.
struct Summary {
    /// Publishes sent inside the window.
    publishes: u64,
    /// Of those, the ones every subscriber received.
    complete: u64,
    /// Deliveries short of `publishes × subscribers`.
    missing: u64,
    /// Publish-to-last-delivery over the complete ones.
    last: hdrhistogram::Histogram<u64>,
}

fn summarise(tallies: &Tallies, window_ns: (u64, u64), subscribers: u64) -> Summary {
    let mut s = Summary {
        publishes: 0,
        complete: 0,
        missing: 0,
        last: new_histogram(),
    };
    let t = tallies.lock().expect("tally lock not poisoned");
    for tally in t.values() {
        if tally.sent_ns < window_ns.0 || tally.sent_ns >= window_ns.1 {
            continue;
        }
        s.publishes += 1;
        s.missing += subscribers.saturating_sub(tally.count);
        if tally.count >= subscribers {
            s.complete += 1;
            let _ = s.last.record(tally.max_latency_ns.max(1));
        }
    }
    s
}

/// One subscriber: read until the deadline, stamping every delivery; then
/// close.
async fn subscribe(
    c: Connected,
    deadline: Instant,
    mut rec: Recorder,
    tallies: &Tallies,
    reads: &mut ReadStats,
) -> Result<(), ConnRunError> {
    let mask = mask_key();
    let mut stream = c.stream;
    let mut d = Deliveries::new(&c.leftover, mask);
    let mut local: BTreeMap<u64, Tally> = BTreeMap::new();
    let mut last_flush = Instant::now();
    let stop = tokio::time::sleep_until(deadline.into());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = stream.read(d.spare()) => {
                let n = r?;
                if n == 0 {
                    return Err(crate::reader::ReadError::Eof.into());
                }
                let now = Instant::now();
                let now_ns = wall_ns();
                let mut got = 0u64;
                let close = d.parse(n, |seq, sent_ns| {
                    let lat = now_ns.saturating_sub(sent_ns);
                    rec.record(now - Duration::from_nanos(lat), now);
                    got += 1;
                    let t = local.entry(seq).or_insert(Tally { sent_ns, ..Tally::default() });
                    t.count += 1;
                    t.max_latency_ns = t.max_latency_ns.max(lat);
                })?;
                if got > 0 {
                    reads.reads += 1;
                    reads.deliveries += got;
                    reads.max = reads.max.max(got);
                }
                if !d.pongs.is_empty() {
                    stream.write_all(&d.pongs).await?;
                    d.pongs.clear();
                }
                if let Some(code) = close {
                    return Err(ConnRunError::ServerClosed(code));
                }
                rec.tick(now);
                if now.duration_since(last_flush) >= FLUSH_EVERY {
                    merge(tallies, &mut local);
                    last_flush = now;
                }
            }
            // The window is over: stop reading, hand in the tallies.
            _ = &mut stop => break,
        }
    }
    merge(tallies, &mut local);
    rec.flush(Instant::now());
    // Close without waiting for deliveries still in flight to drain.
    let close = crate::frame::client_close(1000, mask);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.write_all(&close)).await;
    Ok(())
}

fn merge(tallies: &Tallies, local: &mut BTreeMap<u64, Tally>) {
    if local.is_empty() {
        return;
    }
    let mut t = tallies.lock().expect("tally lock not poisoned");
    for (seq, l) in std::mem::take(local) {
        let g = t.entry(seq).or_insert(Tally {
            sent_ns: l.sent_ns,
            ..Tally::default()
        });
        g.count += l.count;
        g.max_latency_ns = g.max_latency_ns.max(l.max_latency_ns);
    }
}
