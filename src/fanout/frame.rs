//! A published message as every subscriber's client receives it: one
//! complete server-to-client WebSocket frame (header + payload, unmasked),
//! encoded once into shared memory. A delivery clones the handle — one
//! reference-count increment, no copy and no allocation — and the client
//! write sends the bytes as they are.

use crate::frame::{encode_header, HeaderBytes, Opcode};
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;
use tokio::time::Instant;

/// A published frame, shared by every subscriber queue that holds it.
#[derive(Clone)]
pub struct SharedFrame(Arc<Encoded>);

struct Encoded {
    /// The header again, inline: a mux session queues header and payload
    /// as two slices of one vectored write.
    header: HeaderBytes,
    /// Header and payload, as they go on the wire.
    wire: Bytes,
    /// When the publish was accepted (delivery latency).
    published: Instant,
}

impl SharedFrame {
    /// Encode one whole message (FIN set): the payload is copied once, into
    /// the frame, whatever the number of subscribers — and so a queued
    /// frame never keeps the buffer the publish was read into alive.
    pub fn encode(text: bool, payload: &[u8]) -> SharedFrame {
        let opcode = if text { Opcode::Text } else { Opcode::Binary };
        let header = encode_header(true, opcode, payload.len(), None);
        let mut buf = BytesMut::with_capacity(header.as_slice().len() + payload.len());
        buf.put_slice(header.as_slice());
        buf.put_slice(payload);
        let wire = buf.freeze();
        // The first clone of a `Bytes` made from a vector moves it to a
        // shared representation (one allocation); doing it here keeps that
        // out of the per-delivery path, where clones only count references.
        drop(wire.clone());
        SharedFrame(Arc::new(Encoded {
            header,
            wire,
            published: Instant::now(),
        }))
    }

    /// The whole frame.
    pub fn wire(&self) -> &Bytes {
        &self.0.wire
    }

    /// The frame's header alone.
    pub fn header(&self) -> HeaderBytes {
        self.0.header
    }

    /// The payload alone (shares the frame's memory).
    pub fn payload(&self) -> Bytes {
        self.0.wire.slice(self.0.header.as_slice().len()..)
    }

    /// What the frame is charged in a subscriber queue: its bytes plus the
    /// per-entry cost, so a flood of empty messages fills the bound too.
    pub fn cost(&self) -> usize {
        self.0.wire.len() + crate::mux::QUEUED_FRAME_COST
    }

    pub fn published(&self) -> Instant {
        self.0.published
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_one_whole_server_frame() {
        let f = SharedFrame::encode(true, b"hello");
        assert_eq!(&f.wire()[..], b"\x81\x05hello");
        assert_eq!(&f.payload()[..], b"hello");
        assert_eq!(f.header().as_slice(), b"\x81\x05");
        let big = SharedFrame::encode(false, &[7u8; 300]);
        assert_eq!(&big.wire()[..4], &[0x82, 126, 1, 44]);
        assert_eq!(big.payload().len(), 300);
        // Clones share the bytes.
        let c = big.clone();
        assert_eq!(c.wire().as_ptr(), big.wire().as_ptr());
    }
}
