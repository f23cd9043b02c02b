//! One client in mux mode after its 101: the client socket on one side,
//! the session's inbox and its current mux connection on the other.
//!
//! Like the passthrough relay it is one hand-written future, so an idle
//! client costs its socket, this struct and a timer. Client bytes are read
//! into a per-thread arena, unmasked in place and handed to the mux writer
//! as slices of that arena (no copy); application payloads arrive as slices
//! of the mux connection's read buffer and are written to the client
//! behind a header with one vectored write.
//!
//! States: open (frames both ways) → resuming (connection lost or GOAWAY:
//! client frames held, OPEN+RESUMED sent elsewhere) → open again, or
//! closing (a Close sent to the client; waiting for its answer, bounded by
//! `close_timeout`) → done.

use super::client::{ClientReader, Piece, Violation};
use super::conn::{Conn, Out};
use super::inbox::{Event, Inbox};
use super::stored::StoredOpen;
use super::wire::{self, Header};
use super::MuxRoute;
use crate::io::Io;
use bytes::{Bytes, BytesMut};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tidegate_mux::codec::{self, Close, Frame, FrameType, FLAG_FIN, KIND_MASK};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, PollSemaphore};

/// Bytes read from a client per system call at most.
const READ_CHUNK: usize = 64 * 1024;
/// A fresh arena is started when less than this is left.
const ARENA_MIN: usize = 4 * 1024;
/// Frames written to the client per vectored write.
const WRITE_BATCH: usize = 32;
/// Rounds per wake-up before yielding.
const ROUNDS: usize = 16;

thread_local! {
    /// Client reads land here; each read is split off as its own `Bytes`,
    /// so the slices handed to mux writers share this allocation.
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A frame on its way to the client.
struct ToClient {
    header: Header,
    payload: Bytes,
}

/// A frame on its way to the application, waiting for budget or for a
/// connection.
struct ToApp {
    frame: Frame,
}

/// Frames in flight through a session.
#[derive(Default)]
struct Queues {
    /// Client frames not yet queued on a connection.
    held: VecDeque<ToApp>,
    held_bytes: usize,
    /// Frames for the client; `written` bytes of the front one are out.
    out: VecDeque<ToClient>,
    out_bytes: usize,
    written: usize,
}

/// A session between connections.
struct Resume {
    deadline: Instant,
    /// The old connection sent GOAWAY (1012 if this fails, else 1014).
    goaway: bool,
    /// The connection that has the resumed OPEN.
    on: Option<Arc<Conn>>,
    /// A connection being left after GOAWAY: it still delivers the
    /// application's frames and is forgotten once the session is accepted
    /// elsewhere.
    leaving: Option<Arc<Conn>>,
}

pub struct MuxSession {
    client: Io,
    id: u32,
    inbox: Arc<Inbox>,
    route: Arc<MuxRoute>,
    /// Where client frames go; `None` while resuming.
    conn: Option<Arc<Conn>>,
    /// Waits for budget of `conn`'s write queue; boxed and made only when
    /// the queue was once full (an idle session never has one).
    budget: Option<Box<PollSemaphore>>,
    /// The OPEN, sent again on resume.
    open: StoredOpen,
    reader: ClientReader,
    /// Frames waiting either way; boxed and made at the first frame, so an
    /// idle session that never carried data has none.
    q: Option<Box<Queues>>,
    /// Application → client message in progress (fragment order check).
    app_in_message: bool,
    /// Set while the session is between connections (boxed: rare).
    resume: Option<Box<Resume>>,
    /// Drain: checked on every poll; a drain wakes the session through its
    /// inbox (`Event::Drain`), so no per-session cancellation future.
    shutdown: CancellationToken,
    /// CLOSE for this id was sent to or received from the application.
    app_done: bool,
    /// A Close frame was queued for the client.
    close_sent: bool,
    /// The client sent its Close (or its side ended).
    client_done: bool,
    deadline_close: Option<Instant>,
    /// Last bytes from the client — or, while `ping_sent`, when the ping
    /// went out (the pong is due `pong_timeout` after it).
    last_rx: Instant,
    ping_sent: bool,
    drain_at: Option<Instant>,
    draining: bool,
    started: Instant,
}

impl MuxSession {
    pub fn new(
        client: Io,
        from_client: &[u8],
        opened: super::open::Opened,
        open: StoredOpen,
        route: Arc<MuxRoute>,
        shutdown: CancellationToken,
    ) -> MuxSession {
        let now = Instant::now();
        let mut s = MuxSession {
            client,
            id: opened.id,
            inbox: opened.inbox,
            route,
            conn: Some(opened.conn),
            budget: None,
            open,
            reader: ClientReader::default(),
            q: None,
            app_in_message: false,
            resume: None,
            shutdown,
            app_done: false,
            close_sent: false,
            client_done: false,
            deadline_close: None,
            last_rx: now,
            ping_sent: false,
            drain_at: None,
            draining: false,
            started: now,
        };
        if !from_client.is_empty() {
            s.on_client_bytes(BytesMut::from(from_client), now);
        }
        s
    }

    pub fn run(self, permit: OwnedSemaphorePermit) -> Running {
        self.route.metrics.active.inc();
        Running {
            session: self,
            sleep: tokio::time::sleep(Duration::from_secs(3600)),
            _permit: permit,
        }
    }

    // ---------------------------------------------------------------- to the app

    fn queues(&mut self) -> &mut Queues {
        self.q.get_or_insert_with(Box::default)
    }

    fn out_bytes(&self) -> usize {
        self.q.as_ref().map_or(0, |q| q.out_bytes)
    }

    fn out_empty(&self) -> bool {
        self.q.as_ref().is_none_or(|q| q.out.is_empty())
    }

    fn held_empty(&self) -> bool {
        self.q.as_ref().is_none_or(|q| q.held.is_empty())
    }

    fn clear_held(&mut self) {
        if let Some(q) = self.q.as_mut() {
            q.held.clear();
            q.held_bytes = 0;
        }
    }

    fn queue_app(&mut self, frame: Frame) {
        let q = self.queues();
        q.held_bytes += frame.body.len();
        q.held.push_back(ToApp { frame });
    }

    /// Tell the application this session is over (once).
    fn close_app(&mut self, code: u16, reason: &str) {
        if self.app_done {
            return;
        }
        self.app_done = true;
        let frame = Frame::close(self.id, &Close::new(code, reason));
        // Behind any held data, so the application sees it last.
        if self.conn.is_some() {
            self.queue_app(frame);
        } else if let Some(c) = self
            .resume
            .as_ref()
            .and_then(|r| r.leaving.as_ref().or(r.on.as_ref()))
        {
            c.send(Out::frame(&frame));
        }
    }

    /// Queue held frames on the connection while its budget allows.
    fn flush_held(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(conn), Some(q)) = (self.conn.as_ref(), self.q.as_mut()) else {
            return false;
        };
        let mut progress = false;
        while let Some(front) = q.held.front() {
            let n = front.frame.body.len();
            let permit = if n == 0 || front.frame.kind != FrameType::Message {
                None
            } else {
                let want = n.min(conn.settings.connection_queue_bytes) as u32;
                // Fast path without a waiter; the boxed waiter only when the
                // queue is full (backpressure).
                let quick = if self.budget.is_none() {
                    Arc::clone(&conn.budget).try_acquire_many_owned(want).ok()
                } else {
                    None
                };
                match quick {
                    Some(p) => Some(p),
                    None => {
                        let budget = self.budget.get_or_insert_with(|| {
                            Box::new(PollSemaphore::new(Arc::clone(&conn.budget)))
                        });
                        match budget.poll_acquire_many(cx, want) {
                            Poll::Ready(Some(p)) => Some(p),
                            // The semaphore is never closed; pending is
                            // the backpressure.
                            Poll::Ready(None) | Poll::Pending => break,
                        }
                    }
                }
            };
            let t = q.held.pop_front().expect("front exists");
            q.held_bytes -= n;
            conn.send(Out::Frame {
                header: t.frame.header(),
                body: t.frame.body,
                permit,
            });
            progress = true;
        }
        progress
    }

    // ------------------------------------------------------------- to the client

    fn queue_client(&mut self, fin: bool, opcode: u8, payload: Bytes) {
        self.route
            .mux_metrics
            .queued_bytes
            .add(payload.len() as i64);
        let q = self.queues();
        q.out_bytes += payload.len();
        q.out.push_back(ToClient {
            header: Header::new(fin, opcode, payload.len(), false),
            payload,
        });
    }

    /// Queue a Close for the client (once) and start the close deadline.
    fn close_client(&mut self, code: u16, reason: &str, now: Instant) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        self.route.metrics.close("gateway", Some(code));
        self.queue_client(true, wire::OP_CLOSE, wire::close_payload(code, reason));
        self.deadline_close
            .get_or_insert(now + self.route.close_timeout);
    }

    fn flush_client(&mut self, cx: &mut Context<'_>) -> Result<bool, ()> {
        let mut progress = false;
        let Some(q) = self.q.as_mut() else {
            return Ok(false);
        };
        while !q.out.is_empty() {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * WRITE_BATCH);
            let mut skip = q.written;
            for t in q.out.iter().take(WRITE_BATCH) {
                for part in [t.header.as_slice(), &t.payload[..]] {
                    if skip >= part.len() {
                        skip -= part.len();
                    } else {
                        slices.push(IoSlice::new(&part[skip..]));
                        skip = 0;
                    }
                }
            }
            let n = match Pin::new(&mut self.client).poll_write_vectored(cx, &slices) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(()),
                Poll::Ready(Ok(n)) => n,
            };
            progress = true;
            q.written += n;
            while let Some(front) = q.out.front() {
                let len = front.header.as_slice().len() + front.payload.len();
                if q.written < len {
                    break;
                }
                q.written -= len;
                q.out_bytes -= front.payload.len();
                self.route
                    .mux_metrics
                    .queued_bytes
                    .sub(front.payload.len() as i64);
                q.out.pop_front();
            }
        }
        if self.client.buffers_writes() {
            if let Poll::Ready(Err(_)) = Pin::new(&mut self.client).poll_flush(cx) {
                return Err(());
            }
        }
        Ok(progress)
    }

    // ------------------------------------------------------------ from the client

    fn read_client(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<bool> {
        let read = ARENA.with(|cell| {
            let mut arena = cell.borrow_mut();
            if arena.len() < ARENA_MIN {
                *arena = BytesMut::zeroed(READ_CHUNK);
            }
            let mut rb = ReadBuf::new(&mut arena[..]);
            match Pin::new(&mut self.client).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    let n = rb.filled().len();
                    Poll::Ready(Some(arena.split_to(n)))
                }
                Poll::Ready(_) => Poll::Ready(None),
            }
        });
        match read {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(chunk)) => {
                self.on_client_bytes(chunk, now);
                Poll::Ready(true)
            }
            Poll::Ready(None) => {
                // The client is gone without (or after) its Close.
                self.client_done = true;
                if !self.close_sent {
                    self.close_sent = true;
                    self.deadline_close = Some(now);
                }
                self.close_app(1006, "client connection lost");
                Poll::Ready(true)
            }
        }
    }

    fn on_client_bytes(&mut self, chunk: BytesMut, now: Instant) {
        self.last_rx = now;
        self.ping_sent = false;
        let mut pieces = Vec::new();
        let result = self.reader.feed(chunk, self.route.limits, &mut pieces);
        for p in pieces {
            self.on_piece(p, now);
        }
        let messages = std::mem::take(&mut self.reader.messages);
        if messages > 0 {
            self.route.metrics.messages_c2u.inc_by(messages);
        }
        if let Err(v) = result {
            self.violation(v, now);
        }
    }

    fn on_piece(&mut self, piece: Piece, now: Instant) {
        if self.client_done {
            return;
        }
        match piece {
            Piece::Data { kind, fin, payload } => {
                if self.close_sent || self.app_done {
                    return; // closing: data is discarded
                }
                self.route.metrics.bytes_c2u.inc_by(payload.len() as u64);
                self.queue_app(Frame::message(self.id, kind, fin, payload));
            }
            Piece::Ping(p) => {
                if !self.close_sent {
                    self.queue_client(true, wire::OP_PONG, p);
                }
            }
            Piece::Pong => {}
            Piece::Close(code, reason) => {
                self.client_done = true;
                self.route.metrics.close("client", code);
                let echo = match code {
                    Some(c) => wire::close_payload(c, &reason),
                    None => Bytes::new(),
                };
                if !self.close_sent {
                    self.close_sent = true;
                    self.queue_client(true, wire::OP_CLOSE, echo);
                }
                self.deadline_close
                    .get_or_insert(now + self.route.close_timeout);
                match code {
                    Some(c) => self.close_app(c, &reason),
                    // No status: an empty CLOSE body means the same.
                    None => {
                        if !self.app_done {
                            self.app_done = true;
                            let f = Frame::close(self.id, &Close::default());
                            self.queue_app(f);
                        }
                    }
                }
            }
        }
    }

    fn violation(&mut self, v: Violation, now: Instant) {
        self.client_done = true;
        self.close_client(v.code(), v.reason(), now);
        self.close_app(v.code(), v.reason());
    }

    // ------------------------------------------------------ from the application

    fn on_events(&mut self, now: Instant, cx: &mut Context<'_>) -> bool {
        let mut events = VecDeque::new();
        let overflow = self.inbox.drain(&mut events, cx);
        let progress = !events.is_empty();
        for e in events {
            self.on_event(e, now);
        }
        if (overflow || self.out_bytes() > self.route.session_queue_bytes) && !self.close_sent {
            // Slow consumer: what is queued is dropped but the frame being
            // written, then Close 1008.
            self.route.mux_metrics.slow_consumer.inc();
            let q = self.queues();
            let mut dropped = 0;
            while q.out.len() > 1 || (q.out.len() == 1 && q.written == 0) {
                let t = q.out.pop_back().expect("non-empty");
                q.out_bytes -= t.payload.len();
                dropped += t.payload.len();
            }
            self.route.mux_metrics.queued_bytes.sub(dropped as i64);
            self.close_client(1008, "slow consumer", now);
            self.close_app(1008, "slow consumer");
            self.client_done = true;
        }
        progress
    }

    fn on_event(&mut self, e: Event, now: Instant) {
        match e {
            Event::Message { flags, payload } => {
                if self.close_sent {
                    return;
                }
                let kind = flags & KIND_MASK;
                let opcode = match (self.app_in_message, kind) {
                    (false, codec::KIND_TEXT) => wire::OP_TEXT,
                    (false, codec::KIND_BINARY) => wire::OP_BINARY,
                    (true, codec::KIND_CONTINUATION) => wire::OP_CONTINUATION,
                    _ => return self.on_event(Event::Broken, now),
                };
                let fin = flags & FLAG_FIN != 0;
                self.app_in_message = !fin;
                if fin {
                    self.route.metrics.messages_u2c.inc();
                }
                self.route.metrics.bytes_u2c.inc_by(payload.len() as u64);
                self.queue_client(fin, opcode, payload);
            }
            Event::Close(c) => {
                self.app_done = true;
                self.route.metrics.close("upstream", c.code);
                match c.code {
                    Some(code) => self.close_client(code, &c.reason, now),
                    None => {
                        if !self.close_sent {
                            self.close_sent = true;
                            self.queue_client(true, wire::OP_CLOSE, Bytes::new());
                            self.deadline_close
                                .get_or_insert(now + self.route.close_timeout);
                        }
                    }
                }
            }
            Event::Accept { conn, .. } => {
                let ours = self.resume.as_ref().and_then(|r| r.on.as_ref());
                if ours.is_some_and(|c| c.id == conn.id) {
                    let r = self.resume.take().expect("checked above");
                    self.route.mux_metrics.resumed.inc();
                    if let Some(old) = r.leaving {
                        old.moved_away(self.id);
                    }
                    tracing::debug!(session = self.id, conn = conn.id, "session resumed");
                    self.budget = None;
                    self.conn = Some(conn);
                }
            }
            Event::Reject(_) => {
                // Only a resumed OPEN can be rejected here.
                if let Some(r) = self.resume.as_mut() {
                    r.on = None;
                }
                self.app_done = true;
                self.close_client(1011, "rejected on resume", now);
            }
            Event::Lost { conn_id, goaway } => self.on_lost(conn_id, goaway, now),
            // The token is checked at the top of every poll.
            Event::Drain => {}
            Event::Broken => {
                self.close_client(1011, "application broke the mux protocol", now);
                self.close_app(1002, "fragment out of order");
            }
        }
    }

    fn on_lost(&mut self, conn_id: u64, goaway: bool, now: Instant) {
        let current = self.conn.as_ref().is_some_and(|c| c.id == conn_id);
        let pending = self
            .resume
            .as_ref()
            .and_then(|r| r.on.as_ref())
            .is_some_and(|c| c.id == conn_id);
        if !(current || pending) || self.app_done {
            return;
        }
        let grace = self.route.resume_grace;
        let r = self.resume.get_or_insert_with(|| {
            Box::new(Resume {
                deadline: now + grace,
                goaway,
                on: None,
                leaving: None,
            })
        });
        r.goaway |= goaway;
        if let Some(on) = r.on.take() {
            // A draining connection closes once it has no sessions left.
            on.forget(self.id);
        }
        if current {
            let old = self.conn.take().expect("current checked above");
            self.budget = None;
            if goaway {
                r.leaving = Some(old);
            }
        }
    }

    /// Resuming: offer the session to another connection, or give up at
    /// the deadline.
    fn try_resume(&mut self, now: Instant) {
        let Some(r) = self.resume.as_mut() else {
            return;
        };
        if r.on.is_none() {
            if let Some(conn) = self.route.pool.pick() {
                if conn.register(self.id, Arc::clone(&self.inbox)) {
                    conn.send(Out::frame(&self.open.resumed_frame(self.id)));
                    r.on = Some(conn);
                }
            }
        }
        if now >= r.deadline {
            let goaway = r.goaway;
            self.give_up(goaway, now);
        }
    }

    fn give_up(&mut self, goaway: bool, now: Instant) {
        self.route.mux_metrics.resume_failed.inc();
        if let Some(r) = self.resume.take() {
            for c in [r.on, r.leaving].into_iter().flatten() {
                c.forget(self.id);
            }
        }
        self.app_done = true;
        self.clear_held();
        let (code, reason) = if goaway {
            (1012, "service restart")
        } else {
            (1014, "application connection lost")
        };
        self.close_client(code, reason, now);
    }

    // ----------------------------------------------------------------- timers

    fn timers(&mut self, now: Instant) {
        if let Some(at) = self.drain_at {
            if now >= at && !self.close_sent {
                self.close_client(1001, "gateway draining", now);
                self.close_app(1001, "gateway draining");
            }
        }
        if let Some(interval) = self.route.ping_interval {
            match self.ping_sent {
                true if now >= self.last_rx + self.route.pong_timeout && !self.close_sent => {
                    self.route.metrics.ping_timeout_client.inc();
                    self.client_done = true;
                    self.close_app(1006, "client ping timeout");
                    self.close_client(1001, "ping timeout", now);
                }
                false if now >= self.last_rx + interval && !self.close_sent => {
                    self.ping_sent = true;
                    self.last_rx = now;
                    self.queue_client(true, wire::OP_PING, Bytes::new());
                }
                _ => {}
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let far = self.started + Duration::from_secs(365 * 24 * 3600);
        let mut next = far;
        let mut at = |d: Option<Instant>| {
            if let Some(d) = d {
                next = next.min(d);
            }
        };
        at(self.deadline_close);
        at(self.drain_at.filter(|_| !self.close_sent));
        if let Some(interval) = self.route.ping_interval {
            at(Some(if self.ping_sent {
                self.last_rx + self.route.pong_timeout
            } else {
                self.last_rx + interval
            }));
        }
        if self.resume.is_some() {
            // Look for a connection again soon.
            at(Some(Instant::now() + Duration::from_millis(20)));
        }
        next
    }

    fn finished(&self, now: Instant) -> bool {
        let flushed = self.out_empty();
        let closed =
            self.close_sent && (self.client_done || self.deadline_close.is_some_and(|d| now >= d));
        (closed && flushed && (self.held_empty() || self.conn.is_none()))
            || self
                .deadline_close
                .is_some_and(|d| now >= d + self.route.close_timeout)
    }

    fn poll_session(&mut self, cx: &mut Context<'_>, mut sleep: Pin<&mut Sleep>) -> Poll<()> {
        for _ in 0..ROUNDS {
            let now = Instant::now();
            if !self.draining && self.shutdown.is_cancelled() {
                self.draining = true;
                let spread = self.route.drain_spread.as_millis() as u64;
                let delay = if spread == 0 {
                    0
                } else {
                    rand::random::<u64>() % spread
                };
                self.drain_at = Some(now + Duration::from_millis(delay));
            }
            let mut progress = self.on_events(now, cx);
            self.try_resume(now);
            progress |= self.flush_held(cx);
            match self.flush_client(cx) {
                Ok(p) => progress |= p,
                Err(()) => {
                    self.client_done = true;
                    self.close_sent = true;
                    if let Some(q) = self.q.as_mut() {
                        self.route.mux_metrics.queued_bytes.sub(q.out_bytes as i64);
                        q.out.clear();
                        q.out_bytes = 0;
                        q.written = 0;
                    }
                    self.close_app(1006, "client connection lost");
                    self.flush_held(cx);
                    return Poll::Ready(());
                }
            }
            // Read the client only while its frames can move on: held
            // frames are waiting for budget, or for a connection within
            // the resume buffer.
            let room = if self.conn.is_some() {
                self.held_empty()
            } else {
                self.q.as_ref().map_or(0, |q| q.held_bytes) < self.route.resume_buffer_bytes
            };
            if room && !self.client_done {
                if let Poll::Ready(p) = self.read_client(cx, now) {
                    progress |= p;
                }
            }
            self.timers(now);
            if self.finished(now) {
                return Poll::Ready(());
            }
            if progress {
                continue;
            }
            let next = self.next_deadline();
            if next < sleep.deadline() || sleep.is_elapsed() {
                sleep.as_mut().reset(next);
            }
            // Timer arm: ping, pong, drain, close or resume deadline.
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn end(&mut self) {
        self.clear_held();
        if let Some(c) = &self.conn {
            c.forget(self.id);
        }
        if let Some(r) = self.resume.take() {
            for c in [r.on, r.leaving].into_iter().flatten() {
                c.forget(self.id);
            }
        }
        self.route
            .mux_metrics
            .queued_bytes
            .sub(self.out_bytes() as i64);
        self.route.metrics.active.dec();
        self.route
            .metrics
            .session
            .observe(self.started.elapsed().as_secs_f64());
    }
}

pin_project_lite::pin_project! {
    /// A running mux session (see [`MuxSession::run`]).
    pub struct Running {
        session: MuxSession,
        // Timer arm: keepalive, drain, close and resume deadlines.
        #[pin]
        sleep: Sleep,
        // One slot of `limits.max_connections` for the session's life.
        _permit: OwnedSemaphorePermit,
    }
}

impl Future for Running {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let s = this.session;
        let r = s.poll_session(cx, this.sleep);
        if r.is_ready() {
            // Last frames to the application, then the socket.
            let _ = s.flush_held(cx);
            let _ = Pin::new(&mut s.client).poll_shutdown(cx);
            s.end();
        }
        r
    }
}

#[cfg(test)]
mod size_probe {
    #[test]
    fn sizes() {
        eprintln!(
            "MuxSession {} Running {} ClientReader {} Inbox {} Event {} Sleep {} relay {} PollSem {}",
            std::mem::size_of::<super::MuxSession>(),
            std::mem::size_of::<super::Running>(),
            std::mem::size_of::<super::ClientReader>(),
            std::mem::size_of::<super::Inbox>(),
            std::mem::size_of::<super::Event>(),
            std::mem::size_of::<tokio::time::Sleep>(),
            std::mem::size_of::<crate::relay::Running>(),
            std::mem::size_of::<tokio_util::sync::PollSemaphore>(),
        );
    }
}
