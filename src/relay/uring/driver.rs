//! One io_uring per worker thread and the task that drives it.
//!
//! Every socket handed to the ring has a slot here: its multishot receive
//! (armed once, completing into buffers of the worker's provided-buffer
//! ring), the received buffers the session has not read yet, and its
//! outbound bytes (one send in flight at a time, so a socket's bytes leave
//! in order; what a session writes meanwhile waits behind it).
//!
//! The driver task reaps every completion, wakes the sessions it concerns
//! and yields, so those sessions run (and queue their sends) before it runs
//! again and submits everything queued in one `io_uring_enter`. The ring
//! uses deferred task work (`DEFER_TASKRUN`): receives complete when the
//! driver enters the ring, on this thread, never by interrupting it; the
//! ring's eventfd, watched by tokio's epoll, tells the driver there is
//! work while it sleeps.
#![allow(unsafe_code)]

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::alloc::Layout;
use std::collections::VecDeque;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::Waker;

/// Submission queue entries; the completion queue is twice as long.
const ENTRIES: u32 = 1024;
/// One provided buffer: a 16 KiB message and its header in one completion.
pub(super) const BUF_SIZE: usize = 32 * 1024;
/// Provided buffers per worker (a power of two): 16 MiB of address space,
/// of which a small-message load touches the first page of each.
const BUF_COUNT: u16 = 512;
/// The provided-buffer group of the receives.
const GROUP: u16 = 0;
/// Received buffers a socket may hold unread; at this many its receive is
/// cancelled (re-armed once the session reads), so a session that stops
/// reading (backpressure) cannot take the worker's buffers from the rest.
pub(super) const MAX_QUEUED: usize = 8;
/// Outbound bytes a socket may have queued in the gateway before a write
/// returns Pending (and the session stops reading the other side).
pub(super) const SEND_BOUND: usize = 256 * 1024;

/// Operation kinds, in the low byte of a completion's user data.
const RECV: u64 = 1;
const SEND: u64 = 2;
const CANCEL: u64 = 3;

fn user_data(slot: u32, kind: u64) -> u64 {
    (u64::from(slot) << 8) | kind
}

/// One socket's state between the ring and its session.
#[derive(Default)]
pub(super) struct Slot {
    /// The socket; `None` while the slot is free.
    fd: Option<TcpStream>,
    /// Received buffers (id, length) not read by the session yet.
    pub rx: VecDeque<(u16, u32)>,
    /// Bytes of the first buffer in `rx` already read.
    pub rx_off: u32,
    /// The multishot receive is armed.
    pub armed: bool,
    /// A cancel of the receive is in flight.
    cancelling: bool,
    /// The peer's stream ended (EOF) or the receive failed.
    pub eof: bool,
    pub rx_failed: bool,
    /// Session task waiting for received bytes.
    pub reader: Option<Waker>,
    /// Bytes of the send in flight and how far it got.
    out: Vec<u8>,
    out_pos: usize,
    sending: bool,
    /// Bytes written while a send is in flight: the next send.
    next: Vec<u8>,
    pub tx_failed: bool,
    /// Session task waiting for room to write (or for sends to finish).
    pub writer: Option<Waker>,
    /// The session dropped its socket: close once no operation is in flight.
    dropped: bool,
}

impl Slot {
    /// Outbound bytes not yet taken by the kernel.
    pub fn unsent(&self) -> usize {
        self.out.len() - self.out_pos + self.next.len()
    }

    pub fn sending(&self) -> bool {
        self.sending
    }
}

/// The provided-buffer ring: entries shared with the kernel and the
/// buffers they point into.
struct BufRing {
    entries: NonNull<types::BufRingEntry>,
    layout: Layout,
    mem: Box<[u8]>,
    /// Our copy of the ring's tail (published with a release store).
    tail: u16,
}

impl BufRing {
    fn new() -> io::Result<BufRing> {
        let size = usize::from(BUF_COUNT) * std::mem::size_of::<types::BufRingEntry>();
        let layout = Layout::from_size_align(size, 4096).map_err(io::Error::other)?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut types::BufRingEntry;
        let entries = NonNull::new(ptr).ok_or_else(|| io::Error::other("out of memory"))?;
        let mem = vec![0u8; usize::from(BUF_COUNT) * BUF_SIZE].into_boxed_slice();
        let mut ring = BufRing {
            entries,
            layout,
            mem,
            tail: 0,
        };
        for bid in 0..BUF_COUNT {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Give buffer `bid` back to the kernel (seen at the next `publish`).
    fn push(&mut self, bid: u16) {
        let at = usize::from(self.tail & (BUF_COUNT - 1));
        // SAFETY: `at` < BUF_COUNT entries allocated in `new`; the kernel
        // only reads entries between its head and our published tail.
        let entry = unsafe { &mut *self.entries.as_ptr().add(at) };
        let start = usize::from(bid) * BUF_SIZE;
        entry.set_addr(self.mem[start..].as_ptr() as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lies inside the first entry, allocated and
        // aligned for a u16; the kernel reads it concurrently, hence atomic.
        let tail = unsafe {
            AtomicU16::from_ptr(types::BufRingEntry::tail(self.entries.as_ptr()) as *mut u16)
        };
        tail.store(self.tail, Ordering::Release);
    }

    fn buf(&self, bid: u16) -> &[u8] {
        let start = usize::from(bid) * BUF_SIZE;
        &self.mem[start..start + BUF_SIZE]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. The ring (dropped
        // before this field) no longer refers to it.
        unsafe { std::alloc::dealloc(self.entries.as_ptr() as *mut u8, self.layout) }
    }
}

/// What a driver pass left to do.
pub(super) enum Step {
    /// Sessions were woken: run them, then the driver again.
    Yield,
    /// Nothing queued: wait for the eventfd.
    Idle,
}

pub(super) struct Driver {
    /// Declared first: dropped (and unregistered) before the buffers.
    ring: IoUring,
    bufs: BufRing,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// The driver task, woken when an entry is queued while it waits.
    task: Option<Waker>,
    /// The driver task is queued to run: queuing an entry needs no wake.
    scheduled: bool,
    /// Slots whose receive ended for want of buffers, with nothing queued.
    starved: Vec<u32>,
}

impl Driver {
    /// Set up the ring, its buffers and `eventfd` as its completion signal.
    pub fn new(eventfd: &OwnedFd) -> io::Result<Driver> {
        let mut b = IoUring::builder();
        b.setup_cqsize(ENTRIES * 4);
        match std::env::var("TG_URING_MODE").as_deref() {
            Ok("plain") => {}
            Ok("coop") => {
                b.setup_coop_taskrun().setup_taskrun_flag();
            }
            _ => {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag();
            }
        }
        let ring = b.build(ENTRIES)?;
        let bufs = BufRing::new()?;
        // SAFETY: the entries live in `bufs`, which outlives the ring
        // (field order), and are never moved.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries.as_ptr() as u64,
                BUF_COUNT,
                GROUP,
                0,
            )?;
        }
        ring.submitter().register_eventfd(eventfd.as_raw_fd())?;
        Ok(Driver {
            ring,
            bufs,
            slots: Vec::new(),
            free: Vec::new(),
            task: None,
            scheduled: false,
            starved: Vec::new(),
        })
    }

    /// Take a socket (blocking mode: the ring does its own non-blocking
    /// attempts) and arm its receive.
    pub fn insert(&mut self, fd: TcpStream) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[slot as usize].fd = Some(fd);
        self.arm(slot);
        slot
    }

    pub fn slot(&mut self, slot: u32) -> &mut Slot {
        &mut self.slots[slot as usize]
    }

    /// Queue an entry; the driver submits it with the others.
    fn push(&mut self, entry: squeue::Entry) {
        // SAFETY: every entry points at memory that lives until its
        // completion: socket fds are closed only after their last
        // completion, send buffers are not touched while in flight.
        unsafe {
            if self.ring.submission().push(&entry).is_err() {
                // Full: submit what is there and queue again.
                let _ = self.ring.submit();
                if self.ring.submission().push(&entry).is_err() {
                    tracing::warn!("io_uring submission queue full");
                }
            }
        }
        if !self.scheduled {
            self.scheduled = true;
            if let Some(w) = &self.task {
                w.wake_by_ref();
            }
        }
    }

    fn fd(&self, slot: u32) -> types::Fd {
        let fd = self.slots[slot as usize].fd.as_ref();
        types::Fd(fd.map_or(-1, |f| f.as_raw_fd()))
    }

    /// Arm the multishot receive of `slot`.
    pub fn arm(&mut self, slot: u32) {
        let e = opcode::RecvMulti::new(self.fd(slot), GROUP)
            .build()
            .user_data(user_data(slot, RECV));
        self.slots[slot as usize].armed = true;
        self.push(e);
    }

    /// Re-arm a receive that ended (buffers ran out, or it was cancelled
    /// because the session held too many), once the session reads again.
    pub fn rearm_if_needed(&mut self, slot: u32) {
        let s = &self.slots[slot as usize];
        if !s.armed && !s.cancelling && !s.eof && !s.rx_failed && s.rx.len() < MAX_QUEUED / 2 {
            self.arm(slot);
        }
    }

    /// Queue `data` to go out on `slot` after what is already queued.
    pub fn write(&mut self, slot: u32, data: &[u8]) {
        let s = &mut self.slots[slot as usize];
        if s.sending {
            s.next.extend_from_slice(data);
        } else {
            s.out.clear();
            s.out.extend_from_slice(data);
            s.out_pos = 0;
            self.send(slot);
        }
    }

    fn send(&mut self, slot: u32) {
        let fd = self.fd(slot);
        let s = &mut self.slots[slot as usize];
        s.sending = true;
        let rest = &s.out[s.out_pos..];
        let e = opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(slot, SEND));
        self.push(e);
    }

    /// Half-close `slot` (its queued bytes have all been sent).
    pub fn shutdown_write(&mut self, slot: u32) -> io::Result<()> {
        match &self.slots[slot as usize].fd {
            Some(tcp) => tcp.shutdown(std::net::Shutdown::Write),
            None => Ok(()),
        }
    }

    /// Copy received bytes of `slot` into `dst`; buffers read whole go back
    /// to the ring. Returns the bytes copied.
    pub fn read(&mut self, slot: u32, dst: &mut [u8]) -> usize {
        let mut n = 0;
        while n < dst.len() {
            let s = &mut self.slots[slot as usize];
            let Some(&(bid, len)) = s.rx.front() else {
                break;
            };
            let from = s.rx_off as usize;
            let take = (len as usize - from).min(dst.len() - n);
            dst[n..n + take].copy_from_slice(&self.bufs.buf(bid)[from..from + take]);
            n += take;
            if from + take == len as usize {
                s.rx.pop_front();
                s.rx_off = 0;
                self.give_back(bid);
            } else {
                s.rx_off += take as u32;
            }
        }
        n
    }

    fn give_back(&mut self, bid: u16) {
        self.bufs.push(bid);
        self.bufs.publish();
        for slot in std::mem::take(&mut self.starved) {
            // Its reader re-arms the receive when it polls.
            self.wake_reader(slot);
        }
    }

    /// The session dropped `slot`: cancel its receive, free it once no
    /// operation refers to it any more.
    pub fn release(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        s.dropped = true;
        s.reader = None;
        s.writer = None;
        let held: Vec<u16> = s.rx.drain(..).map(|(bid, _)| bid).collect();
        for bid in held {
            self.give_back(bid);
        }
        self.cancel(slot);
        self.free_if_done(slot);
    }

    fn cancel(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if s.armed && !s.cancelling {
            s.cancelling = true;
            let e = opcode::AsyncCancel::new(user_data(slot, RECV))
                .build()
                .user_data(user_data(slot, CANCEL));
            self.push(e);
        }
    }

    fn free_if_done(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if s.dropped && !s.armed && !s.cancelling && !s.sending {
            // Closes the socket.
            *s = Slot::default();
            self.free.push(slot);
        }
    }

    /// One pass: submit what is queued (running deferred receives), reap
    /// every completion. `waker`: the driver task's.
    pub fn step(&mut self, waker: &Waker) -> Step {
        if !self.task.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.task = Some(waker.clone());
        }
        self.scheduled = true;
        for _ in 0..4 {
            let mut sq_waiting = !self.ring.submission().is_empty();
            if sq_waiting || self.ring.submission().taskrun() {
                if let Err(e) = self.ring.submit() {
                    if e.raw_os_error() != Some(libc::EBUSY) {
                        tracing::warn!(error = %e, "io_uring_enter failed");
                    }
                }
                sq_waiting = !self.ring.submission().is_empty();
            }
            let woke = self.reap();
            if woke {
                return Step::Yield;
            }
            if !sq_waiting && self.ring.completion().is_empty() && !self.ring.submission().taskrun()
            {
                self.scheduled = false;
                return Step::Idle;
            }
        }
        Step::Yield
    }

    /// Handle every completion; true if a session was woken.
    fn reap(&mut self) -> bool {
        let mut batch = [(0u64, 0i32, 0u32); 256];
        let mut woke = false;
        loop {
            let mut n = 0;
            for cqe in self.ring.completion().take(batch.len()) {
                batch[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                n += 1;
            }
            for &(ud, res, flags) in &batch[..n] {
                woke |= self.complete(ud, res, flags);
            }
            if n < batch.len() {
                return woke;
            }
        }
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32) -> bool {
        let slot = (ud >> 8) as u32;
        let woke = match ud & 0xff {
            RECV => self.received(slot, res, flags),
            SEND => self.sent(slot, res),
            _ => {
                self.slots[slot as usize].cancelling = false;
                self.wake_reader(slot)
            }
        };
        self.free_if_done(slot);
        woke
    }

    fn received(&mut self, slot: u32, res: i32, flags: u32) -> bool {
        let bid = cqueue::buffer_select(flags);
        let s = &mut self.slots[slot as usize];
        if !cqueue::more(flags) {
            s.armed = false;
        }
        match (res, bid) {
            (n, Some(bid)) if n > 0 && !s.dropped => {
                s.rx.push_back((bid, n as u32));
                if s.rx.len() >= MAX_QUEUED {
                    self.cancel(slot);
                }
                return self.wake_reader(slot);
            }
            (_, Some(bid)) => {
                // Dropped meanwhile, or a buffer with an error.
                self.give_back(bid);
                if res > 0 {
                    return false;
                }
            }
            _ => {}
        }
        let s = &mut self.slots[slot as usize];
        match res {
            0 => s.eof = true,
            e if e == -libc::ENOBUFS => {
                if s.rx.is_empty() {
                    self.starved.push(slot);
                }
                return false;
            }
            e if e == -libc::ECANCELED => {}
            _ => s.rx_failed = true,
        }
        self.wake_reader(slot)
    }

    fn sent(&mut self, slot: u32, res: i32) -> bool {
        let s = &mut self.slots[slot as usize];
        if res <= 0 {
            s.tx_failed = true;
            s.sending = false;
            s.out = Vec::new();
            s.next = Vec::new();
        } else {
            s.out_pos += res as usize;
            if s.out_pos < s.out.len() {
                // Partial send: the rest goes next, before anything newer.
                self.send(slot);
                return false;
            }
            std::mem::swap(&mut s.out, &mut s.next);
            s.next.clear();
            s.out_pos = 0;
            if s.out.is_empty() {
                s.sending = false;
                // Drained: an idle connection holds no buffer.
                s.out = Vec::new();
                s.next = Vec::new();
            } else {
                self.send(slot);
            }
        }
        match self.slots[slot as usize].writer.take() {
            Some(w) => {
                w.wake();
                true
            }
            None => false,
        }
    }

    fn wake_reader(&mut self, slot: u32) -> bool {
        match self.slots[slot as usize].reader.take() {
            Some(w) => {
                w.wake();
                true
            }
            None => false,
        }
    }
}
