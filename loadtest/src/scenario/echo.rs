//! `echo`: closed-loop round trips. Each connection keeps `in_flight`
//! messages outstanding: it sends that many, then one more for each echo
//! that comes back, so throughput is bounded by the server, not a timer.
//!
//! The hot loop per connection is: one read, a header scan of everything
//! that arrived, one `Instant::now()`, and one write of exactly as many
//! pre-built frames as came back (from a buffer built once, so there is no
//! per-message work beyond the system calls).

use std::collections::VecDeque;
use std::iter::repeat_n;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::{close_gracefully, connect_all, mask_key, start_clock, ConnRunError, Ctx};
use crate::conn::Connected;
use crate::frame::{FrameBatch, OP_BINARY, OP_TEXT};
use crate::params;
use crate::reader::{Batch, FrameReader, READ_BUF};
use crate::result::RunResult;
use crate::stats::{Recorder, Shared};

/// Parameters of an `echo` run.
#[derive(Debug, Clone)]
pub struct EchoParams {
    pub connections: usize,
    pub size: usize,
    pub in_flight: usize,
    pub text: bool,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Runs `echo` against `ctx`'s target.
pub async fn run(ctx: &Ctx, p: &EchoParams) -> anyhow::Result<RunResult> {
    let shared = Shared::new();
    let conns = connect_all(ctx, p.connections, 64, &shared).await?;
    let window = (p.warmup, p.duration);
    let (t, monitor) = start_clock(ctx, &shared, window, "msgs/s", Vec::new());
    let (measure_from, deadline) = (t.measure_from, t.deadline);
    let opcode = if p.text { OP_TEXT } else { OP_BINARY };
    let mut set = JoinSet::new();
    for c in conns {
        let mask = mask_key();
        let frames = FrameBatch::new(opcode, p.size, p.in_flight, mask);
        let rec = shared.recorder(measure_from);
        let (shared, in_flight) = (shared.clone(), p.in_flight);
        set.spawn(async move {
            if let Err(e) = drive(c, frames, in_flight, rec, deadline, mask).await {
                shared.error(e.label(), &e);
            }
            shared.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    tokio::time::sleep_until(deadline.into()).await;
    let window = monitor.finish().await;
    while set.join_next().await.is_some() {}
    let completed = shared.completed.load(Ordering::Relaxed);
    Ok(RunResult::new(
        "echo",
        ctx.connector.target.to_string(),
        params! {
            "connections" => p.connections,
            "size" => p.size,
            "in_flight" => p.in_flight,
            "frame" => if p.text { "text" } else { "binary" },
            "warmup_secs" => p.warmup.as_secs_f64(),
            "duration_secs" => p.duration.as_secs_f64(),
        },
        p.connections as u64,
        "msgs/s",
        completed,
        window,
        shared.total(),
        &shared,
    ))
}

/// One connection's closed loop until `deadline`, then a clean close.
///
/// Reading and writing are never serialised: with large messages and a
/// deep pipeline, a client that blocks in a write while not reading would
/// deadlock against a server that blocks writing echoes back. So the loop
/// selects between "read what came back" and "write some of what is owed",
/// tracking owed bytes rather than whole frames.
async fn drive(
    c: Connected,
    frames: FrameBatch,
    in_flight: usize,
    mut rec: Recorder,
    deadline: Instant,
    mask: [u8; 4],
) -> Result<(), ConnRunError> {
    let mut reader = FrameReader::new(READ_BUF, &c.leftover, mask);
    let (mut rd, mut wr) = tokio::io::split(c.stream);
    let mut batch = Batch::default();
    let frame_len = frames.frame_len();
    // Send time of every outstanding message, oldest first: echoes come
    // back in order on one connection.
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(in_flight);
    sent_at.extend(repeat_n(Instant::now(), in_flight));
    // Bytes owed to the server, and how far into a frame the next byte is.
    let mut owed = in_flight * frame_len;
    let mut offset = 0usize;
    let mut pongs: Vec<u8> = Vec::new();
    let mut stopping = false;
    loop {
        // Pongs may only go in between two frames.
        if offset == 0 && !pongs.is_empty() {
            wr.write_all(&pongs).await?;
            pongs.clear();
        }
        if stopping && owed == 0 {
            break;
        }
        tokio::select! {
            // Echoes (and pings, or a close) from the server.
            r = reader.read_batch(&mut rd, &mut batch) => {
                r?;
                let now = Instant::now();
                pongs.extend_from_slice(&batch.pongs);
                if let Some(code) = batch.close {
                    return Err(ConnRunError::ServerClosed(code));
                }
                let n = batch.messages as usize;
                for _ in 0..n {
                    let t = sent_at.pop_front().ok_or(ConnRunError::Unexpected)?;
                    rec.record(t, now);
                }
                rec.tick(now);
                if now >= deadline && !stopping {
                    // Finish the frame being written, send nothing more.
                    stopping = true;
                    owed = (frame_len - offset) % frame_len;
                } else if !stopping && n > 0 {
                    // Refill the pipeline: as many frames as came back.
                    owed += n * frame_len;
                    sent_at.extend(repeat_n(now, n));
                }
            }
            // Owed frame bytes, from the pre-built batch, as much as the
            // socket takes.
            w = wr.write(frames.window(offset, owed)), if owed > 0 => {
                let w = w?;
                if w == 0 {
                    return Err(ConnRunError::Write(std::io::ErrorKind::WriteZero.into()));
                }
                owed -= w;
                offset = (offset + w) % frame_len;
            }
        }
    }
    rec.flush(Instant::now());
    let mut s = rd.unsplit(wr);
    close_gracefully(&mut s, &mut reader, mask).await
}
