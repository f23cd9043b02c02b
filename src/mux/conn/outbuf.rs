//! The write buffer of one mux connection (docs/design/mux-write-path.md
//! §1): sessions append `(mux header, Bytes)` entries under a short lock,
//! and whoever appends to an idle buffer becomes its **flusher** — after
//! its own poll round it writes everything queued with one vectored write
//! ([`super::writer`]). Appends made meanwhile by other sessions leave in
//! the same write. A write that would block is **parked** on the
//! connection's own task (the socket is polled with that task's waker),
//! which finishes it; there is no channel and no second task per
//! connection.
//!
//! Bounded in bytes and entries: every client MESSAGE is charged its body
//! plus `QUEUED_FRAME_COST` against `mux.connection_queue_bytes` until it
//! is written. A session whose frame does not fit waits (it stops reading
//! its client: the backpressure) and is woken when a write frees room.
//! Control frames (pongs, CLOSE, OPEN) are never refused; pongs are
//! coalesced in two slots, so an application that floods pings without
//! reading costs two slots, not a queue.

use super::writer::Writer;
use super::Out;
use crate::mux::detach;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tidegate_mux::codec::Frame;

mod hold;
pub(super) use hold::Hold;

/// A queued entry: what to write and the budget it holds until written.
pub(super) struct Entry {
    pub(super) out: Out,
    /// Bytes of `connection_queue_bytes` this entry holds (0: control).
    pub(super) charge: usize,
}

/// Answers to the application's pings not yet written. Only the latest
/// ping of each kind is answered (RFC 6455 §5.5.3 allows it for WebSocket
/// pings; a mux PING only proves liveness).
#[derive(Default)]
pub(super) struct Pongs {
    pub(super) ws: Option<Bytes>,
    pub(super) mux: Option<Bytes>,
}

/// Everything under the short lock.
#[derive(Default)]
pub(super) struct State {
    /// Entries not yet taken by the flusher, in append order.
    pub(super) entries: VecDeque<Entry>,
    /// Budget held by `entries` and by the batch being written.
    charged: usize,
    pub(super) pongs: Pongs,
    /// Someone owns the flush: a session until the end of its poll round,
    /// or the connection task while `parked`. Appenders then only append.
    flushing: bool,
    /// A write would block: the connection task continues the flush when
    /// the socket is writable (it was polled with that task's waker).
    parked: bool,
    /// The flush owner handed the flush to the connection task, which
    /// writes at its next poll ([`OutBuf::hand_over`]).
    handed: bool,
    /// The writer is done (Close written, the socket failed, or the
    /// connection ended): appends are dropped, nobody waits for room.
    pub(super) ended: bool,
    /// The connection task, which finishes parked writes.
    conn_waker: Option<Waker>,
    /// Sessions waiting for room, each at most once per `space_gen`.
    space: Vec<Waker>,
    /// Bumped whenever `space` is woken (never 0: 0 means "not waiting").
    space_gen: u32,
}

impl State {
    fn next_gen(&mut self) {
        self.space_gen = self.space_gen.wrapping_add(1).max(1);
    }

    /// Move the space waiters out (to be woken outside the lock).
    fn take_space(&mut self, into: &mut Vec<Waker>) {
        if !self.space.is_empty() {
            self.next_gen();
            std::mem::swap(&mut self.space, into);
        }
    }
}

/// No room in the buffer: the frame comes back, to wait in the session.
pub struct Full(pub Frame);

pub(super) struct OutBuf {
    state: Mutex<State>,
    /// The socket side; locked only by the flush owner (never contended:
    /// `State::flushing` says who owns it).
    writer: Mutex<Writer>,
    /// `mux.connection_queue_bytes`.
    limit: usize,
    /// `mux.write_delay`: how long the connection task holds a handed
    /// flush for frames of other sessions to join it.
    delay: Duration,
    /// Queued bytes at which a held flush is written at once
    /// (`mux.batch_bytes`: one more frame would start a second message).
    soon: usize,
}

/// Frames queued at which a held flush is written at once.
const HOLD_FRAMES: usize = 16;

/// How a flush ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flushed {
    /// Everything queued is written.
    Done,
    /// A write would block; the connection task finishes it.
    Parked,
    /// The writer is done (Close written or the socket failed).
    Ended,
}

impl OutBuf {
    pub(super) fn new(writer: Writer, limit: usize, delay: Duration, soon: usize) -> OutBuf {
        OutBuf {
            state: Mutex::new(State {
                space_gen: 1,
                ..State::default()
            }),
            writer: Mutex::new(writer),
            limit,
            delay,
            soon,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Only plain queue operations happen under this lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A held flush stops waiting: a whole `batch_bytes` message is queued,
    /// or enough frames that waiting for more saves little and delays
    /// many (a closed loop of a few dozen clients fills it at once).
    fn batch_full(&self, st: &State) -> bool {
        st.charged >= self.soon || st.entries.len() >= HOLD_FRAMES
    }

    /// Queue a client frame charged `cost` bytes (its body plus
    /// `QUEUED_FRAME_COST`). `Ok(true)`: the caller became the flusher and
    /// must call [`OutBuf::flush`] before its poll ends. `Err(Full)`: no
    /// room; the caller's waker is registered (once per wake-up round,
    /// tracked by `waiting`) and runs when a write frees room.
    pub(super) fn push_data(
        &self,
        frame: Frame,
        cost: usize,
        cx: &Context<'_>,
        waiting: &mut u32,
    ) -> Result<bool, Full> {
        // A frame larger than the whole budget takes all of it.
        let charge = cost.min(self.limit);
        let mut st = self.lock();
        if st.ended {
            // The connection is gone; the session hears it from its inbox.
            return Ok(false);
        }
        if st.charged > 0 && st.charged + charge > self.limit {
            if *waiting != st.space_gen {
                *waiting = st.space_gen;
                st.space.push(cx.waker().clone());
            }
            return Err(Full(frame));
        }
        *waiting = 0;
        // A flush the connection task holds for `mux.write_delay`.
        let held = st.handed && !self.delay.is_zero();
        let was_full = held && self.batch_full(&st);
        st.charged += charge;
        // While a write is blocked the frame waits: it must not pin the
        // client's read arena it is a slice of.
        let header = frame.header();
        let body = if st.parked {
            detach(frame.body)
        } else {
            frame.body
        };
        st.entries.push_back(Entry {
            out: Out::Frame { header, body },
            charge,
        });
        let first = !std::mem::replace(&mut st.flushing, true);
        // A held flush has a full message: write it now.
        let full = held && !was_full && self.batch_full(&st);
        let waker = full.then(|| st.conn_waker.clone()).flatten();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(first)
    }

    /// Queue a control frame (never refused, never charged) and make sure
    /// someone flushes it: the connection task is woken unless a flush
    /// is already owned.
    pub(super) fn push_control(&self, out: Out) {
        let waker = {
            let mut st = self.lock();
            if st.ended {
                return;
            }
            st.entries.push_back(Entry { out, charge: 0 });
            if st.flushing {
                None
            } else {
                st.conn_waker.clone()
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Write what is queued, as the flush owner (after `push_data`
    /// returned `Ok(true)`). Writes are polled with the connection task's
    /// waker, so a write that would block parks on that task.
    pub(super) fn flush(&self) -> Flushed {
        let waker = self.lock().conn_waker.clone();
        match waker {
            Some(w) => self.flush_with(&w),
            None => {
                // The connection task has not run yet: it takes the flush
                // over at its first poll.
                self.lock().parked = true;
                Flushed::Parked
            }
        }
    }

    /// As the flush owner (after `push_data` returned `Ok(true)`), let the
    /// connection task write instead, at its next poll. On a
    /// single-threaded worker the woken task runs after the sessions
    /// already woken in this tick, so their frames join the same write
    /// instead of each session writing its own.
    pub(super) fn hand_over(&self) {
        let waker = {
            let mut st = self.lock();
            st.handed = true;
            st.conn_waker.clone()
        };
        // Without a waker the connection task has not run yet; it takes the
        // flush over at its first poll.
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The connection task's part (polled beside its reader): take over a
    /// parked or handed flush (a handed one after `mux.write_delay`, kept
    /// in `hold`), or flush control frames it queued itself. Ready once
    /// the writer is done.
    pub(super) fn poll_drive(&self, cx: &mut Context<'_>, hold: &mut Hold) -> Poll<()> {
        {
            let mut st = self.lock();
            if st.ended {
                return Poll::Ready(());
            }
            if !st
                .conn_waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                st.conn_waker = Some(cx.waker().clone());
            }
            if !self.delay.is_zero()
                && st.handed
                && !st.parked
                && !self.batch_full(&st)
                && hold.waiting(cx, self.delay)
            {
                return Poll::Pending;
            }
            hold.end();
            if st.parked || st.handed {
                st.parked = false;
                st.handed = false;
            } else if st.flushing || st.entries.is_empty() {
                return Poll::Pending;
            } else {
                st.flushing = true;
            }
        }
        match self.flush_with(cx.waker()) {
            Flushed::Ended => Poll::Ready(()),
            Flushed::Done | Flushed::Parked => Poll::Pending,
        }
    }

    /// The flush loop: take a batch under the lock, write it without the
    /// lock, release its budget, until nothing is left or a write blocks.
    fn flush_with(&self, waker: &Waker) -> Flushed {
        let mut cx = Context::from_waker(waker);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut wake = std::mem::take(&mut w.to_wake);
        let outcome = loop {
            let polled = w.poll_write(&mut cx);
            let mut st = self.lock();
            st.charged -= std::mem::take(&mut w.released);
            if st.charged <= self.limit / 2 {
                // Room again (hysteresis: not on every frame written):
                // everyone waiting retries.
                st.take_space(&mut wake);
            }
            match polled {
                Poll::Ready(Ok(())) if w.closing => {
                    drop(st);
                    if w.poll_flush(&mut cx).is_pending() {
                        break self.park(&mut self.lock());
                    }
                    break self.end_locked(&mut self.lock(), &mut wake);
                }
                Poll::Ready(Ok(())) if !st.entries.is_empty() => w.take_batch(&mut st),
                Poll::Ready(Ok(())) if w.needs_flush() => {
                    // TLS: rustls holds the bytes until flushed.
                    drop(st);
                    match w.poll_flush(&mut cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => break self.end_locked(&mut self.lock(), &mut wake),
                        Poll::Pending => break self.park(&mut self.lock()),
                    }
                }
                Poll::Ready(Ok(())) => {
                    st.flushing = false;
                    break Flushed::Done;
                }
                Poll::Ready(Err(_)) => break self.end_locked(&mut st, &mut wake),
                Poll::Pending => break self.park(&mut st),
            }
        };
        for waker in wake.drain(..) {
            waker.wake();
        }
        // The vector keeps its capacity for the next flush.
        w.to_wake = wake;
        outcome
    }

    /// A write would block: what waits from now on is detached from the
    /// read buffers it was cut from.
    fn park(&self, st: &mut State) -> Flushed {
        st.parked = true;
        for e in st.entries.iter_mut() {
            if let Out::Frame { body, .. } = &mut e.out {
                *body = detach(std::mem::take(body));
            }
        }
        Flushed::Parked
    }

    /// The writer is done: drop what is queued, let waiting sessions go.
    fn end_locked(&self, st: &mut State, wake: &mut Vec<Waker>) -> Flushed {
        st.ended = true;
        st.flushing = false;
        st.parked = false;
        st.handed = false;
        st.entries.clear();
        st.charged = 0;
        st.take_space(wake);
        Flushed::Ended
    }

    /// The connection ended: nothing more is written or waited for.
    pub(super) fn end(&self) {
        let mut wake = Vec::new();
        {
            let mut st = self.lock();
            self.end_locked(&mut st, &mut wake);
        }
        for w in wake {
            w.wake();
        }
    }

    /// Bytes of the budget held now (tests, metrics).
    #[cfg(test)]
    pub(super) fn charged(&self) -> usize {
        self.lock().charged
    }
}

#[cfg(test)]
mod tests;
