//! `rate`: open-loop load. Each connection sends on a fixed schedule
//! (`rate` messages per second) whatever the server does, and latency is
//! measured from each message's *intended* send time, so a stall of the
//! server shows up in full in the percentiles instead of silently slowing
//! the sender (coordinated omission).
//!
//! Message `i` of a connection is meant to leave at `start + i / rate`.
//! Echoes come back in order, so the receiver knows which message each echo
//! answers by counting, and no timestamps cross between the two halves.
//! Senders are woken by the [`crate::pacer`] thread, which keeps better time
//! than tokio's millisecond timer. When a sender wakes late anyway (a busy
//! core) it sends every message that is due in one write; how late it was
//! is reported as `send_lag`, the generator's own contribution to the
//! latency figures.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::{close_gracefully, connect_all, mask_key, start_clock, ConnRunError, Ctx};
use crate::conn::Connected;
use crate::frame::{FrameBatch, OP_BINARY, OP_TEXT};
use crate::pacer::{Paced, Pacer};
use crate::params;
use crate::reader::{Batch, FrameReader, READ_BUF};
use crate::result::RunResult;
use crate::stats::{Percentiles, Recorder, Shared};

/// How long after the last send a connection waits for outstanding echoes;
/// the ones still missing then are reported as unanswered.
const GRACE: Duration = Duration::from_secs(2);
/// Most frames written in one call when catching up.
const MAX_BURST: usize = 256;

/// Parameters of a `rate` run.
#[derive(Debug, Clone)]
pub struct RateParams {
    pub connections: usize,
    /// Messages per second per connection.
    pub rate: f64,
    pub size: usize,
    /// Shortest sleep of the pacer (see [`crate::pacer`]).
    pub pacer_slack: Duration,
    pub text: bool,
    pub warmup: Duration,
    pub duration: Duration,
    /// Processes sampled over the window besides the target (`--pid` after
    /// the first): e.g. the application behind a proxy.
    pub watch: Vec<u32>,
}

/// Runs `rate` against `ctx`'s target.
pub async fn run(ctx: &Ctx, p: &RateParams) -> anyhow::Result<RunResult> {
    anyhow::ensure!(
        p.rate > 0.0 && p.rate <= 1e6,
        "--rate must be in (0, 1000000] per connection"
    );
    let shared = Shared::new();
    let lag = Shared::new();
    let unanswered = Arc::new(Mutex::new(0u64));
    let conns = connect_all(ctx, p.connections, 64, &shared).await?;
    let interval = Duration::from_secs_f64(1.0 / p.rate);
    let window = (p.warmup, p.duration);
    let (t, monitor) = start_clock(ctx, &shared, window, "msgs/s", p.watch.clone());
    let (start, measure_from, deadline) = (t.start, t.measure_from, t.deadline);
    let opcode = if p.text { OP_TEXT } else { OP_BINARY };
    let n = conns.len();
    let mut paced = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    for (i, c) in conns.into_iter().enumerate() {
        let mask = mask_key();
        let frames = FrameBatch::new(opcode, p.size, MAX_BURST, mask);
        // Spread the connections' schedules evenly over one interval so
        // they do not all fire on the same timer tick.
        let phase = interval.mul_f64(i as f64 / n as f64);
        let sched = Schedule {
            start: start + phase,
            interval,
            deadline,
        };
        let wake = Arc::new(Notify::new());
        paced.push(Paced {
            start: sched.start,
            interval,
            wake: wake.clone(),
        });
        let (rec, lag_rec) = (shared.recorder(measure_from), lag.recorder(measure_from));
        let (shared, unanswered) = (shared.clone(), unanswered.clone());
        set.spawn(async move {
            match drive(c, frames, sched, wake, rec, lag_rec, mask).await {
                Ok(missing) => *unanswered.lock().expect("not poisoned") += missing,
                Err(e) => shared.error(e.label(), &e),
            }
            shared.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let pacer = Pacer::spawn(paced, deadline, p.pacer_slack)?;
    tokio::time::sleep_until(deadline.into()).await;
    let window = monitor.finish().await;
    let processes = process_figures(&window, shared.completed.load(Ordering::Relaxed));
    while set.join_next().await.is_some() {}
    drop(pacer);
    let mut result = RunResult::new(
        "rate",
        ctx.connector.target.to_string(),
        params! {
            "connections" => p.connections,
            "rate_per_connection" => p.rate,
            "offered_msgs_per_sec" => p.rate * p.connections as f64,
            "size" => p.size,
            "pacer_slack_us" => p.pacer_slack.as_micros() as u64,
            "frame" => if p.text { "text" } else { "binary" },
            "warmup_secs" => p.warmup.as_secs_f64(),
            "duration_secs" => p.duration.as_secs_f64(),
        },
        p.connections as u64,
        "msgs/s",
        shared.completed.load(Ordering::Relaxed),
        window,
        shared.total(),
        &shared,
    );
    let missing = *unanswered.lock().expect("not poisoned");
    result.extra.insert("unanswered".into(), missing.into());
    if !p.watch.is_empty() {
        result.extra.insert("processes".into(), processes.into());
    }
    result.extra.insert(
        "send_lag".into(),
        serde_json::to_value(Percentiles::from_histogram(&lag.total()))?,
    );
    Ok(result)
}

/// The watched processes' samples with their CPU per message and in percent
/// of one core over the window, as JSON for `extra.processes`.
pub(super) fn process_figures(
    window: &crate::monitor::Window,
    completed: u64,
) -> Vec<serde_json::Value> {
    let secs = window.wall.as_secs_f64();
    window
        .processes
        .iter()
        .map(|s| {
            let mut v = serde_json::json!(s);
            v["cpu_us_per_message"] = serde_json::json!(s
                .cpu_secs
                .filter(|_| completed > 0)
                .map(|c| c * 1e6 / completed as f64));
            v["oncpu_us_per_message"] = serde_json::json!(s
                .oncpu_secs
                .filter(|_| completed > 0)
                .map(|c| c * 1e6 / completed as f64));
            v["cpu_pct"] =
                serde_json::json!(s.cpu_secs.filter(|_| secs > 0.0).map(|c| c * 100.0 / secs));
            v
        })
        .collect()
}

/// When a connection's messages are meant to leave.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    interval: Duration,
    deadline: Instant,
}

impl Schedule {
    /// Intended send time of message `i`.
    fn at(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos(i.saturating_mul(self.interval.as_nanos() as u64))
    }

    /// How many messages are due by `now` (intended time <= now), counting
    /// only those before the deadline.
    fn due(&self, now: Instant) -> u64 {
        if now < self.start {
            return 0;
        }
        let now = now.min(self.deadline);
        let step = self.interval.as_nanos().max(1);
        let due = (now - self.start).as_nanos() / step + 1;
        // A message intended exactly at the deadline is not sent.
        let last = (self.deadline - self.start).as_nanos().div_ceil(step);
        due.min(last) as u64
    }
}

/// One connection: sender and receiver run concurrently in one task on the
/// two halves of the socket. Returns how many messages went unanswered.
async fn drive(
    c: Connected,
    frames: FrameBatch,
    sched: Schedule,
    wake: Arc<Notify>,
    mut rec: Recorder,
    mut lag: Recorder,
    mask: [u8; 4],
) -> Result<u64, ConnRunError> {
    let mut reader = FrameReader::new(READ_BUF, &c.leftover, mask);
    let (mut rd, mut wr) = tokio::io::split(c.stream);
    // Pongs owed to the server, queued by the receiver for the sender.
    let pongs = Mutex::new(Vec::<u8>::new());
    // Total sent, published by the sender when it is done.
    let (done_tx, mut done_rx) = watch::channel(None::<u64>);

    let sender = async {
        let mut sent = 0u64;
        loop {
            let now = Instant::now();
            if now >= sched.deadline {
                break;
            }
            let due = sched.due(now);
            if due > sent {
                lag.record(sched.at(sent), now);
                lag.tick(now);
                let mut left = (due - sent) as usize;
                while left > 0 {
                    let k = left.min(frames.capacity());
                    wr.write_all(frames.frames(k)).await?;
                    left -= k;
                }
                sent = due;
            }
            let owed = std::mem::take(&mut *pongs.lock().expect("not poisoned"));
            if !owed.is_empty() {
                wr.write_all(&owed).await?;
            }
            // Woken by the pacer when the next message is due; the
            // deadline sleep is a backstop should a wake go missing.
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(sched.deadline.into()) => {}
            }
        }
        let _ = done_tx.send(Some(sent));
        Ok::<u64, ConnRunError>(sent)
    };

    let receiver = async {
        let mut batch = Batch::default();
        let mut received = 0u64;
        let grace_end = tokio::time::sleep_until((sched.deadline + GRACE).into());
        tokio::pin!(grace_end);
        loop {
            let done = *done_rx.borrow();
            if done.is_some_and(|sent| received >= sent) {
                break;
            }
            tokio::select! {
                r = reader.read_batch(&mut rd, &mut batch) => {
                    r?;
                    let now = Instant::now();
                    for _ in 0..batch.messages {
                        rec.record(sched.at(received), now);
                        received += 1;
                    }
                    rec.tick(now);
                    if !batch.pongs.is_empty() {
                        pongs.lock().expect("not poisoned").extend_from_slice(&batch.pongs);
                    }
                    if let Some(code) = batch.close {
                        return Err(ConnRunError::ServerClosed(code));
                    }
                }
                // The sender finished: re-check whether all echoes are in.
                _ = done_rx.changed() => {}
                // Echoes still missing this long after the last send are lost.
                _ = &mut grace_end => break,
            }
        }
        Ok::<u64, ConnRunError>(received)
    };

    let (sent, received) = tokio::try_join!(sender, receiver)?;
    rec.flush(Instant::now());
    let mut s = rd.unsplit(wr);
    close_gracefully(&mut s, &mut reader, mask).await?;
    Ok(sent.saturating_sub(received))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_counts_due_messages() {
        let start = Instant::now();
        let s = Schedule {
            start,
            interval: Duration::from_millis(10),
            deadline: start + Duration::from_millis(100),
        };
        assert_eq!(s.due(start - Duration::from_millis(1)), 0);
        assert_eq!(s.due(start), 1);
        assert_eq!(s.due(start + Duration::from_millis(9)), 1);
        assert_eq!(s.due(start + Duration::from_millis(10)), 2);
        assert_eq!(s.due(start + Duration::from_millis(95)), 10);
        // Messages at 0, 10, ..., 90 ms: ten, never more, however late.
        assert_eq!(s.due(start + Duration::from_secs(5)), 10);
        assert_eq!(s.at(3), start + Duration::from_millis(30));
    }
}
