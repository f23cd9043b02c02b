//! Precise send times for the open-loop `rate` scenario.
//!
//! tokio's timer wheel has a resolution of one millisecond, so a sender
//! that sleeps with it until each intended send time leaves up to a
//! millisecond late — and, measured from the intended time, that lateness
//! would be reported as latency of the server. The pacer is one OS thread
//! with a 1 µs timer slack that sleeps (nanosleep) until the earliest due
//! connection and wakes that connection's sender through a `Notify`. The
//! remaining lateness is what the `send_lag` figure reports.
//!
//! Every wake-up of the pacer is a context switch on the generator's core,
//! and with thousands of connections their send times are microseconds
//! apart. So the pacer sleeps at least `slack` each time: with 5,000
//! connections at 10 msg/s each, one wake-up per message cost 30 % of a
//! core (6 µs per message, measured with `perf stat --per-thread`) and
//! left the generator behind the offered load; a 100–250 µs slack gathers
//! the sends due meanwhile into one wake-up. A light load, whose sends
//! are further apart than the slack, still leaves on time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// One paced sender: when its messages are due and how to wake it.
pub struct Paced {
    pub start: Instant,
    pub interval: Duration,
    pub wake: Arc<Notify>,
}

/// Handle to the pacer thread; stops it when dropped.
pub struct Pacer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Pacer {
    /// Starts pacing `senders` until `deadline`, sleeping at least `slack`
    /// at a time.
    pub fn spawn(senders: Vec<Paced>, deadline: Instant, slack: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::Builder::new()
            .name("pacer".into())
            .spawn(move || run(senders, deadline, slack, &flag))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(senders: Vec<Paced>, deadline: Instant, slack: Duration, stop: &AtomicBool) {
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer
    // slack (default 50 µs) so that nanosleep wakes close to the asked time.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
    // Min-heap of (next due time, sender index, message index).
    let mut heap: BinaryHeap<Reverse<(Instant, usize, u64)>> = senders
        .iter()
        .enumerate()
        .map(|(i, s)| Reverse((s.start, i, 0)))
        .collect();
    while let Some(Reverse((due, i, k))) = heap.pop() {
        if due >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        // Never wake a sender early: one woken before its message is due
        // would find nothing to send and wait for the next wake, sending
        // that message a whole interval late.
        if due > now {
            thread::sleep(nap(due - now, slack));
            heap.push(Reverse((due, i, k)));
            continue;
        }
        let s = &senders[i];
        // notify_one keeps a permit if the sender is busy writing, so a
        // wake is never lost; the sender then sends everything due.
        s.wake.notify_one();
        // Next message of this sender that is not yet due.
        let step = s.interval.as_nanos().max(1);
        let now = Instant::now();
        let next_k = if now >= s.start {
            ((now - s.start).as_nanos() / step + 1) as u64
        } else {
            k + 1
        };
        let next_k = next_k.max(k + 1);
        heap.push(Reverse((
            s.start + Duration::from_nanos(next_k * step as u64),
            i,
            next_k,
        )));
    }
    // Wake everyone once more so senders notice the deadline.
    for s in &senders {
        s.wake.notify_one();
    }
}

/// How long the pacer sleeps when the next send is `until` away: at least
/// the slack (sends that fall due meanwhile leave together), at most 50 ms
/// (so a stop request is noticed promptly).
fn nap(until: Duration, slack: Duration) -> Duration {
    until.max(slack).min(Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use super::nap;
    use std::time::Duration;

    #[test]
    fn the_pacer_sleeps_at_least_the_slack_and_at_most_50_ms() {
        let us = Duration::from_micros;
        // Sends further apart than the slack: wake exactly when due.
        assert_eq!(nap(us(400), us(100)), us(400));
        // Denser sends: wait out the slack and send them together.
        assert_eq!(nap(us(3), us(100)), us(100));
        // No slack: one wake-up per send.
        assert_eq!(nap(us(3), Duration::ZERO), us(3));
        assert_eq!(
            nap(Duration::from_secs(1), us(100)),
            Duration::from_millis(50)
        );
    }
}
