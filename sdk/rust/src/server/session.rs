//! One session as the application sees it: a stream of whole messages
//! ([`Session::recv`]) and a cloneable sender ([`SessionSender`]).
//!
//! The state behind the handles (which mux connection the session is on
//! right now — it changes when the gateway resumes it elsewhere,
//! docs/mux-protocol.md §6 — the inbound queue, the final close) is in
//! `state`.
//!
//! Inbound policy: a session's unread messages are bounded (count and
//! bytes, `Config::session_queue_*`). The connection reader never waits
//! for the application: when a message does not fit, the session is
//! closed with CLOSE 1008 "slow consumer" towards the gateway and the
//! application gets the messages already queued, then `Closed(1008)`.

mod state;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::{self, Close, OpenBody, KIND_BINARY, KIND_TEXT};
pub(crate) use state::{finished_epoch, Delivery, SessionShared};

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
    /// `subscribe` / `unsubscribe`: not 1-128 of `A-Z a-z 0-9 . _ - : @ /`.
    #[error("invalid channel name")]
    BadChannel,
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

    /// `try_send_text` for text already encoded as UTF-8 bytes (a
    /// broadcast encodes once and shares the bytes).
    pub(crate) fn try_send_text_bytes(&self, utf8: Bytes) -> Result<(), SendError> {
        now_or_full(self.shared.send(KIND_TEXT, utf8, false))
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
        self.shared.is_finished()
    }

    /// Subscribe the session to `channel` at the gateway (extension
    /// `fanout`, docs/mux-protocol.md §10): one SUBSCRIBE, queued without
    /// waiting; again: no effect. While the session is being resumed the
    /// change is sent after the resume. `Ok(true)` when the gateway
    /// carries the subscription; `Ok(false)` when the connection did not
    /// negotiate `fanout`, and only per-session sends ([`super::Room`]'s
    /// fallback, [`super::Publisher`]'s) reach the session.
    pub fn subscribe(&self, channel: &str) -> Result<bool, SendError> {
        if !codec::valid_channel(channel.as_bytes()) {
            return Err(SendError::BadChannel);
        }
        self.shared.subscribe(channel)
    }

    /// End a subscription (one UNSUBSCRIBE; unknown: no effect). A
    /// session's subscriptions end with it.
    pub fn unsubscribe(&self, channel: &str) -> Result<(), SendError> {
        self.shared.unsubscribe(channel).map(drop)
    }

    /// The channels the session is subscribed to.
    pub fn channels(&self) -> Vec<String> {
        self.shared.channels()
    }

    /// Does the gateway carrying the session negotiate `fanout` (so its
    /// subscriptions are the gateway's and a PUBLISH reaches it)?
    pub fn is_fanout(&self) -> bool {
        self.shared.is_fanout()
    }
}

/// Run a send that was told not to wait: it completes on its first poll.
pub(crate) fn now_or_full<F: std::future::Future<Output = Result<(), SendError>>>(
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
    /// Sending side (also handed out by [`Session::sender`]); its shared
    /// state holds the inbound queue too.
    sender: SessionSender,
    /// The OPEN this session was accepted from.
    open: OpenBody,
    /// The final `Closed` was returned; `recv` now returns `None`.
    done: bool,
}

impl Session {
    pub(crate) fn new(shared: Arc<SessionShared>, open: OpenBody) -> Session {
        Session {
            sender: SessionSender { shared },
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
        let shared = &self.sender.shared;
        match std::future::poll_fn(|cx| shared.poll_recv(cx)).await {
            Some(event) => Some(event),
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

    /// See [`SessionSender::subscribe`].
    pub fn subscribe(&self, channel: &str) -> Result<bool, SendError> {
        self.sender.subscribe(channel)
    }

    pub fn unsubscribe(&self, channel: &str) -> Result<(), SendError> {
        self.sender.unsubscribe(channel)
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
