//! The application's side of the data: taking inbound messages off the
//! inbox and sending outbound ones on whichever connection the session is
//! attached to, waiting out a resume when asked to.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::{event_len, Link, SessionShared};
use crate::codec::{Close, Frame, KIND_CONTINUATION};
use crate::server::outbox::{Outbox, PushError};
use crate::server::session::{Event, SendError};

/// Inbox slots kept once emptied (a few messages in flight is the usual
/// state of a busy session; more is a burst whose memory is given back).
const IDLE_INBOX: usize = 4;

/// Largest MESSAGE frame the SDK sends; longer messages are fragmented so
/// no frame approaches the gateway's `mux.max_frame_bytes`.
const MAX_FRAGMENT: usize = 1 << 20;

impl SessionShared {
    /// The next inbound message: `Ready(Some)`, `Ready(None)` once the
    /// queue ended (then the final close follows, from `take_close`), or
    /// `Pending` with the caller's waker kept.
    pub(in crate::server::session) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Event>> {
        let mut st = self.lock();
        if let Some(event) = st.inbox.pop_front() {
            let len = event_len(&event);
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            if st.inbox.is_empty() && st.inbox.capacity() > IDLE_INBOX {
                // A burst grew it; an idle session keeps no queue memory.
                st.inbox = VecDeque::new();
            }
            return Poll::Ready(Some(event));
        }
        if !st.inbox_open {
            return Poll::Ready(None);
        }
        if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The final event, once (after the inbound queue ended).
    pub(in crate::server::session) fn take_close(&self) -> Option<Close> {
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

    pub(crate) async fn send(&self, kind: u8, payload: Bytes, wait: bool) -> Result<(), SendError> {
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
