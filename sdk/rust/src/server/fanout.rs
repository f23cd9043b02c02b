//! Extension `fanout` (docs/mux-protocol.md §10) on the application side:
//! which connections negotiated it, and publishing.
//!
//! A channel lives in one gateway process: its subscribers are the
//! sessions of that gateway instance. So [`Publisher::publish`] sends one
//! PUBLISH per gateway instance this process has a `fanout` connection
//! from, always on the same connection of that instance while it lives
//! (the oldest), because the gateway keeps one connection's order per
//! channel. Sessions whose gateway did not negotiate the extension get
//! per-session sends instead, so a publish reaches every subscriber
//! either way.
//!
//! The registry of connections is process-wide, like the session table:
//! a session may be resumed on a connection of another `MuxServer` of the
//! process.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use super::outbox::{Outbox, PushError};
use super::room::Delivery;
use super::session::{now_or_full, SendError, SessionId};
use super::table;
use crate::codec::{valid_channel, Frame, KIND_BINARY, KIND_TEXT};

/// One whole message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Text, already UTF-8 (made by [`Message::text`]).
    Text(Bytes),
    /// Binary data.
    Binary(Bytes),
}

impl Message {
    pub fn text(text: impl Into<String>) -> Message {
        Message::Text(Bytes::from(text.into()))
    }

    pub fn binary(data: impl Into<Bytes>) -> Message {
        Message::Binary(data.into())
    }

    /// The MESSAGE kind and the payload.
    pub(crate) fn parts(&self) -> (u8, &Bytes) {
        match self {
            Message::Text(b) => (KIND_TEXT, b),
            Message::Binary(b) => (KIND_BINARY, b),
        }
    }
}

/// Why nothing was published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("invalid channel name (1-128 of A-Z a-z 0-9 . _ - : @ /)")]
    BadChannel,
}

/// Open connections, oldest first: (connection number, its outbox).
type Conns = Vec<(u64, Arc<Outbox>)>;

fn conns() -> MutexGuard<'static, Conns> {
    static CONNS: OnceLock<Mutex<Conns>> = OnceLock::new();
    CONNS
        .get_or_init(Mutex::default)
        .lock()
        // Single pushes and removes: a poisoned lock holds a whole list.
        .unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn register(conn: u64, outbox: Arc<Outbox>) {
    conns().push((conn, outbox));
}

pub(crate) fn unregister(conn: u64) {
    conns().retain(|(c, _)| *c != conn);
}

/// The connection a PUBLISH for `instance` takes: the oldest open one
/// that negotiated `fanout`.
pub(crate) fn outbox_for(instance: &str) -> Option<Arc<Outbox>> {
    conns()
        .iter()
        .find(|(_, o)| o.fanout && &*o.instance == instance && !o.is_ended())
        .map(|(_, o)| o.clone())
}

/// Every gateway instance with a `fanout` connection, and that connection.
fn publish_targets() -> Vec<(Arc<str>, Arc<Outbox>)> {
    let mut out: Vec<(Arc<str>, Arc<Outbox>)> = Vec::new();
    for (_, o) in conns().iter() {
        if o.fanout && !o.is_ended() && !out.iter().any(|(i, _)| *i == o.instance) {
            out.push((o.instance.clone(), o.clone()));
        }
    }
    out
}

/// Queue one PUBLISH on `outbox` without waiting. A publish is one frame
/// for a whole audience: over the connection's bound it is refused
/// (false), not queued, and the caller falls back or counts it full.
pub(crate) fn push_publish(outbox: &Outbox, frame: Frame) -> bool {
    static NEVER_FINISHED: AtomicBool = AtomicBool::new(false);
    matches!(
        now_or_full(async {
            outbox
                .push_data(vec![frame], &NEVER_FINISHED, false)
                .await
                .map_err(|e| match e {
                    PushError::Full => SendError::Full,
                    PushError::Ended(_) | PushError::Finished => SendError::Closed,
                })
        }),
        Ok(())
    )
}

/// Publishes to channels; cheap to clone, usable from any task
/// ([`super::MuxServer::publisher`]).
#[derive(Debug, Clone, Default)]
pub struct Publisher {}

impl Publisher {
    /// Send `msg` to every session subscribed to `channel` but `except`;
    /// never waits. One PUBLISH per gateway instance with a `fanout`
    /// connection (`Delivery::published`; the gateway delivers and its
    /// deliveries are not counted here); subscribers whose gateway has
    /// none get per-session sends, counted per result.
    pub fn publish(
        &self,
        channel: &str,
        msg: &Message,
        except: Option<&SessionId>,
    ) -> Result<Delivery, PublishError> {
        if !valid_channel(channel.as_bytes()) {
            return Err(PublishError::BadChannel);
        }
        let (kind, payload) = msg.parts();
        let mut d = Delivery::default();
        let mut covered: Vec<Arc<str>> = Vec::new();
        for (instance, outbox) in publish_targets() {
            let ex = except.filter(|e| e.instance == instance).map(|e| e.id);
            if push_publish(
                &outbox,
                Frame::publish(channel, kind == KIND_TEXT, payload, ex),
            ) {
                d.published += 1;
                covered.push(instance);
            }
        }
        // Slow path, only while some connection lacks fan-out: find the
        // local subscribers it carries.
        let all_covered = conns().iter().all(|(_, o)| covered.contains(&o.instance));
        if all_covered && !covered.is_empty() {
            return Ok(d);
        }
        for s in table::all() {
            if covered.contains(&s.id.instance) || Some(&s.id) == except || !s.has_channel(channel)
            {
                continue;
            }
            d.count(now_or_full(s.send(kind, payload.clone(), false)));
        }
        Ok(d)
    }
}
