//! The write side of one mux connection: a bounded queue of mux frames fed
//! by every session on the connection (and by the reader, for PONG, ACCEPT
//! and CLOSE), drained by one writer task that packs whatever is queued
//! into a single binary WebSocket message (docs/mux-protocol.md §8,
//! batching).
//!
//! Application data waits for room (`connection_queue_bytes`): a gateway
//! that reads slowly slows the application's senders down instead of
//! growing memory. Control frames never wait, so the reader task never
//! blocks on the queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use fastwebsockets::{Payload, WebSocketWrite};
use tokio::io::AsyncWrite;
use tokio::sync::Notify;

use crate::codec::{Frame, HEADER_LEN};

/// Largest WebSocket message the writer builds from several frames; a
/// frame larger than this goes alone (§8).
pub(crate) const BATCH_BYTES: usize = 64 * 1024;

/// Frames waiting for the writer task of one mux connection.
pub(crate) struct Outbox {
    /// Everything the writer has still to send; one lock, held briefly.
    state: Mutex<OutState>,
    /// Wakes the writer when something was queued (a stored permit covers
    /// a push that happens while the writer is busy writing).
    wake_writer: Notify,
    /// Wakes application senders waiting for room, and senders whose
    /// connection ended (they then wait for the session to be resumed).
    space: Notify,
    /// Bytes of application data queued before senders wait.
    limit: usize,
    /// The gateway process at the other end (`X-Tidegate-Instance`): a
    /// PUBLISH reaches that instance's subscribers only.
    pub(crate) instance: Arc<str>,
    /// Both sides named extension `fanout` in the upgrade (§10):
    /// SUBSCRIBE, UNSUBSCRIBE and PUBLISH may go out here.
    pub(crate) fanout: bool,
}

#[derive(Default)]
struct OutState {
    /// Mux frames in the order they were queued.
    frames: VecDeque<Frame>,
    /// Header + body bytes of `frames`, for the bound.
    bytes: usize,
    /// WebSocket-level pongs owed to the gateway.
    ws_pongs: Vec<Bytes>,
    /// A WebSocket Close the writer sends before it stops.
    close: Option<(u16, String)>,
    /// The connection is gone: nothing more is accepted.
    ended: bool,
}

/// What the writer does next.
pub(crate) enum Out {
    /// One binary WebSocket message of one or more mux frames.
    Batch(BytesMut),
    /// A WebSocket pong.
    Pong(Bytes),
    /// A WebSocket Close, then stop.
    Close(u16, String),
    /// Stop.
    End,
}

/// Why application data was not queued.
pub(crate) enum PushError {
    /// The connection ended; the frames come back so they can go on the
    /// connection the session is resumed on.
    Ended(Vec<Frame>),
    /// The session finished meanwhile (frames dropped).
    Finished,
    /// No room and the caller would not wait.
    Full,
}

fn wire_len(frames: &[Frame]) -> usize {
    frames.iter().map(|f| HEADER_LEN + f.body.len()).sum()
}

impl Outbox {
    #[cfg(test)]
    pub(crate) fn new(limit: usize) -> Outbox {
        Outbox::for_connection(limit, "".into(), false)
    }

    /// The outbox of a connection from gateway `instance`, which
    /// negotiated `fanout` or not.
    pub(crate) fn for_connection(limit: usize, instance: Arc<str>, fanout: bool) -> Outbox {
        Outbox {
            state: Mutex::new(OutState::default()),
            wake_writer: Notify::new(),
            space: Notify::new(),
            limit,
            instance,
            fanout,
        }
    }

    /// Has the connection ended (nothing more is accepted)?
    pub(crate) fn is_ended(&self) -> bool {
        let st = self.lock();
        st.ended || st.close.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutState> {
        // A panic while holding this lock leaves a consistent queue (every
        // update is a single push or pop), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a frame the protocol owes (PONG, ACCEPT, REJECT, CLOSE,
    /// GOAWAY) regardless of the bound. False when the connection ended.
    pub(crate) fn push_control(&self, frame: Frame) -> bool {
        let mut st = self.lock();
        if st.ended || st.close.is_some() {
            return false;
        }
        st.bytes += HEADER_LEN + frame.body.len();
        st.frames.push_back(frame);
        drop(st);
        self.wake_writer.notify_one();
        true
    }

    /// Queue application frames of one message together (so fragments of
    /// two messages of a session never interleave), waiting while the
    /// queue is over its bound unless `wait` is false. `finished` is
    /// checked under the queue lock so nothing follows a session's CLOSE.
    pub(crate) async fn push_data(
        &self,
        frames: Vec<Frame>,
        finished: &AtomicBool,
        wait: bool,
    ) -> Result<(), PushError> {
        loop {
            let room = self.space.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut st = self.lock();
                if finished.load(Ordering::Acquire) {
                    return Err(PushError::Finished);
                }
                if st.ended || st.close.is_some() {
                    return Err(PushError::Ended(frames));
                }
                // Soft bound: one message may overshoot it, so a message
                // larger than the bound still goes out.
                if st.bytes < self.limit {
                    st.bytes += wire_len(&frames);
                    st.frames.extend(frames);
                    drop(st);
                    self.wake_writer.notify_one();
                    return Ok(());
                }
                if !wait {
                    return Err(PushError::Full);
                }
            }
            room.await;
        }
    }

    /// Owe the gateway a WebSocket pong.
    pub(crate) fn ws_pong(&self, payload: Bytes) {
        self.lock().ws_pongs.push(payload);
        self.wake_writer.notify_one();
    }

    /// Close the WebSocket with `code`: queued frames are dropped.
    pub(crate) fn shut(&self, code: u16, reason: &str) {
        let mut st = self.lock();
        if st.close.is_none() && !st.ended {
            st.close = Some((code, reason.to_string()));
        }
        drop(st);
        self.wake_writer.notify_one();
        self.space.notify_waiters();
    }

    /// The connection is gone: refuse further frames, release waiters.
    pub(crate) fn end(&self) {
        let mut st = self.lock();
        st.ended = true;
        st.frames.clear();
        st.bytes = 0;
        drop(st);
        self.wake_writer.notify_one();
        self.space.notify_waiters();
    }

    /// The next thing to write; waits while there is nothing.
    pub(crate) async fn next(&self) -> Out {
        loop {
            {
                let mut st = self.lock();
                if let Some((code, reason)) = st.close.take() {
                    st.ended = true;
                    st.frames.clear();
                    st.bytes = 0;
                    drop(st);
                    self.space.notify_waiters();
                    return Out::Close(code, reason);
                }
                if let Some(p) = st.ws_pongs.pop() {
                    return Out::Pong(p);
                }
                if !st.frames.is_empty() {
                    let batch = take_batch(&mut st);
                    drop(st);
                    self.space.notify_waiters();
                    return Out::Batch(batch);
                }
                if st.ended {
                    return Out::End;
                }
            }
            self.wake_writer.notified().await;
            // Let every task the runtime has ready now queue its frames
            // first (one session's reply wakes this task, and tokio would
            // run it next): they then leave in one write, not one each.
            tokio::task::yield_now().await;
        }
    }
}

/// Pack queued frames into one message of at most `BATCH_BYTES` (a larger
/// first frame alone).
fn take_batch(st: &mut OutState) -> BytesMut {
    let mut out = BytesMut::new();
    while let Some(f) = st.frames.front() {
        let len = HEADER_LEN + f.body.len();
        if !out.is_empty() && out.len() + len > BATCH_BYTES {
            break;
        }
        let f = st.frames.pop_front().expect("front() was Some");
        st.bytes -= len;
        f.encode_into(&mut out);
    }
    out
}

/// The writer task: one WebSocket message per batch until the connection
/// ends or a write fails.
pub(crate) async fn write_loop<W>(outbox: &Outbox, mut ws: WebSocketWrite<W>)
where
    W: AsyncWrite + Unpin,
{
    loop {
        let result = match outbox.next().await {
            Out::Batch(buf) => {
                ws.write_frame(fastwebsockets::Frame::binary(Payload::Bytes(buf)))
                    .await
            }
            Out::Pong(p) => {
                ws.write_frame(fastwebsockets::Frame::pong(Payload::Owned(p.to_vec())))
                    .await
            }
            Out::Close(code, reason) => {
                let reason = crate::codec::Close::new(code, reason).encode();
                let _ = ws
                    .write_frame(fastwebsockets::Frame::close_raw(Payload::Owned(
                        reason.to_vec(),
                    )))
                    .await;
                break;
            }
            Out::End => break,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "mux connection write failed");
            break;
        }
    }
    outbox.end();
}

#[cfg(test)]
mod tests;
