//! Edge permessage-deflate in a mux session: the client speaks compressed
//! WebSocket with the gateway, the application gets and sends plain
//! MESSAGE frames (the mux protocol carries messages, so compression ends
//! at the edge).
//!
//! Client → application: the pieces of a read go through a backlog and are
//! handled in order; a compressed message is inflated one step (at most
//! [`CHUNK`] of output) at a time, each step's output a MESSAGE frame, and
//! only while less than [`INFLATE_AHEAD`] waits for the application — so a
//! small compressed message that inflates to megabytes is held a step at a
//! time, not whole, and the client is not read while the backlog lasts
//! (the backpressure). The inflated size is checked against the route's
//! message limit after every step (a zip bomb closes with 1009 after at
//! most the limit's bytes of output); inflated text is checked as UTF-8.
//!
//! Application → client: a message is compressed frame by frame as it
//! arrives (RSV1 on its first frame), unless it is a single frame shorter
//! than `min_size`. Without context takeover the zlib streams exist only
//! while a message is being inflated or compressed (`deflate::codec`).

use super::MuxSession;
use crate::deflate::codec::{Deflater, Inflater, TAIL};
use crate::deflate::edge::{EdgeConfig, Reservation, MIN_ZLIB_BITS};
use crate::deflate::params::{Params, WindowBits, MAX_WINDOW_BITS};
use crate::deflate::session::CHUNK;
use crate::frame::{encode_header, Opcode, Violation};
use crate::mux::client::{Piece, Utf8};
use bytes::Bytes;
use std::collections::VecDeque;
use tidegate_mux::codec::{Frame, KIND_CONTINUATION, KIND_TEXT};
use tokio::time::Instant;

/// Inflated client data held for the application (the session's `held`
/// queue) before the next step waits: bounds what one compressed message
/// can make the session hold, whatever it inflates to.
const INFLATE_AHEAD: usize = 64 * 1024;

/// The compression state of one edge-compressed mux session; boxed in the
/// session (one pointer for sessions without it).
pub struct Edge {
    inflater: Inflater,
    deflater: Deflater,
    /// Application messages shorter than this go uncompressed.
    min_size: u64,
    /// Pieces read from the client and not handled yet, in order.
    backlog: VecDeque<Piece>,
    /// Input of the front piece already inflated.
    at: usize,
    /// The front piece is begun (its message's state is set up).
    begun: bool,
    /// The front piece's data is used; the RFC 7692 tail is being inflated.
    tail: bool,
    /// The client message being inflated: its MESSAGE kind, whether a
    /// frame of it went out (the next ones are continuations), its
    /// inflated and wire sizes, and its UTF-8 state when text.
    kind: u8,
    started: bool,
    plain: u64,
    wire: u64,
    utf8: Utf8,
    /// The application's message in progress is being compressed.
    app_compressed: bool,
    /// This session's share of `limits.deflate_memory`, given back at the end.
    _reservation: Reservation,
}

impl Edge {
    pub fn new(params: &Params, config: &EdgeConfig, reservation: Reservation) -> Edge {
        let client_bits = match params.client_max_window_bits {
            Some(WindowBits::Bits(b)) => b.max(MIN_ZLIB_BITS),
            _ => MAX_WINDOW_BITS,
        };
        Edge {
            inflater: Inflater::new(client_bits, !params.client_no_context_takeover),
            deflater: Deflater::new(
                config.level,
                params.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS),
                !params.server_no_context_takeover,
            ),
            min_size: config.min_size,
            backlog: VecDeque::new(),
            at: 0,
            begun: false,
            tail: false,
            kind: 0,
            started: false,
            plain: 0,
            wire: 0,
            utf8: Utf8::default(),
            app_compressed: false,
            _reservation: reservation,
        }
    }

    /// Pieces wait here until handled: the client is not read meanwhile.
    pub fn backlogged(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// One inflate step of the front piece (a compressed data piece):
    /// `Ok(Some(frame))` when it produced a MESSAGE to send; the piece is
    /// popped once all its input (and, at the message's end, the tail) is
    /// used.
    fn step(&mut self, max_message: u64) -> Result<Option<(u8, bool, Bytes)>, Violation> {
        let Some(Piece::Data {
            kind, fin, payload, ..
        }) = self.backlog.front()
        else {
            return Ok(None);
        };
        let (kind, fin) = (*kind, *fin);
        if !self.begun {
            self.begun = true;
            if kind != KIND_CONTINUATION {
                self.kind = kind;
                self.started = false;
                (self.plain, self.wire) = (0, 0);
                self.utf8 = Utf8::default();
            }
            self.wire += payload.len() as u64;
        }
        let input: &[u8] = if self.tail { &TAIL } else { payload };
        let mut out = Vec::with_capacity(CHUNK);
        self.at += self
            .inflater
            .step(&input[self.at..], &mut out)
            .map_err(|_| Violation::BadDeflateData)?;
        let full = out.len() == out.capacity();
        self.plain += out.len() as u64;
        if self.plain > max_message {
            return Err(Violation::TooBig);
        }
        if self.kind == KIND_TEXT && !self.utf8.check(&out) {
            return Err(Violation::BadUtf8);
        }
        let used = self.at == input.len() && !full;
        let message_done = used && fin && self.tail;
        if used && fin && !self.tail {
            // The message's data is in: inflate the tail next.
            self.tail = true;
            self.at = 0;
        } else if used {
            self.backlog.pop_front();
            (self.at, self.begun, self.tail) = (0, false, false);
        }
        if message_done {
            if self.kind == KIND_TEXT && self.utf8.incomplete() {
                return Err(Violation::BadUtf8);
            }
            self.inflater.end_message();
        } else if out.is_empty() {
            return Ok(None);
        }
        let kind = if self.started {
            KIND_CONTINUATION
        } else {
            self.kind
        };
        self.started = true;
        Ok(Some((kind, message_done, Bytes::from(out))))
    }
}

impl MuxSession {
    /// Edge compression negotiated with this client: its reader accepts
    /// RSV1 and its messages are inflated and compressed here.
    pub fn compress(mut self, edge: Option<Box<Edge>>) -> MuxSession {
        self.reader.allow_compressed(edge.is_some());
        if edge.is_some() {
            self.queues().edge = edge;
        }
        self
    }

    /// A piece read from the client: through the backlog when the session
    /// compresses (a compressed message ahead may still be inflating).
    pub(super) fn on_client_piece(&mut self, piece: Piece, now: Instant) {
        match self.q.as_mut().and_then(|q| q.edge.as_deref_mut()) {
            Some(edge) => edge.backlog.push_back(piece),
            None => self.on_piece(piece, now),
        }
    }

    /// Handle backlogged pieces while the application's queue has room;
    /// true if something moved. The state is taken out of the session
    /// meanwhile, so the session's own methods can run in between.
    pub(super) fn inflate_backlog(&mut self, now: Instant) -> bool {
        let Some(mut edge) = self.q.as_mut().and_then(|q| q.edge.take()) else {
            return false;
        };
        let progress = self.inflate_with(&mut edge, now);
        self.queues().edge = Some(edge);
        progress
    }

    fn inflate_with(&mut self, edge: &mut Edge, now: Instant) -> bool {
        let mut progress = false;
        loop {
            let compressed = match edge.backlog.front() {
                None => return progress,
                Some(Piece::Data { compressed, .. }) => *compressed,
                Some(_) => false,
            };
            if !compressed {
                let piece = edge.backlog.pop_front().expect("front checked above");
                self.on_piece(piece, now);
                progress = true;
                continue;
            }
            if self.client_done || self.close_sent || self.app_done {
                // Closing: data is discarded, as on_piece does.
                edge.backlog.pop_front();
                (edge.at, edge.begun, edge.tail) = (0, false, false);
                continue;
            }
            if self.q.as_ref().map_or(0, |q| q.held_bytes) >= INFLATE_AHEAD {
                return progress;
            }
            progress = true;
            match edge.step(self.route.limits.max_message) {
                Ok(None) => {}
                Ok(Some((kind, fin, payload))) => {
                    let m = &self.route.metrics;
                    m.bytes_c2u.inc_by(payload.len() as u64);
                    if let Some(a) = &mut self.access {
                        a.from_client(0, payload.len() as u64);
                    }
                    if fin {
                        m.deflate_edge_bytes[0].inc_by(edge.wire);
                        m.deflate_edge_bytes[1].inc_by(edge.plain);
                    }
                    self.queue_app(Frame::message(self.id, kind, fin, payload));
                }
                Err(v) => {
                    edge.backlog.clear();
                    self.violation(v, now);
                }
            }
        }
    }

    /// An application MESSAGE frame for the client: compressed (RSV1 on
    /// the message's first frame) unless the session does not compress or
    /// the message is one frame under `min_size`.
    pub(super) fn queue_app_message(&mut self, fin: bool, opcode: Opcode, payload: Bytes) {
        let Some(edge) = self.q.as_mut().and_then(|q| q.edge.as_deref_mut()) else {
            return self.queue_client(fin, opcode, payload);
        };
        let first = opcode != Opcode::Continuation;
        if first {
            edge.app_compressed = !(fin && (payload.len() as u64) < edge.min_size);
        }
        if !edge.app_compressed {
            return self.queue_client(fin, opcode, payload);
        }
        let plain = payload.len() as u64;
        let wire = Bytes::from(edge.deflater.piece(&payload, fin));
        let m = &self.route.metrics;
        m.deflate_edge_bytes[2].inc_by(plain);
        m.deflate_edge_bytes[3].inc_by(wire.len() as u64);
        let mut header = encode_header(fin, opcode, wire.len(), None);
        if first {
            header = header.with_rsv1();
        }
        self.queue_client_frame(header, wire);
    }
}
