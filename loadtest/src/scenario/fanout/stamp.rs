//! The stamp at the start of every `fanout` payload, and the subscriber's
//! reader that finds it.
//!
//! Layout (big-endian): bytes 0..8 the publish's sequence number, 8..16
//! its send time in nanoseconds since the UNIX epoch; the rest is
//! padding. The SDK's `fanout` example writes it (its own copy of these 16
//! bytes of layout: the two crates do not depend on each other).

use std::io;

use crate::frame::{self, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG};
use crate::reader::ReadError;

/// Bytes of the stamp.
pub const STAMP_LEN: usize = 16;

/// Read buffer per subscriber: fan-out messages are small (128 B in the
/// benchmark), and 5,000 subscribers × 64 KiB would be the generator's
/// own memory problem. A frame larger than this is an error.
pub const READ_BUF: usize = 8 * 1024;

/// `(sequence, sent_ns)` from the start of a payload.
pub fn read(payload: &[u8]) -> Option<(u64, u64)> {
    let s = payload.get(..STAMP_LEN)?;
    let seq = u64::from_be_bytes(s[..8].try_into().expect("8 bytes"));
    let sent = u64::from_be_bytes(s[8..].try_into().expect("8 bytes"));
    Some((seq, sent))
}

/// Follows one subscriber's frame stream and hands each message's stamp on.
pub struct Deliveries {
    /// Unparsed bytes are `buf[start..end]`.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The stamp of a fragmented message, delivered at its last fragment.
    pending: Option<(u64, u64)>,
    /// Masked pongs owed to the server.
    pub pongs: Vec<u8>,
    /// Our masking key for pongs.
    mask: [u8; 4],
}

impl Deliveries {
    /// A reader primed with bytes that arrived with the 101.
    pub fn new(leftover: &[u8], mask: [u8; 4]) -> Deliveries {
        let mut buf = vec![0u8; READ_BUF.max(leftover.len())].into_boxed_slice();
        buf[..leftover.len()].copy_from_slice(leftover);
        Deliveries {
            buf,
            start: 0,
            end: leftover.len(),
            pending: None,
            pongs: Vec::new(),
            mask,
        }
    }

    /// Where the next read goes (unparsed bytes moved to the front first).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// `n` bytes were read into `spare()`: every whole message's stamp
    /// goes to `on(seq, sent_ns)`. Returns the close code if the server
    /// closed.
    pub fn parse(
        &mut self,
        n: usize,
        mut on: impl FnMut(u64, u64),
    ) -> Result<Option<u16>, ReadError> {
        self.end += n;
        while let Some(h) = frame::parse_header(&self.buf[self.start..self.end])? {
            if h.mask.is_some() {
                return Err(ReadError::Masked);
            }
            let total = h.header_len as u64 + h.len;
            if total > self.buf.len() as u64 {
                return Err(ReadError::Io(io::Error::other(format!(
                    "a {}-byte frame is larger than the fanout reader's {READ_BUF} bytes",
                    h.len
                ))));
            }
            let total = total as usize;
            if self.end - self.start < total {
                break;
            }
            let body = &self.buf[self.start + h.header_len..self.start + total];
            match h.opcode {
                OP_PING => frame::push_client_frame(&mut self.pongs, OP_PONG, body, self.mask),
                OP_CLOSE => {
                    let code = body
                        .get(..2)
                        .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                    return Ok(Some(code));
                }
                OP_PONG => {}
                op => {
                    let stamp = if op == OP_CONTINUATION {
                        self.pending.take()
                    } else {
                        read(body)
                    };
                    match (h.fin, stamp) {
                        (true, Some((seq, sent))) => on(seq, sent),
                        (false, s) => self.pending = s,
                        // A message too short for a stamp: not ours.
                        (true, None) => {}
                    }
                }
            }
            self.start += total;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{write_header, OP_BINARY, OP_TEXT};

    fn server_frame(out: &mut Vec<u8>, fin: bool, op: u8, payload: &[u8]) {
        write_header(out, fin, op, None, payload.len() as u64);
        out.extend_from_slice(payload);
    }

    fn stamped(seq: u64, sent: u64) -> Vec<u8> {
        let mut p = seq.to_be_bytes().to_vec();
        p.extend_from_slice(&sent.to_be_bytes());
        p.resize(128, b'x');
        p
    }

    #[test]
    fn stamps_across_reads_fragments_and_pings() {
        let mut wire = Vec::new();
        server_frame(&mut wire, true, OP_BINARY, &stamped(1, 100));
        server_frame(&mut wire, true, OP_PING, b"p");
        server_frame(&mut wire, false, OP_TEXT, &stamped(2, 200)[..20]);
        server_frame(&mut wire, true, OP_CONTINUATION, b"rest");
        server_frame(&mut wire, true, OP_BINARY, b"short");
        server_frame(&mut wire, true, OP_CLOSE, &1001u16.to_be_bytes());
        let mut d = Deliveries::new(&[], [0; 4]);
        let mut got = Vec::new();
        let mut close = None;
        // Seven bytes at a time: every frame is split somewhere.
        for chunk in wire.chunks(7) {
            let spare = d.spare();
            spare[..chunk.len()].copy_from_slice(chunk);
            close = d.parse(chunk.len(), |s, t| got.push((s, t))).unwrap();
            if close.is_some() {
                break;
            }
        }
        assert_eq!(got, [(1, 100), (2, 200)]);
        assert_eq!(close, Some(1001));
        assert_eq!(d.pongs.len(), 2 + 4 + 1, "one masked pong");
    }

    #[test]
    fn frames_larger_than_the_buffer_are_an_error() {
        let mut wire = Vec::new();
        write_header(&mut wire, true, OP_BINARY, None, READ_BUF as u64);
        let mut d = Deliveries::new(&wire, [0; 4]);
        assert!(d.parse(0, |_, _| {}).is_err());
    }
}
