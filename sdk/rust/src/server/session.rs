//! One session as the application sees it: a stream of whole messages
//! ([`Session::recv`]) and a cloneable sender ([`SessionSender`]).
//!
//! The state shared between the application's handles, the connection
//! reader and the resume table lives in [`SessionShared`]: which mux
//! connection the session is on right now (it changes when the gateway
//! resumes it elsewhere, docs/mux-protocol.md §6), the bounded inbound
//! queue, and the final close.
//!
//! Inbound policy: a session's unread messages are bounded (count and
//! bytes, `Config::session_queue_*`). The connection reader never waits
//! for the application: when a message does not fit, the session is
//! closed with CLOSE 1008 "slow consumer" towards the gateway and the
//! application gets the messages already queued, then `Closed(1008)`.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use super::outbox::{Outbox, PushError};
use super::table;
use crate::codec::{
    self, AcceptBody, Close, Frame, OpenBody, KIND_BINARY, KIND_CONTINUATION, KIND_TEXT,
};

/// Largest MESSAGE frame the SDK sends; longer messages are fragmented so
/// no frame approaches the gateway's `mux.max_frame_bytes`.
const MAX_FRAGMENT: usize = 1 << 20;

/// Which session: the gateway instance (`X-Tidegate-Instance`) and the id
/// it chose (§3). Stable across resumes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId {
    /// The gateway process that owns the id space.
    pub instance: Arc<str>,
    /// The gateway's session id, unique within `instance`.
    pub id: u32,
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.instance, self.id)
    }
}

/// What a session delivers to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole text message (fragments already joined, UTF-8 checked).
    Text(String),
    /// A whole binary message.
    Binary(Bytes),
    /// The session is finished: the last event. `code: None` means the
    /// client closed without a status (1005).
    Closed(Close),
}

/// Why a send or close did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the session is closed")]
    Closed,
    /// `try_send_*` only: the connection's queue is over its bound.
    #[error("the connection's queue is full")]
    Full,
    /// `try_send_*` only: the session's connection was lost and the
    /// gateway has not resumed it yet.
    #[error("the session is being resumed")]
    Resuming,
    #[error("close code {0} may not be sent by an application")]
    BadCode(u16),
}

/// Where the session is.
pub(crate) enum Link {
    /// On connection `conn`; `accepted` once ACCEPT was queued.
    Attached {
        conn: u64,
        outbox: Arc<Outbox>,
        accepted: bool,
    },
    /// Connection `from` was lost; waiting for a RESUMED OPEN. `close`: the
    /// application closed meanwhile; sent once resumed.
    Detached { from: u64, close: Option<Close> },
    /// Closed; forgotten by the table.
    Finished,
}

struct State {
    /// Where frames for this session go now.
    link: Link,
    /// Sending side of the inbound queue; dropped when the session
    /// finishes, so `recv` sees the queue end after the last message.
    events: Option<mpsc::Sender<Event>>,
    /// The final event, handed out once the queue has been drained.
    close: Option<Close>,
}

/// State shared by the application's handles, the reader and the table.
pub(crate) struct SessionShared {
    /// The key in the resume table.
    pub(crate) id: SessionId,
    /// Link, inbound queue and final close, changed together.
    state: Mutex<State>,
    /// Set before a CLOSE is queued, read under the outbox lock, so no
    /// data frame follows the CLOSE.
    finished: AtomicBool,
    /// Senders waiting for the session to be resumed.
    relinked: Notify,
    /// Bytes of unread inbound messages, for the bound.
    queued_bytes: AtomicUsize,
    /// Bound on `queued_bytes` (one message always fits when empty).
    max_queued_bytes: usize,
}

/// What happened to an inbound message.
pub(crate) enum Delivery {
    Queued,
    /// The session is not (any more) on this connection: ignore (§3).
    Gone,
    /// The application is not reading: the session was closed with 1008.
    SlowConsumer,
}

impl SessionShared {
    pub(crate) fn new(
        id: SessionId,
        conn: u64,
        outbox: Arc<Outbox>,
        queue_messages: usize,
        queue_bytes: usize,
    ) -> (Arc<SessionShared>, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(queue_messages.max(1));
        let shared = SessionShared {
            id,
            state: Mutex::new(State {
                link: Link::Attached {
                    conn,
                    outbox,
                    accepted: false,
                },
                events: Some(tx),
                close: None,
            }),
            finished: AtomicBool::new(false),
            relinked: Notify::new(),
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes: queue_bytes,
        };
        (Arc::new(shared), rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state whole; poisoning carries no meaning.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// End the session under the lock: `close` becomes the application's
    /// last event; `send` (if any) is queued to the gateway first.
    fn finish(&self, st: &mut State, app_sees: Close, send: Option<(&Outbox, Close)>) {
        self.finished.store(true, Ordering::Release);
        if let Some((outbox, close)) = send {
            outbox.push_control(Frame::close(self.id.id, &close));
        }
        st.link = Link::Finished;
        st.close = Some(app_sees);
        st.events = None;
    }

    fn finished_now(self: &Arc<Self>) {
        self.relinked.notify_waiters();
        table::remove(self);
    }

    /// The application accepted the OPEN.
    pub(crate) fn accept(self: &Arc<Self>, body: &AcceptBody) {
        let mut st = self.lock();
        if let Link::Attached {
            outbox, accepted, ..
        } = &mut st.link
        {
            if !*accepted {
                *accepted = true;
                outbox.push_control(Frame::accept(self.id.id, body));
                drop(st);
                table::insert(self.clone());
            }
        }
    }

    /// The application rejected the OPEN (or dropped the `Incoming`).
    pub(crate) fn reject(&self, body: &codec::RejectBody) {
        let mut st = self.lock();
        if let Link::Attached {
            outbox,
            accepted: false,
            ..
        } = &st.link
        {
            outbox.push_control(Frame::reject(self.id.id, body));
            self.finish(&mut st, Close::new(1000, "rejected"), None);
        }
    }

    /// Is the session on connection `conn` right now?
    pub(crate) fn attached_to(&self, conn: u64) -> bool {
        matches!(self.lock().link, Link::Attached { conn: c, .. } if c == conn)
    }

    /// Queue an inbound message for the application (reader side; never
    /// waits).
    pub(crate) fn deliver(self: &Arc<Self>, conn: u64, event: Event) -> Delivery {
        let len = match &event {
            Event::Text(t) => t.len(),
            Event::Binary(b) => b.len(),
            Event::Closed(_) => 0,
        };
        let mut st = self.lock();
        let outbox = match &st.link {
            Link::Attached {
                conn: c, outbox, ..
            } if *c == conn => outbox.clone(),
            _ => return Delivery::Gone,
        };
        let Some(tx) = &st.events else {
            return Delivery::Gone;
        };
        let queued = self.queued_bytes.load(Ordering::Acquire);
        let fits = queued == 0 || queued + len <= self.max_queued_bytes;
        if fits {
            self.queued_bytes.fetch_add(len, Ordering::AcqRel);
            match tx.try_send(event) {
                Ok(()) => return Delivery::Queued,
                Err(_) => {
                    self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                }
            }
        }
        let close = Close::new(1008, "slow consumer");
        self.finish(&mut st, close.clone(), Some((&outbox, close)));
        drop(st);
        self.finished_now();
        Delivery::SlowConsumer
    }

    /// End the session on this connection with `close`, sent to the
    /// gateway too (a per-session protocol problem, §7).
    pub(crate) fn fail(self: &Arc<Self>, conn: u64, close: Close) {
        let mut st = self.lock();
        if let Link::Attached {
            conn: c, outbox, ..
        } = &st.link
        {
            if *c == conn {
                let outbox = outbox.clone();
                self.finish(&mut st, close.clone(), Some((&outbox, close)));
                drop(st);
                self.finished_now();
            }
        }
    }

    /// The gateway sent CLOSE for the session.
    pub(crate) fn remote_close(self: &Arc<Self>, conn: u64, close: Close) {
        let mut st = self.lock();
        if matches!(st.link, Link::Attached { conn: c, .. } if c == conn) {
            self.finish(&mut st, close, None);
            drop(st);
            self.finished_now();
        }
    }

    /// The application closes the session.
    pub(crate) fn local_close(self: &Arc<Self>, close: Close) -> Result<(), SendError> {
        let mut st = self.lock();
        match &mut st.link {
            Link::Attached { outbox, .. } => {
                let outbox = outbox.clone();
                self.finish(&mut st, close.clone(), Some((&outbox, close)));
            }
            Link::Detached { close: pending, .. } => {
                // Keep the table entry: the CLOSE goes out on resume.
                *pending = Some(close.clone());
                self.finished.store(true, Ordering::Release);
                st.close = Some(close);
                st.events = None;
                drop(st);
                self.relinked.notify_waiters();
                return Ok(());
            }
            Link::Finished => return Err(SendError::Closed),
        }
        drop(st);
        self.finished_now();
        Ok(())
    }

    /// Connection `conn` is gone. True when the session now waits for a
    /// resume (an unanswered OPEN is simply finished).
    pub(crate) fn detach(self: &Arc<Self>, conn: u64) -> bool {
        let mut st = self.lock();
        match st.link {
            Link::Attached {
                conn: c,
                accepted: true,
                ..
            } if c == conn => {
                st.link = Link::Detached {
                    from: conn,
                    close: None,
                };
                true
            }
            Link::Attached { conn: c, .. } if c == conn => {
                self.finish(&mut st, Close::new(1006, "mux connection lost"), None);
                drop(st);
                self.finished_now();
                false
            }
            _ => false,
        }
    }

    /// The resume grace after losing connection `from` ran out.
    pub(crate) fn expire(self: &Arc<Self>, from: u64) {
        let mut st = self.lock();
        if let Link::Detached { from: f, close } = &st.link {
            if *f == from {
                let app_sees = close
                    .clone()
                    .unwrap_or_else(|| Close::new(1006, "mux connection lost"));
                self.finish(&mut st, app_sees, None);
                drop(st);
                self.finished_now();
            }
        }
    }

    /// A RESUMED OPEN for this session arrived on `conn`: answer ACCEPT
    /// there and carry on. False if the session is finished.
    pub(crate) fn reattach(self: &Arc<Self>, conn: u64, outbox: &Arc<Outbox>) -> bool {
        let mut st = self.lock();
        let pending_close = match &mut st.link {
            Link::Finished => return false,
            // GOAWAY: the old connection is still up while the gateway
            // moves the session.
            Link::Attached { accepted, .. } if *accepted => None,
            Link::Attached { .. } => return false,
            Link::Detached { close, .. } => close.take(),
        };
        outbox.push_control(Frame::accept(self.id.id, &AcceptBody::default()));
        if let Some(close) = pending_close {
            outbox.push_control(Frame::close(self.id.id, &close));
            st.link = Link::Finished;
            drop(st);
            self.finished_now();
            return true;
        }
        st.link = Link::Attached {
            conn,
            outbox: outbox.clone(),
            accepted: true,
        };
        drop(st);
        self.relinked.notify_waiters();
        true
    }

    /// The final event, once (after the inbound queue ended).
    fn take_close(&self) -> Option<Close> {
        self.lock().close.take()
    }

    /// The connection to send on, waiting while the session is resuming.
    /// `dead`: a connection that already refused the frames (its reader
    /// may not have detached the session yet), treated as resuming.
    async fn outbox(
        &self,
        wait: bool,
        dead: Option<&Arc<Outbox>>,
    ) -> Result<Arc<Outbox>, SendError> {
        loop {
            let relinked = self.relinked.notified();
            tokio::pin!(relinked);
            relinked.as_mut().enable();
            if self.finished.load(Ordering::Acquire) {
                return Err(SendError::Closed);
            }
            match &self.lock().link {
                Link::Attached { outbox, .. } if !dead.is_some_and(|d| Arc::ptr_eq(d, outbox)) => {
                    return Ok(outbox.clone())
                }
                Link::Finished => return Err(SendError::Closed),
                _ if !wait => return Err(SendError::Resuming),
                _ => {}
            }
            relinked.await;
        }
    }

    async fn send(&self, kind: u8, payload: Bytes, wait: bool) -> Result<(), SendError> {
        let mut frames = fragments(self.id.id, kind, payload);
        let mut dead = None;
        loop {
            let outbox = self.outbox(wait, dead.as_ref()).await?;
            match outbox.push_data(frames, &self.finished, wait).await {
                Ok(()) => return Ok(()),
                Err(PushError::Finished) => return Err(SendError::Closed),
                Err(PushError::Full) => return Err(SendError::Full),
                // The connection went away under us: wait for the resume.
                Err(PushError::Ended(back)) => {
                    frames = back;
                    dead = Some(outbox);
                }
            }
        }
    }
}

/// One message as MESSAGE frames of at most `MAX_FRAGMENT` bytes.
fn fragments(id: u32, kind: u8, mut payload: Bytes) -> Vec<Frame> {
    let mut frames = Vec::with_capacity(1 + payload.len() / MAX_FRAGMENT);
    let mut k = kind;
    while payload.len() > MAX_FRAGMENT {
        let part = payload.split_to(MAX_FRAGMENT);
        frames.push(Frame::message(id, k, false, part));
        k = KIND_CONTINUATION;
    }
    frames.push(Frame::message(id, k, true, payload));
    frames
}

/// Sends on a session; cheap to clone, usable from any task.
#[derive(Clone)]
pub struct SessionSender {
    /// The session, wherever it currently lives.
    shared: Arc<SessionShared>,
}

impl SessionSender {
    pub fn id(&self) -> &SessionId {
        &self.shared.id
    }

    /// Send a text message; waits while the connection's queue is full or
    /// the session is being resumed.
    pub async fn send_text(&self, text: impl Into<String>) -> Result<(), SendError> {
        let text: String = text.into();
        self.shared.send(KIND_TEXT, Bytes::from(text), true).await
    }

    /// Send a binary message; waits like [`SessionSender::send_text`].
    pub async fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.shared.send(KIND_BINARY, data.into(), true).await
    }

    /// Send a text message now, or fail with [`SendError::Full`] /
    /// [`SendError::Resuming`] where `send_text` would wait.
    pub fn try_send_text(&self, text: impl Into<String>) -> Result<(), SendError> {
        let text: String = text.into();
        now_or_full(self.shared.send(KIND_TEXT, Bytes::from(text), false))
    }

    /// Send a binary message now, or fail where `send_binary` would wait.
    pub fn try_send_binary(&self, data: impl Into<Bytes>) -> Result<(), SendError> {
        now_or_full(self.shared.send(KIND_BINARY, data.into(), false))
    }

    /// Close the session: the gateway closes the client with `code` and
    /// `reason` (at most 123 bytes; longer is cut). Codes: 1000–1003,
    /// 1007–1014, 3000–4999.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), SendError> {
        if code == 1006 || !codec::valid_code(code) {
            return Err(SendError::BadCode(code));
        }
        self.shared.local_close(Close::new(code, reason))
    }

    /// Has the session finished (closed by either side or lost)?
    pub fn is_closed(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }
}

/// Run a send that was told not to wait: it completes on its first poll.
fn now_or_full<F: std::future::Future<Output = Result<(), SendError>>>(
    fut: F,
) -> Result<(), SendError> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        // Unreachable with wait = false (no await point blocks); treated
        // as full rather than trusted.
        std::task::Poll::Pending => Err(SendError::Full),
    }
}

/// An accepted session.
pub struct Session {
    /// Sending side (also handed out by [`Session::sender`]).
    sender: SessionSender,
    /// The inbound queue.
    events: mpsc::Receiver<Event>,
    /// The OPEN this session was accepted from.
    open: OpenBody,
    /// The final `Closed` was returned; `recv` now returns `None`.
    done: bool,
}

impl Session {
    pub(crate) fn new(
        shared: Arc<SessionShared>,
        events: mpsc::Receiver<Event>,
        open: OpenBody,
    ) -> Session {
        Session {
            sender: SessionSender { shared },
            events,
            open,
            done: false,
        }
    }

    pub fn id(&self) -> &SessionId {
        self.sender.id()
    }

    /// The OPEN the session was accepted from (path, headers, identity…).
    pub fn open(&self) -> &OpenBody {
        &self.open
    }

    /// A cloneable sender for other tasks.
    pub fn sender(&self) -> SessionSender {
        self.sender.clone()
    }

    /// The next whole message, or `Closed` (once, last), then `None`.
    pub async fn recv(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        match self.events.recv().await {
            Some(event) => {
                let len = match &event {
                    Event::Text(t) => t.len(),
                    Event::Binary(b) => b.len(),
                    Event::Closed(_) => 0,
                };
                self.sender
                    .shared
                    .queued_bytes
                    .fetch_sub(len, Ordering::AcqRel);
                Some(event)
            }
            None => {
                self.done = true;
                self.sender.shared.take_close().map(Event::Closed)
            }
        }
    }

    pub async fn send_text(&self, text: impl Into<String>) -> Result<(), SendError> {
        self.sender.send_text(text).await
    }

    pub async fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.sender.send_binary(data).await
    }

    pub fn close(&self, code: u16, reason: &str) -> Result<(), SendError> {
        self.sender.close(code, reason)
    }
}

impl Drop for Session {
    /// Nobody reads the session any more: close it (1000) unless it
    /// already finished.
    fn drop(&mut self) {
        if !self.sender.is_closed() {
            let _ = self.sender.close(1000, "");
        }
    }
}
