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

mod client_io;
mod compress;
mod from_app;
mod published;
mod queues;
mod resume;
mod timers;
mod to_app;

pub use compress::Edge;
use queues::{Queues, ToApp, ToClient};

use super::client::{ClientReader, Piece};
use super::conn::Conn;
use super::inbox::Inbox;
use super::stored::StoredOpen;
use super::MuxRoute;
use crate::access::Closer;
use crate::io::Io;
use bytes::BytesMut;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// Bytes read from a client per system call at most.
const READ_CHUNK: usize = 64 * 1024;
/// A fresh arena is started when less than this is left.
const ARENA_MIN: usize = 4 * 1024;
/// Frames written to the client per vectored write.
const WRITE_BATCH: usize = 32;
/// Longest list of decoded pieces a thread keeps for the next read.
const PIECES_KEPT: usize = 64;
/// Rounds per wake-up before yielding.
const ROUNDS: usize = 16;

thread_local! {
    /// Client reads land here; each read is split off as its own `Bytes`,
    /// so the slices handed to mux writers share this allocation.
    static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    /// What one client read decodes into, shared by the thread's sessions
    /// (taken out while in use), so a read allocates no list of its own.
    static PIECES: Cell<Vec<Piece>> = const { Cell::new(Vec::new()) };
}

/// A session between connections.
struct Resume {
    deadline: Instant,
    /// The old connection sent GOAWAY (1012 if this fails, else 1014).
    goaway: bool,
    /// The connection that has the resumed OPEN.
    on: Option<Arc<Conn>>,
    /// Held while `on` is `None`: counts the session in the pool's share.
    waiting: Option<super::pool::Waiting>,
    /// Connections being left after GOAWAY (the one the session was on,
    /// and any that got the resumed OPEN before their own GOAWAY): they
    /// still deliver the application's frames until they close (see
    /// `resume`).
    leaving: Vec<Arc<Conn>>,
}

pub struct MuxSession {
    client: Io,
    id: u32,
    inbox: Arc<Inbox>,
    route: Arc<MuxRoute>,
    /// Where client frames go; `None` while resuming.
    conn: Option<Arc<Conn>>,
    /// Registered for room in `conn`'s write buffer at this mark (0: not
    /// waiting); see `Conn::queue`.
    space_wait: u32,
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
    /// The client's Close was seen and counted; a session that ends
    /// without one counts `side="client", code="none"` (it vanished).
    client_close_counted: bool,
    deadline_close: Option<Instant>,
    /// Last bytes from the client — or, while `ping_sent`, when the ping
    /// went out (the pong is due `pong_timeout` after it).
    last_rx: Instant,
    ping_sent: bool,
    /// The last complete data message either way (the idle timeout), in
    /// milliseconds after `started`: 8 bytes where an `Instant` takes 16
    /// and would push the task cell into a larger size class.
    last_data_ms: u64,
    /// When the gateway closes the client on its own: the token's expiry
    /// (`expiring`, 1008) or the drain moment (1001), whichever is first.
    /// One `Instant` for both keeps the idle session future small.
    close_at: Option<Instant>,
    /// `close_at` is the token expiry, not the drain.
    expiring: bool,
    draining: bool,
    started: Instant,
    /// The access-log record; `None` unless this session is logged.
    access: Option<Box<crate::access::Record>>,
}

impl MuxSession {
    pub fn new(
        client: Io,
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
            space_wait: 0,
            open,
            reader: ClientReader::default(),
            q: None,
            app_in_message: false,
            resume: None,
            shutdown,
            app_done: false,
            close_sent: false,
            client_done: false,
            client_close_counted: false,
            deadline_close: None,
            last_rx: now,
            ping_sent: false,
            last_data_ms: 0,
            close_at: None,
            expiring: false,
            draining: false,
            started: now,
            access: None,
        };
        // Subscribed before its 101 (SUBSCRIBE right after ACCEPT).
        if let Some(sub) = s.inbox.subscriber() {
            sub.attach(&s.client);
            s.queues().fanout = Some(sub);
        }
        s
    }

    /// Bytes the client sent behind its handshake: handled first (after
    /// [`MuxSession::compress`], which changes how they are read).
    pub fn preload(mut self, from_client: &[u8]) -> MuxSession {
        if !from_client.is_empty() {
            self.on_client_bytes(BytesMut::from(from_client), Instant::now());
        }
        self
    }

    /// End the session with Close 1008 at `at` (the token's `exp` plus
    /// grace), as the passthrough relay does.
    pub fn expire_at(mut self, at: Option<Instant>) -> MuxSession {
        if let Some(at) = at {
            self.close_at = Some(at);
            self.expiring = true;
        }
        self
    }

    /// Keep an access-log record and write its line when the session ends.
    pub fn log_access(mut self, record: Option<Box<crate::access::Record>>) -> MuxSession {
        self.access = record;
        self
    }

    /// Note who ended the session, for the access log.
    fn log_close(&mut self, side: Closer, code: Option<u16>, reason: &'static str) {
        if let Some(a) = &mut self.access {
            a.closed(side, code, reason);
        }
    }

    pub fn run(self, permit: OwnedSemaphorePermit) -> Running {
        self.route.metrics.active.inc();
        Running {
            session: self,
            sleep: tokio::time::sleep(Duration::from_secs(3600)),
            _permit: permit,
        }
    }

    /// Backpressure: the client is read only while its frames can move on.
    /// Paused while held frames wait for budget on the connection, or —
    /// between connections — while the resume buffer is full.
    fn client_paused(&self) -> bool {
        if self
            .q
            .as_ref()
            .and_then(|q| q.edge.as_ref())
            .is_some_and(|e| e.backlogged())
        {
            // Read pieces still wait to be inflated.
            return true;
        }
        if self.conn.is_some() {
            !self.held_empty()
        } else {
            self.q.as_ref().map_or(0, |q| q.held_bytes) >= self.route.resume_buffer_bytes
        }
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
        self.published_clear(false);
        for _ in 0..ROUNDS {
            let now = Instant::now();
            self.take_published_rest();
            if !self.draining && self.shutdown.is_cancelled() {
                self.draining = true;
                let spread = self.route.drain_spread.as_millis() as u64;
                let delay = if spread == 0 {
                    0
                } else {
                    rand::random::<u64>() % spread
                };
                let drain_at = now + Duration::from_millis(delay);
                if self.close_at.is_none_or(|at| drain_at < at) {
                    self.close_at = Some(drain_at);
                    self.expiring = false;
                }
            }
            let mut progress = self.on_events(now, cx);
            progress |= self.take_published(now, cx);
            self.try_resume(now);
            progress |= self.inflate_backlog(now);
            progress |= self.flush_held(cx);
            match self.flush_client(cx) {
                Ok(p) => progress |= p,
                Err(()) => {
                    self.log_close(Closer::Client, None, "client went away");
                    self.client_done = true;
                    self.close_sent = true;
                    if let Some(q) = self.q.as_mut() {
                        self.route.mux_metrics.queued_bytes.sub(q.out_bytes as i64);
                        q.out.clear();
                        q.out_bytes = 0;
                        q.written = 0;
                        q.pong = None;
                        q.pong_in_out = false;
                    }
                    self.close_app(1006, "client connection lost");
                    self.flush_held(cx);
                    return Poll::Ready(());
                }
            }
            if !self.client_paused() && !self.client_done {
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
                self.published_clear(true);
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn end(&mut self) {
        self.clear_held();
        // Subscriptions belong to the session (they survived any resume);
        // they end with it.
        self.inbox.end_fanout();
        if let Some(q) = self.q.as_mut() {
            q.fanout = None;
        }
        if let Some(c) = &self.conn {
            c.forget(self.id);
        }
        if let Some(r) = self.resume.take() {
            r.forget(self.id);
        }
        self.route
            .mux_metrics
            .queued_bytes
            .sub(self.out_bytes() as i64);
        if !self.client_close_counted {
            self.route.metrics.close("client", None);
        }
        self.route.metrics.active.dec();
        self.route
            .metrics
            .session
            .observe(self.started.elapsed().as_secs_f64());
        if let Some(a) = &self.access {
            a.emit(&self.route.metrics.name, "mux", self.started.elapsed());
        }
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
mod tests {
    /// What an idle mux client costs is mostly this future inside its
    /// tokio task cell (cells are 128-byte aligned; ≤ 400 bytes of future
    /// keeps the cell in the 512-byte class — measured 1.30 KB of RSS per
    /// idle client at 392 bytes, 1.78 KB at 488). Boxing rarely used state
    /// is how it stays there.
    #[test]
    fn the_session_task_stays_small() {
        let size = std::mem::size_of::<super::Running>();
        println!("mux session future: {size} bytes");
        assert!(size <= 400, "mux session future grew to {size} bytes");
    }
}
