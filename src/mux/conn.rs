//! One mux connection to the application: the sessions it carries, a
//! reader that dispatches the application's frames to session inboxes, and
//! a write buffer that sessions append to and flush themselves, batching
//! every session's frames into as few WebSocket messages and system calls
//! as it can (`outbuf`, `writer`).
//!
//! The reader never waits on a session (inboxes only append), so one slow
//! client cannot stall the connection; the write buffer is bounded in
//! bytes (`mux.connection_queue_bytes`) — a full buffer stops sessions
//! from reading their clients. One task per connection: the reader's,
//! which also finishes writes that would block.

mod dispatch;
mod drain;
mod outbuf;
mod writer;

pub use outbuf::Full;

use super::inbox::{Event, Inbox};
use super::metrics::ConnMetrics;
use super::pool::Pool;
use super::wire::{Incoming, MuxReader, ReadError};
use crate::config::MuxConfig;
use crate::io::Io;
use bytes::Bytes;
use dispatch::Goaway;
use drain::Drain;
use outbuf::{Flushed, Hold, OutBuf};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Context;
use tidegate_mux::codec::{CodecError, Frame, FrameType, HEADER_LEN};
use tokio::io::ReadHalf;
use tokio::sync::Notify;
use tokio::time::{sleep_until, timeout, Instant};

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// How far an application's WebSocket message may exceed
/// `mux.max_frame_bytes`: a message is one mux frame alone (its header
/// included) or a batch of frames, and the SDKs batch up to 64 KiB — so a
/// gateway configured with a small `max_frame_bytes` still reads their
/// batches.
const MESSAGE_HEADROOM: usize = 64 * 1024;

/// What the write buffer holds.
pub enum Out {
    /// A mux frame.
    Frame {
        header: [u8; HEADER_LEN],
        body: Bytes,
    },
    /// Answer the application's latest WebSocket ping (the payload is in
    /// the buffer's pong slots; nothing is written if an earlier marker
    /// took it).
    Pong,
    /// Answer the application's latest mux PING, likewise.
    MuxPong,
    /// WebSocket Close, then the connection ends.
    Close(u16, &'static str),
}

impl Out {
    pub fn frame(frame: &Frame) -> Out {
        Out::Frame {
            header: frame.header(),
            body: frame.body.clone(),
        }
    }
}

#[derive(Default)]
struct Table {
    sessions: HashMap<u32, Arc<Inbox>>,
    /// After GOAWAY: sessions already accepted on another connection. They
    /// stay routable here, so frames the application sent before it saw
    /// them leave still reach their clients.
    moved: HashSet<u32>,
    /// The connection ended: nothing may register any more.
    dead: bool,
}

/// After the gateway's Close: how long the application's remaining frames
/// and its Close are still read (frames it sent before it saw ours).
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Conn {
    /// Process-unique, so a session can tell its current connection's
    /// `Lost` from an old one's.
    pub id: u64,
    table: Mutex<Table>,
    /// Set by GOAWAY: no new sessions; the current ones are moving away.
    draining: AtomicBool,
    /// Mirrors `Table::dead` without the lock, so `usable` can be asked
    /// of every connection while one holds its own table lock (GOAWAY).
    dead: AtomicBool,
    /// The pool, asked on GOAWAY whether another connection can take the
    /// sessions (weak: the pool owns its connections).
    pool: Weak<Pool>,
    /// Tells the reader that every session has moved (start the linger).
    all_moved: Notify,
    /// The write buffer: client MESSAGEs bounded by
    /// `mux.connection_queue_bytes`, pongs coalesced in two slots, the
    /// rest a few control frames per session or per ping interval.
    out: OutBuf,
    pub settings: Arc<MuxConfig>,
    pub metrics: ConnMetrics,
    /// The endpoint URL this connection goes to (access log).
    pub endpoint: Box<str>,
    /// Fan-out: set when the application's 101 echoed the `fanout`
    /// extension; only then are SUBSCRIBE / UNSUBSCRIBE / PUBLISH valid.
    pub fanout: Option<Arc<crate::fanout::Hub>>,
    /// When the connection came up: the pool spreads resumed sessions
    /// from the moment the first connection is back (`pick_for_resume`).
    pub opened: Instant,
    /// Sessions hand their flush to this connection's task instead of
    /// writing at once: on a single-threaded worker (the default layout)
    /// that task runs after every session woken in the same tick, so their
    /// frames leave in one write. On a work-stealing runtime the woken
    /// task would run next (tokio's LIFO slot) or on another thread, so
    /// there the flusher writes itself, unless `mux.write_delay` asks the
    /// connection task to hold the flush (then it always hands over).
    hand_over: bool,
}

impl Conn {
    /// A connection over `io` (upgraded); returns the read half for
    /// [`Conn::run`].
    pub fn new(
        settings: Arc<MuxConfig>,
        metrics: ConnMetrics,
        endpoint: &str,
        pool: Weak<Pool>,
        io: Io,
        fanout: Option<Arc<crate::fanout::Hub>>,
    ) -> (Arc<Conn>, ReadHalf<Io>) {
        let tls = io.buffers_writes();
        let (rd, wr) = tokio::io::split(io);
        let mut writer = writer::Writer::new(wr, tls, settings.batch_bytes);
        writer.observe_batches(metrics.batch_frames.clone());
        let out = OutBuf::new(
            writer,
            settings.connection_queue_bytes,
            settings.write_delay,
            settings.batch_bytes,
        );
        let hand_over = !settings.write_delay.is_zero()
            || tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        let conn = Arc::new(Conn {
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            table: Mutex::new(Table::default()),
            draining: AtomicBool::new(false),
            dead: AtomicBool::new(false),
            pool,
            all_moved: Notify::new(),
            out,
            settings,
            metrics,
            endpoint: Box::from(endpoint),
            fanout,
            opened: Instant::now(),
            hand_over,
        });
        (conn, rd)
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Only plain map operations happen under this lock.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open for new sessions.
    pub fn usable(&self) -> bool {
        !self.draining.load(Ordering::Acquire) && !self.dead.load(Ordering::Acquire)
    }

    pub fn session_count(&self) -> usize {
        self.table().sessions.len()
    }

    /// Route the application's frames for `id` to `inbox`. False if the
    /// connection is gone or draining.
    pub fn register(&self, id: u32, inbox: Arc<Inbox>) -> bool {
        let mut t = self.table();
        if t.dead || self.draining.load(Ordering::Acquire) {
            return false;
        }
        t.sessions.insert(id, inbox);
        self.metrics.sessions.set(t.sessions.len() as i64);
        true
    }

    /// The session ended (or never got going here).
    pub fn forget(&self, id: u32) {
        let mut t = self.table();
        if t.sessions.remove(&id).is_some() {
            t.moved.remove(&id);
            self.metrics.sessions.set(t.sessions.len() as i64);
            self.check_moved(&t);
        }
    }

    /// After GOAWAY: the session was accepted on another connection. It
    /// stays routable here until this connection closes, which happens
    /// `MOVE_LINGER` after the last session moved or ended.
    pub fn moved_away(&self, id: u32) {
        let mut t = self.table();
        if t.sessions.contains_key(&id) {
            t.moved.insert(id);
            self.check_moved(&t);
        }
    }

    fn check_moved(&self, t: &Table) {
        if self.draining.load(Ordering::Acquire) && t.moved.len() == t.sessions.len() {
            self.all_moved.notify_one();
        }
    }

    /// Wake every session for the drain (they check the shutdown token).
    pub fn wake_for_drain(&self) {
        for inbox in self.table().sessions.values() {
            inbox.push(Event::Drain, usize::MAX);
        }
    }

    /// Queue a control frame for the application (never refused; dropped
    /// if the connection is gone: the session learns that from its inbox).
    pub fn send(&self, out: Out) {
        self.out.push_control(out);
    }

    /// Queue a client MESSAGE charged `cost` bytes of
    /// `mux.connection_queue_bytes`. `Ok(true)`: the caller became the
    /// buffer's flusher and calls [`Conn::flush`] at the end of its poll
    /// round. `Err(Full)`: no room; `cx` is woken when there is
    /// (`waiting`: the caller's registration mark, 0 when not waiting).
    pub fn queue(
        &self,
        frame: Frame,
        cost: usize,
        cx: &Context<'_>,
        waiting: &mut u32,
    ) -> Result<bool, Full> {
        self.out.push_data(frame, cost, cx, waiting)
    }

    /// Write what is queued, as the flusher (after `queue` said so), or
    /// have the connection task write it (see `hand_over`).
    pub fn flush(&self) {
        if self.hand_over {
            self.out.hand_over();
        } else if self.out.flush() == Flushed::Ended {
            tracing::debug!(conn = self.id, "mux writer ended during a session's flush");
        }
    }

    /// Answer a ping of the application (`mux`: a mux PING, else a
    /// WebSocket ping): replaces an answer not yet written, and queues a
    /// marker for the writer only when there was none.
    fn queue_pong(&self, mux: bool, payload: Bytes) {
        let was_empty = {
            let mut st = self.out.lock();
            let slot = if mux {
                &mut st.pongs.mux
            } else {
                &mut st.pongs.ws
            };
            slot.replace(payload).is_none()
        };
        if was_empty {
            self.send(if mux { Out::MuxPong } else { Out::Pong });
        }
    }

    /// Run the connection until it ends, then tell its sessions.
    pub async fn run(self: &Arc<Self>, rd: ReadHalf<Io>, leftover: &[u8]) {
        let read = self.read_loop(rd, leftover);
        tokio::pin!(read);
        let mut hold = Hold::default();
        let ended = tokio::select! {
            // Reader: the application's frames, pings, liveness.
            r = &mut read => r,
            // Writer: writes that would block finish here; ends after a
            // Close or when the socket fails. What the application sent
            // before it saw our Close still reaches its sessions: read on
            // until its Close, briefly.
            () = std::future::poll_fn(|cx| self.out.poll_drive(cx, &mut hold)) => {
                timeout(CLOSE_WAIT, &mut read).await.unwrap_or_else(|_| "closed".into())
            }
        };
        self.out.end();
        tracing::info!(conn = self.id, reason = %ended, "mux connection ended");
        let sessions = {
            let mut t = self.table();
            t.dead = true;
            self.dead.store(true, Ordering::Release);
            std::mem::take(&mut t.sessions)
        };
        self.metrics.sessions.set(0);
        let goaway = self.draining.load(Ordering::Acquire);
        for inbox in sessions.values() {
            inbox.push(
                Event::Lost {
                    conn_id: self.id,
                    goaway,
                },
                usize::MAX,
            );
        }
    }

    async fn read_loop(self: &Arc<Self>, mut rd: ReadHalf<Io>, leftover: &[u8]) -> String {
        let s = Arc::clone(&self.settings);
        let mut reader = MuxReader::new(leftover, s.max_frame_bytes + MESSAGE_HEADROOM);
        let mut next_ping = Instant::now() + s.ping_interval;
        let mut pong_due: Option<Instant> = None;
        let mut drain = Drain::default();
        loop {
            let timer = [Some(next_ping), pong_due, drain.next()]
                .into_iter()
                .flatten()
                .min()
                .expect("next_ping is always set");
            let incoming = tokio::select! {
                r = reader.next(&mut rd) => r,
                // GOAWAY: every session moved; close after the linger.
                () = self.all_moved.notified() => {
                    drain.all_moved(Instant::now());
                    continue;
                }
                // Keepalive, pong deadline or GOAWAY timing.
                () = sleep_until(timer) => {
                    let now = Instant::now();
                    if pong_due.is_some_and(|d| d <= now) {
                        return "no pong from the application".into();
                    }
                    if drain.due(now, || self.goaway_kind() == Goaway::Release) {
                        self.send(Out::Close(1000, "sessions moved"));
                        continue;
                    }
                    if next_ping <= now {
                        self.send(Out::frame(&Frame::ping(Bytes::from_static(b"tidegate"))));
                        pong_due.get_or_insert(now + s.pong_timeout);
                        next_ping = now + s.ping_interval;
                    }
                    continue;
                }
            };
            // Any frame proves the application alive.
            pong_due = None;
            drain.on_frame(Instant::now());
            let msg = match incoming {
                Ok(Incoming::Binary(msg)) => msg,
                Ok(Incoming::Ping(p)) => {
                    self.queue_pong(false, p);
                    continue;
                }
                Ok(Incoming::Pong) => continue,
                Ok(Incoming::Close) => return "the application closed it".into(),
                Ok(Incoming::Text) => return self.protocol_error(CodecError::TextMessage).await,
                Err(ReadError::TooBig(n)) => {
                    let len = n.min(u32::MAX as usize) as u32;
                    let e = CodecError::TooBig {
                        kind: FrameType::Message,
                        len,
                    };
                    return self.protocol_error(e).await;
                }
                Err(e) => return e.to_string(),
            };
            match self.dispatch(msg) {
                Ok(Goaway::None) => {}
                Ok(Goaway::Move) => drain.moving(Instant::now(), s.resume_grace),
                Ok(Goaway::Release) => drain.release(Instant::now()),
                Err(e) => return self.protocol_error(e).await,
            }
        }
    }

    /// Close with 1002 and give the writer a moment to send it.
    async fn protocol_error(&self, e: CodecError) -> String {
        self.metrics.protocol_error(e.label());
        tracing::warn!(conn = self.id, error = %e, "mux protocol error from the application");
        self.send(Out::Close(1002, e.label()));
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        format!("protocol error: {e}")
    }
}
