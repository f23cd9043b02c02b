//! How a broadcast's direct sends are written (`[fanout] send_batch`).
//!
//! A broadcast offers one shared frame to every subscriber a worker owns
//! (the publisher's own worker in `Hub::deliver_local`, every other one in
//! its delivery task, `worker.rs`). Which subscriber gets a direct send and
//! what a refused or partial send turns into is decided in one place,
//! `Subscriber::offer` / `Subscriber::deliver`; this module only chooses
//! how the bytes reach the sockets:
//!
//! - `none`: one non-blocking `send` per subscriber (`Subscriber::deliver`).
//! - `io_uring`: the sockets are collected and written in batches of
//!   [`BATCH`] `IORING_OP_SEND` entries, all pointing at the one shared
//!   frame, one `io_uring_enter` per batch. On this kind of machine a
//!   system call's entry and exit are a good part of a small loopback send
//!   (`benches/fanout_send_batch.rs`: 0.79–0.85× the CPU per send).
//!
//! The batch is synchronous: `submit_and_wait` returns when every entry has
//! completed (`MSG_DONTWAIT`: a full socket fails at once with `EAGAIN`,
//! never waits), and each result is handed to `Subscriber::finish_direct`
//! before this thread runs anything else — so no other write to that
//! socket (the session's task lives on this thread) can come between, the
//! ordering a plain `send` gives.
//!
//! One ring per worker thread, made on its first batched broadcast. If the
//! kernel refuses one (too old for `SUBMIT_ALL`, io_uring disabled,
//! seccomp), that is logged once and the thread sends one by one (counted
//! per broadcast: `tidegate_fanout_send_batch_fallbacks_total`); a ring
//! that fails mid-batch is handled in `Batcher::abandon`.

// The only unsafe code of the product: an entry hands the kernel a raw
// pointer to the frame and a raw descriptor, which must stay valid until
// the entry completes (see `flush`).
#![allow(unsafe_code)]

use super::subscriber::Offer;
use super::{SendBatch, SharedFrame, Subscriber, Tally};
use io_uring::{opcode, types, IoUring};
use std::cell::RefCell;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;

/// Sends per `io_uring_enter` (and the ring's size). 64–1,024 measured
/// alike (`benches/fanout_send_batch.rs`); 256 keeps the ring small.
pub const BATCH: usize = 256;

const SEND_FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// One worker thread's ring and its batch in the making.
struct Batcher {
    ring: IoUring,
    /// The batch: index into the subscriber list, and the subscriber's
    /// socket, held so its descriptor stays open until the send completes.
    pending: Vec<(usize, Arc<TcpStream>)>,
}

enum Ring {
    /// No batched broadcast on this thread yet.
    Untried,
    Ready(Box<Batcher>),
    /// The kernel refused a ring (or one failed): plain sends.
    Off,
}

thread_local! {
    static RING: RefCell<Ring> = const { RefCell::new(Ring::Untried) };
}

/// A refused ring is logged once per process, not per worker.
static LOGGED: AtomicBool = AtomicBool::new(false);

/// Faults the unit tests make happen (`src/fanout/tests/sockets.rs`).
#[cfg(test)]
#[derive(Clone, Copy)]
pub(super) enum Fault {
    /// This thread's ring is refused (as by a kernel without io_uring).
    Refused,
    /// The next `io_uring_enter` fails before the kernel takes anything.
    Untaken,
    /// The next one fails after the kernel took the batch, its
    /// completions lost.
    Unfinished,
}

#[cfg(test)]
thread_local! {
    static FAULT: std::cell::Cell<Option<Fault>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
pub(super) fn inject(fault: Fault) {
    match fault {
        Fault::Refused => RING.with(|r| *r.borrow_mut() = Ring::Off),
        _ => FAULT.set(Some(fault)),
    }
}

#[cfg(test)]
impl Fault {
    fn inject(self, ring: &mut IoUring) -> std::io::Result<()> {
        if let Fault::Unfinished = self {
            ring.submit()?;
            ring.completion().for_each(drop);
        }
        Err(std::io::Error::from_raw_os_error(libc::EBUSY))
    }
}

/// Offer `frame` to each subscriber in `subs` that `pick` selects, on
/// this thread, adding the outcomes to `tally`.
pub(super) fn offer_all(
    subs: &[Arc<Subscriber>],
    frame: &SharedFrame,
    here: ThreadId,
    mode: SendBatch,
    mut pick: impl FnMut(&Subscriber) -> bool,
    tally: &mut Tally,
) {
    if mode == SendBatch::IoUring {
        let batched = RING.with(|r| {
            // Not re-entered (nothing below publishes), but a busy cell
            // just means plain sends.
            let Ok(mut r) = r.try_borrow_mut() else {
                return false;
            };
            let Some(b) = ready(&mut r) else {
                return false;
            };
            let ok = b.offer_all(subs, frame, here, &mut pick, tally);
            if !ok {
                // Dropping the ring cancels what it still holds; the
                // bytes and sockets of those sends were leaked (`abandon`).
                *r = Ring::Off;
                tally.one_by_one = true;
            }
            true
        });
        if batched {
            return;
        }
        tally.one_by_one = true;
    }
    for sub in subs.iter().filter(|s| pick(s)) {
        tally.add(sub.deliver(frame, here));
    }
}

/// This thread's ring, made on first use.
fn ready(r: &mut Ring) -> Option<&mut Batcher> {
    if matches!(r, Ring::Untried) {
        *r = match IoUring::builder()
            // Every entry is submitted even if one fails early, so the
            // wait for all of them returns.
            .setup_submit_all()
            .build(BATCH as u32)
        {
            Ok(ring) => Ring::Ready(Box::new(Batcher {
                ring,
                pending: Vec::with_capacity(BATCH),
            })),
            Err(e) => {
                refused(&e);
                Ring::Off
            }
        };
    }
    match r {
        Ring::Ready(b) => Some(b),
        _ => None,
    }
}

fn refused(e: &std::io::Error) {
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            error = %e,
            "fanout.send_batch = \"io_uring\": no io_uring here, broadcasts send one by one"
        );
    }
}

impl Batcher {
    /// Returns false if the ring failed (after finishing the broadcast
    /// with plain sends).
    fn offer_all(
        &mut self,
        subs: &[Arc<Subscriber>],
        frame: &SharedFrame,
        here: ThreadId,
        pick: &mut impl FnMut(&Subscriber) -> bool,
        tally: &mut Tally,
    ) -> bool {
        let mut ok = true;
        for (i, sub) in subs.iter().enumerate().filter(|(_, s)| pick(s)) {
            match sub.offer(frame, here) {
                Offer::Done(d) => tally.add(d),
                Offer::Direct(socket) if ok => {
                    self.pending.push((i, socket));
                    if self.pending.len() == BATCH {
                        ok = self.flush(subs, frame, tally);
                    }
                }
                Offer::Direct(socket) => {
                    let written = std::io::Write::write(&mut &*socket, frame.wire());
                    tally.add(sub.finish_direct(frame, written));
                }
            }
        }
        ok && self.flush(subs, frame, tally)
    }

    /// Write the batch: every pending socket gets the whole frame (or
    /// what it takes), one system call for all. Returns false if the ring
    /// failed (see `abandon`).
    fn flush(&mut self, subs: &[Arc<Subscriber>], frame: &SharedFrame, tally: &mut Tally) -> bool {
        let n = self.pending.len();
        if n == 0 {
            return true;
        }
        let wire = frame.wire();
        for (k, (_, socket)) in self.pending.iter().enumerate() {
            let entry = opcode::Send::new(
                types::Fd(socket.as_raw_fd()),
                wire.as_ptr(),
                wire.len() as u32,
            )
            .flags(SEND_FLAGS)
            .build()
            .user_data(k as u64);
            // SAFETY: the frame's bytes (`frame`, borrowed for this call)
            // and every descriptor (`pending` holds its socket) stay valid
            // until the entry completes: this function returns only after
            // reaping all `n` completions, or — if the ring fails first —
            // `abandon` leaks both rather than free what the kernel may
            // still read. The ring holds BATCH entries and is empty here.
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                unreachable!("a ring of BATCH entries holds one batch");
            }
        }
        let mut results = [None::<i32>; BATCH];
        let mut done = 0;
        while done < n {
            let entered = self.enter(n - done);
            done += self.reap(&mut results);
            if let Err(e) = entered {
                refused(&e);
                self.abandon(subs, frame, &results, tally);
                return false;
            }
        }
        for ((i, _), result) in self.pending.drain(..).zip(results) {
            // Every entry has its completion by now (`done == n`).
            let written = result.map_or(Err(std::io::ErrorKind::WouldBlock.into()), sent);
            if let Some(sub) = subs.get(i) {
                tally.add(sub.finish_direct(frame, written));
            }
        }
        true
    }

    /// Submit what is queued and wait for `want` completions.
    fn enter(&mut self, want: usize) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(fault) = FAULT.take() {
            return fault.inject(&mut self.ring);
        }
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Move the completions that arrived into `results`; how many.
    fn reap(&mut self, results: &mut [Option<i32>; BATCH]) -> usize {
        let mut got = 0;
        for cqe in self.ring.completion() {
            if let Some(slot) = results.get_mut(cqe.user_data() as usize) {
                *slot = Some(cqe.result());
                got += 1;
            }
        }
        got
    }

    /// The ring failed (not seen in practice: the sends are inline and
    /// non-blocking). Each send of the batch ends one of three ways:
    /// completed (handled as usual); never taken by the kernel — those are
    /// still in the submission queue, the last ones pushed — so sent now
    /// with a plain `send`, in the same place in the client's stream; or
    /// taken and not completed, so the kernel may still write some or all
    /// of it. Resending that could duplicate or tear a frame, so its
    /// session closes (1011, [`Subscriber::lose`]), and the frame's bytes
    /// and the descriptor are leaked rather than freed under the kernel.
    fn abandon(
        &mut self,
        subs: &[Arc<Subscriber>],
        frame: &SharedFrame,
        results: &[Option<i32>; BATCH],
        tally: &mut Tally,
    ) {
        let taken = self.pending.len() - self.ring.submission().len();
        let mut in_flight = false;
        for (k, (i, socket)) in self.pending.drain(..).enumerate() {
            let written = match results[k] {
                Some(r) => sent(r),
                None if k >= taken => std::io::Write::write(&mut &*socket, frame.wire()),
                None => {
                    std::mem::forget(socket);
                    in_flight = true;
                    if let Some(sub) = subs.get(i) {
                        sub.lose();
                        tally.lost += 1;
                    }
                    continue;
                }
            };
            if let Some(sub) = subs.get(i) {
                tally.add(sub.finish_direct(frame, written));
            }
        }
        if in_flight {
            std::mem::forget(frame.wire().clone());
        }
    }
}

/// A send's completion as a `write` result.
fn sent(result: i32) -> std::io::Result<usize> {
    match result {
        r if r >= 0 => Ok(r as usize),
        r => Err(std::io::Error::from_raw_os_error(-r)),
    }
}
