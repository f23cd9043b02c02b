//! Rooms: a named set of sessions and a broadcast that never waits.
//!
//! With extension `fanout` negotiated (docs/mux-protocol.md §10) a room is
//! a gateway channel named like the room: [`Room::join`] subscribes the
//! session (one SUBSCRIBE), [`Room::leave`] unsubscribes it, and a
//! broadcast is one PUBLISH per gateway instance with `exclude` as its
//! "except" session — the gateway encodes the message once and delivers
//! it to every subscriber, including sessions another instance of the
//! application subscribed to the same name.
//!
//! Without it (an older gateway, `Config::fanout = false`, or a name that
//! is not a valid channel) a broadcast hands the message to every member
//! with `try_send_*`, so a member whose connection is backed up or that
//! is being resumed costs its own delivery, never the rest of the room
//! (docs/design/mux-write-path.md). The code using a room is the same
//! either way. Closed members leave by themselves.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::fanout::{outbox_for, push_publish};
use super::{SendError, SessionId, SessionSender};
use crate::codec::{valid_channel, Frame, KIND_BINARY, KIND_TEXT};

/// How one broadcast (or publish) went. The words are those of
/// docs/design/mux-write-path.md; unlike the Python SDK's backlog, the
/// Rust `try_send_*` does not hold a message, so `resuming` and `full`
/// members missed it. Members reached through a PUBLISH count as `sent`:
/// from there the gateway owns the delivery.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Queued on the member's connection (or covered by a PUBLISH).
    pub sent: usize,
    /// The member is between connections: it missed the message.
    pub resuming: usize,
    /// The member's connection queue is full: it missed the message.
    pub full: usize,
    /// The member is closed (and was removed).
    pub closed: usize,
    /// PUBLISH frames queued (one per gateway instance reached).
    pub published: usize,
}

impl Delivery {
    /// Count one per-session send.
    pub(crate) fn count(&mut self, r: Result<(), SendError>) {
        match r {
            Ok(()) => self.sent += 1,
            Err(SendError::Resuming) => self.resuming += 1,
            Err(SendError::Full) => self.full += 1,
            Err(SendError::Closed | SendError::BadCode(_) | SendError::BadChannel) => {
                self.closed += 1
            }
        }
    }
}

/// A member and how a broadcast reaches it.
struct Member {
    sender: SessionSender,
    /// Subscribed at a gateway that negotiated `fanout`: a PUBLISH
    /// reaches it.
    carried: bool,
}

/// A named set of sessions.
#[derive(Default)]
pub struct Room {
    /// The room's name (its gateway channel with `fanout`).
    pub name: String,
    /// Members by session.
    members: HashMap<SessionId, Member>,
}

impl Room {
    pub fn new(name: impl Into<String>) -> Room {
        Room {
            name: name.into(),
            members: HashMap::new(),
        }
    }

    /// Add a session (again: replaces the old sender of that id); with
    /// `fanout`, one SUBSCRIBE.
    pub fn join(&mut self, sender: SessionSender) {
        let carried =
            valid_channel(self.name.as_bytes()) && sender.subscribe(&self.name) == Ok(true);
        self.members
            .insert(sender.id().clone(), Member { sender, carried });
    }

    /// Remove a session; with `fanout`, one UNSUBSCRIBE.
    pub fn leave(&mut self, id: &SessionId) {
        if let Some(m) = self.members.remove(id) {
            if m.carried {
                let _ = m.sender.unsubscribe(&self.name);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, id: &SessionId) -> bool {
        self.members.contains_key(id)
    }

    /// Send text to every member but `exclude`; never waits.
    pub fn broadcast_text(&mut self, text: &str, exclude: Option<&SessionId>) -> Delivery {
        let payload = Bytes::copy_from_slice(text.as_bytes());
        self.broadcast(KIND_TEXT, payload, exclude)
    }

    /// Send binary data to every member but `exclude`; never waits.
    pub fn broadcast_binary(&mut self, data: Bytes, exclude: Option<&SessionId>) -> Delivery {
        self.broadcast(KIND_BINARY, data, exclude)
    }

    fn broadcast(&mut self, kind: u8, payload: Bytes, exclude: Option<&SessionId>) -> Delivery {
        let mut d = Delivery::default();
        // Pass 1: closed members leave; carried ones are counted per
        // gateway instance (usually one: a linear scan, pointer compare).
        let mut groups: Vec<(Arc<str>, usize)> = Vec::new();
        let mut direct = 0usize;
        self.members.retain(|id, m| {
            if m.sender.is_closed() {
                d.closed += 1;
                return false;
            }
            let others = usize::from(exclude != Some(id));
            if !m.carried {
                direct += others;
                return true;
            }
            match groups
                .iter_mut()
                .find(|(i, _)| Arc::ptr_eq(i, &id.instance) || *i == id.instance)
            {
                Some((_, n)) => *n += others,
                None => groups.push((id.instance.clone(), others)),
            }
            true
        });
        // Pass 2: one PUBLISH per instance.
        let text = kind == KIND_TEXT;
        let mut failed: Vec<Arc<str>> = Vec::new();
        for (instance, n) in groups {
            let ex = exclude.filter(|e| e.instance == instance).map(|e| e.id);
            match outbox_for(&instance) {
                Some(o) if push_publish(&o, Frame::publish(&self.name, text, &payload, ex)) => {
                    d.published += 1;
                    d.sent += n;
                }
                // No connection to that gateway can take it now: its
                // members get per-session sends (and mostly miss it).
                _ => failed.push(instance),
            }
        }
        // Pass 3: per-session sends, only if someone needs them.
        if direct > 0 || !failed.is_empty() {
            for (id, m) in &self.members {
                if exclude == Some(id) || (m.carried && !failed.contains(&id.instance)) {
                    continue;
                }
                let r = if text {
                    m.sender.try_send_text_bytes(payload.clone())
                } else {
                    m.sender.try_send_binary(payload.clone())
                };
                d.count(r);
            }
        }
        d
    }
}
