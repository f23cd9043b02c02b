//! Rooms: a named set of sessions and a broadcast that never waits.
//!
//! [`Room::broadcast_text`] hands the message to every member with
//! `try_send_*`, so a member whose connection is backed up or that is
//! being resumed costs its own delivery, never the rest of the room
//! (docs/design/mux-write-path.md). Closed members leave by themselves.
//! This is the API gateway fan-out (issue #17) will carry: `join` becomes
//! a SUBSCRIBE, `broadcast_*` one PUBLISH.

use std::collections::HashMap;

use bytes::Bytes;

use super::{SendError, SessionId, SessionSender};

/// How one broadcast went. The words are those of
/// docs/design/mux-write-path.md; unlike the Python SDK's backlog, the
/// Rust `try_send_*` does not hold a message, so `resuming` and `full`
/// members missed it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Queued on the member's connection.
    pub sent: usize,
    /// The member is between connections: it missed the message.
    pub resuming: usize,
    /// The member's connection queue is full: it missed the message.
    pub full: usize,
    /// The member is closed (and was removed).
    pub closed: usize,
}

/// A named set of sessions.
#[derive(Default)]
pub struct Room {
    /// The room's name (a fan-out channel later).
    pub name: String,
    /// Members by session.
    members: HashMap<SessionId, SessionSender>,
}

impl Room {
    pub fn new(name: impl Into<String>) -> Room {
        Room {
            name: name.into(),
            members: HashMap::new(),
        }
    }

    /// Add a session (again: replaces the old sender of that id).
    pub fn join(&mut self, sender: SessionSender) {
        self.members.insert(sender.id().clone(), sender);
    }

    pub fn leave(&mut self, id: &SessionId) {
        self.members.remove(id);
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
        self.broadcast(exclude, |m| m.try_send_text_bytes(payload.clone()))
    }

    /// Send binary data to every member but `exclude`; never waits.
    pub fn broadcast_binary(&mut self, data: Bytes, exclude: Option<&SessionId>) -> Delivery {
        self.broadcast(exclude, |m| m.try_send_binary(data.clone()))
    }

    fn broadcast(
        &mut self,
        exclude: Option<&SessionId>,
        mut send: impl FnMut(&SessionSender) -> Result<(), SendError>,
    ) -> Delivery {
        let mut d = Delivery::default();
        self.members.retain(|id, m| {
            if exclude == Some(id) {
                return true;
            }
            match send(m) {
                Ok(()) => d.sent += 1,
                Err(SendError::Resuming) => d.resuming += 1,
                Err(SendError::Full) => d.full += 1,
                Err(SendError::Closed | SendError::BadCode(_)) => {
                    d.closed += 1;
                    return false;
                }
            }
            true
        });
        d
    }
}
