//! What waits in a mux session, either way: frames for the client
//! (each with its inline header and a shared payload), client frames for
//! the application, and the session's boxed `Queues` that hold them with
//! their byte counts — made at the first frame, so an idle session that
//! never carried data has none.

use super::Edge;
use crate::frame::{HeaderBytes, Opcode};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use tidegate_mux::codec::Frame;

/// A frame on its way to the client.
pub(super) struct ToClient {
    pub(super) header: HeaderBytes,
    pub(super) payload: Bytes,
}

impl ToClient {
    /// Charged against `mux.session_queue_bytes`: the payload plus the
    /// per-frame cost, so a flood of empty frames fills the queue too.
    pub(super) fn cost(&self) -> usize {
        self.payload.len() + crate::mux::QUEUED_FRAME_COST
    }

    pub(super) fn is_pong(&self) -> bool {
        self.header
            .as_slice()
            .first()
            .is_some_and(|b| b & 0x0F == u8::from(Opcode::Pong))
    }
}

/// A frame on its way to the application, waiting for budget or for a
/// connection.
pub(super) struct ToApp {
    pub(super) frame: Frame,
}

impl ToApp {
    /// Charged against the connection's budget and the resume buffer:
    /// body plus the per-frame cost, so empty messages are not free.
    pub(super) fn cost(&self) -> usize {
        self.frame.body.len() + crate::mux::QUEUED_FRAME_COST
    }
}

/// Frames in flight through a session.
#[derive(Default)]
pub(super) struct Queues {
    /// Client frames not yet queued on a connection.
    pub(super) held: VecDeque<ToApp>,
    /// Cost of `held` (see `ToApp::cost`).
    pub(super) held_bytes: usize,
    /// `held` could not be handed on (no budget, or no connection while
    /// resuming): small payloads held from then on are copied, as the
    /// ones already held were when it was set ([`crate::mux::detach`]).
    pub(super) held_stalled: bool,
    /// Frames for the client; `written` bytes of the front one are out.
    pub(super) out: VecDeque<ToClient>,
    /// Cost of `out` and `pong` (see `ToClient::cost`).
    pub(super) out_bytes: usize,
    pub(super) written: usize,
    /// The answer to the client's latest ping, not yet in `out`. Only the
    /// latest unanswered ping is answered (RFC 6455 §5.5.3), so a client
    /// that pings without reading holds one pong here, not one per ping.
    pub(super) pong: Option<Bytes>,
    /// A pong is in `out` and not yet written.
    pub(super) pong_in_out: bool,
    /// Edge permessage-deflate state, when negotiated (kept here, in the
    /// box such a session has anyway, so the session future stays small).
    pub(super) edge: Option<Box<Edge>>,
    /// Fan-out: where published frames for this client wait (set by
    /// `Event::Subscribed`; here, not in the session, so the session
    /// future of a client that never subscribes does not grow).
    pub(super) fanout: Option<Arc<crate::fanout::Subscriber>>,
    /// The client's socket for direct replies and publishes
    /// ([`crate::io::direct`]), made at the first data (or subscription),
    /// so an idle session that never carried data holds no duplicate
    /// descriptor; `direct_tried` says it was attempted (TLS, another
    /// runtime flavour or no spare descriptor leave it `None`).
    pub(super) direct: Option<Arc<crate::io::direct::Direct>>,
    pub(super) direct_tried: bool,
    /// The client stopped taking bytes with frames still in `out`: small
    /// payloads queued from then on are copied ([`crate::mux::detach`]),
    /// the ones already waiting were copied when it was set. Cleared when
    /// `out` empties, so a client that keeps up never pays for a copy.
    pub(super) out_stalled: bool,
}
