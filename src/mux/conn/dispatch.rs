//! The reader's dispatch: one WebSocket message from the application,
//! decoded into mux frames, each handed to its session's inbox without
//! waiting (a slow client never stalls the connection), and what a GOAWAY
//! among them asks of the connection (move its sessions, or release it).

use super::{Conn, Out};
use crate::mux::inbox::{Event, Inbox};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tidegate_mux::codec::{self, Close, CodecError, FrameType};
use tidegate_mux::{AcceptBody, RejectBody};

/// What a GOAWAY in a message asks of the reader (see `drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Goaway {
    /// No GOAWAY in this message (or not the first one).
    None,
    /// Sessions move to other connections; close once they have.
    Move,
    /// Nowhere to move: sessions wait for a resume as after a cut, and the
    /// connection closes as soon as the application has gone quiet.
    Release,
}

impl Conn {
    /// Hand one message's frames to their sessions, and say what a GOAWAY
    /// among them asks for.
    pub(super) fn dispatch(self: &Arc<Self>, msg: Bytes) -> Result<Goaway, CodecError> {
        let limit = self.settings.session_queue_bytes;
        let mut goaway = Goaway::None;
        let mut t = self.table();
        let msg_len = msg.len();
        for frame in codec::decode(msg, self.settings.max_frame_bytes as u32) {
            let f = frame?;
            if !f.kind.from_app() {
                return Err(CodecError::WrongDirection(f.kind));
            }
            let inbox = t.sessions.get(&f.session);
            match f.kind {
                FrameType::Message => {
                    if let Some(inbox) = inbox {
                        let flags = f.flags;
                        let payload = own_allocation(f.body, msg_len);
                        inbox.push(Event::Message { flags, payload }, limit);
                    }
                }
                FrameType::Close => {
                    let close = Close::decode(&f.body)?;
                    if close.code == Some(1006) {
                        return Err(CodecError::BadClose("1006 may not be sent"));
                    }
                    if let Some(inbox) = t.sessions.remove(&f.session) {
                        let moved = t.moved.remove(&f.session);
                        // A session that moved on belongs to its new
                        // connection: the old instance cannot close it.
                        if !moved {
                            inbox.push(Event::Close(close), usize::MAX);
                        }
                    }
                }
                FrameType::Accept => {
                    let body: AcceptBody = f.json()?;
                    if let Some(inbox) = inbox {
                        let conn = Arc::clone(self);
                        inbox.push(Event::Accept { conn, body }, usize::MAX);
                    }
                }
                FrameType::Reject => {
                    let body: RejectBody = f.json()?;
                    if let Some(inbox) = t.sessions.remove(&f.session) {
                        inbox.push(Event::Reject(body), usize::MAX);
                    }
                }
                FrameType::Ping => self.queue_pong(true, f.body),
                FrameType::Pong => {}
                FrameType::Goaway => {
                    let _: tidegate_mux::codec::GoawayBody = f.json()?;
                    if !self.draining.swap(true, Ordering::AcqRel) {
                        goaway = self.start_goaway(&t.sessions);
                    }
                }
                FrameType::Subscribe | FrameType::Unsubscribe | FrameType::Publish => {
                    let Some(hub) = &self.fanout else {
                        // Extension `fanout` not negotiated: as any unknown type.
                        return Err(CodecError::UnknownType(f.kind as u8));
                    };
                    fanout_frame(hub, &f, inbox)?;
                }
                FrameType::Open => unreachable!("refused by from_app above"),
            }
        }
        self.metrics.sessions.set(t.sessions.len() as i64);
        Ok(goaway)
    }

    /// The first GOAWAY: every session learns its connection is going
    /// (each moves or waits for a resume, as `goaway_kind` decides), and a
    /// connection without sessions closes at once.
    fn start_goaway(&self, sessions: &HashMap<u32, Arc<Inbox>>) -> Goaway {
        let goaway = self.goaway_kind();
        tracing::info!(
            conn = self.id,
            sessions = sessions.len(),
            release = goaway == Goaway::Release,
            "GOAWAY from the application"
        );
        for inbox in sessions.values() {
            let lost = Event::Lost {
                conn_id: self.id,
                goaway: true,
            };
            inbox.push(lost, usize::MAX);
        }
        if sessions.is_empty() {
            self.send(Out::Close(1000, "goaway"));
        }
        goaway
    }

    /// GOAWAY: move the sessions if another connection of the pool can
    /// take them now; otherwise release this one (a single instance
    /// restarting: holding the connection open would only keep the old
    /// process alive and the new one waiting).
    pub(super) fn goaway_kind(&self) -> Goaway {
        match self.pool.upgrade() {
            Some(pool) if pool.any_up() => Goaway::Move,
            _ => Goaway::Release,
        }
    }
}

/// Extension `fanout` (docs/mux-protocol.md §10). A refused subscription
/// or publish (bad name, limit, not granted) is dropped and counted, not a
/// connection error; a PUBLISH body that does not parse is one. Frames for
/// an unknown session are ignored, as for MESSAGE.
fn fanout_frame(
    hub: &Arc<crate::fanout::Hub>,
    f: &codec::Frame,
    inbox: Option<&Arc<crate::mux::inbox::Inbox>>,
) -> Result<(), CodecError> {
    match f.kind {
        FrameType::Subscribe => {
            if let Some(inbox) = inbox {
                let _ = inbox.subscribe(hub, f.session, f.channel());
            }
        }
        FrameType::Unsubscribe => {
            if let Some(inbox) = inbox {
                inbox.unsubscribe(f.channel());
            }
        }
        _ => {
            let p = f.publish_body()?;
            let except = p.except.map(u64::from);
            let source = crate::fanout::Source::Mux;
            let _ = hub.publish(&p.channel, p.text, &p.payload, except, source);
        }
    }
    Ok(())
}

/// A MESSAGE payload as it goes into an inbox. An empty one shares
/// nothing. A message larger than the read buffer has an allocation of its
/// own size (up to `mux.max_frame_bytes`), and a frame that is a small
/// part of it would keep all of it alive while it waits: such a frame is
/// copied now, so what a queued payload holds is at most
/// `RATIO` × its length (a message that is one big frame, the usual
/// case, is never copied). Smaller messages share the 256 KiB read buffer;
/// their small frames are copied only if they have to wait
/// ([`crate::mux::detach`]).
fn own_allocation(body: Bytes, msg_len: usize) -> Bytes {
    const RATIO: usize = crate::mux::wire::READ_BUFFER / crate::mux::COPY_QUEUED_BELOW;
    if body.is_empty() {
        Bytes::new()
    } else if msg_len > crate::mux::wire::READ_BUFFER && body.len() < msg_len / RATIO {
        Bytes::copy_from_slice(&body)
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::own_allocation;
    use crate::mux::wire::READ_BUFFER;
    use bytes::Bytes;

    /// A small frame of a message larger than the read buffer is copied;
    /// the big frame of such a message, and any frame of a message that
    /// shares the read buffer, is not.
    #[test]
    fn small_parts_of_large_messages_are_copied() {
        let whole = Bytes::from(vec![3u8; 4 * READ_BUFFER]);
        let small = own_allocation(whole.slice(0..100), whole.len());
        assert_ne!(small.as_ptr(), whole.as_ptr());
        let big = own_allocation(whole.slice(0..READ_BUFFER), whole.len());
        assert_eq!(big.as_ptr(), whole.as_ptr());
        let shared = Bytes::from(vec![3u8; READ_BUFFER]);
        let in_buffer = own_allocation(shared.slice(0..100), 200);
        assert_eq!(in_buffer.as_ptr(), shared.as_ptr());
    }
}
