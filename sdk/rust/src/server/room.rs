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
//!
//! A broadcast costs nothing per member when every member is carried and
//! nobody finished since the last one: the room keeps its counts per
//! gateway instance as members join and leave, and looks for closed
//! members (one pass) only when some session of the process finished
//! since it last looked (issue #17: a publish costs one PUBLISH frame,
//! whatever the audience).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::fanout::{outbox_for, push_publish};
use super::session::finished_epoch;
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
    /// Carried members per gateway instance (usually one entry).
    carried: Vec<(Arc<str>, usize)>,
    /// Members a PUBLISH does not reach.
    direct: usize,
    /// [`finished_epoch`] when the room last looked for closed members.
    seen_epoch: u64,
}

impl Room {
    pub fn new(name: impl Into<String>) -> Room {
        Room {
            name: name.into(),
            ..Room::default()
        }
    }

    /// Add a session (again: replaces the old sender of that id); with
    /// `fanout`, one SUBSCRIBE.
    pub fn join(&mut self, sender: SessionSender) {
        let carried =
            valid_channel(self.name.as_bytes()) && sender.subscribe(&self.name) == Ok(true);
        if sender.is_closed() {
            // Finished before it joined: the next broadcast looks.
            self.seen_epoch = u64::MAX;
        }
        let id = sender.id().clone();
        self.count(&id, carried, true);
        if let Some(old) = self.members.insert(id.clone(), Member { sender, carried }) {
            self.count(&id, old.carried, false);
        }
    }

    /// Keep the per-instance counts as a member joins (`add`) or leaves.
    fn count(&mut self, id: &SessionId, carried: bool, add: bool) {
        if !carried {
            self.direct = if add {
                self.direct + 1
            } else {
                self.direct - 1
            };
            return;
        }
        match self
            .carried
            .iter()
            .position(|(i, _)| Arc::ptr_eq(i, &id.instance) || *i == id.instance)
        {
            Some(k) if add => self.carried[k].1 += 1,
            Some(k) => {
                self.carried[k].1 -= 1;
                if self.carried[k].1 == 0 {
                    self.carried.swap_remove(k);
                }
            }
            None if add => self.carried.push((id.instance.clone(), 1)),
            None => {}
        }
    }

    /// Drop members that finished, counting them; then recount.
    fn prune(&mut self, d: &mut Delivery) {
        self.members.retain(|_, m| {
            let open = !m.sender.is_closed();
            d.closed += usize::from(!open);
            open
        });
        self.carried.clear();
        self.direct = 0;
        let members = std::mem::take(&mut self.members);
        for (id, m) in &members {
            self.count(id, m.carried, true);
        }
        self.members = members;
    }

    /// Remove a session; with `fanout`, one UNSUBSCRIBE.
    pub fn leave(&mut self, id: &SessionId) {
        if let Some(m) = self.members.remove(id) {
            self.count(id, m.carried, false);
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
        // Pass 1, only if some session finished since the last look: the
        // closed members leave.
        let epoch = finished_epoch();
        if epoch != self.seen_epoch {
            self.prune(&mut d);
            self.seen_epoch = epoch;
        }
        // The excluded member is not counted in its group.
        let excluded = exclude.and_then(|e| self.members.get(e).map(|m| (e, m.carried)));
        let direct = self.direct - usize::from(excluded.is_some_and(|(_, c)| !c));
        let groups: Vec<(Arc<str>, usize)> = (self.carried.iter())
            .map(|(instance, n)| {
                let out = excluded.is_some_and(|(e, c)| c && e.instance == *instance);
                (instance.clone(), n - usize::from(out))
            })
            .collect();
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
