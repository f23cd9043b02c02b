//! Frames the gateway writes itself: the relay's pings and Closes, the mux
//! leg's frames to clients and to the application. A header is built on
//! the stack; payloads are written beside it, never copied into a frame
//! buffer unless they must be masked.

use super::{Opcode, MAX_HEADER};

/// An encoded frame header: at most [`MAX_HEADER`] bytes, kept inline so a
/// queued frame can carry its header without an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderBytes {
    bytes: [u8; MAX_HEADER],
    len: u8,
}

impl HeaderBytes {
    /// No header: a queued tail of a frame already partly written.
    pub const EMPTY: HeaderBytes = HeaderBytes {
        bytes: [0; MAX_HEADER],
        len: 0,
    };

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The same header with RSV1 set: the first frame of a message
    /// compressed with permessage-deflate (RFC 7692 §6).
    pub fn with_rsv1(mut self) -> HeaderBytes {
        self.bytes[0] |= super::RSV1;
        self
    }
}

/// Header of a frame of `len` payload bytes, in the shortest length form.
/// `mask`: the key when the gateway is the client on this leg (the payload
/// must then be masked with it; see [`write_frame`]).
pub fn encode_header(fin: bool, opcode: Opcode, len: usize, mask: Option<[u8; 4]>) -> HeaderBytes {
    let mut b = [0u8; MAX_HEADER];
    b[0] = if fin { 0x80 } else { 0 } | opcode as u8;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut at = 2;
    if len < 126 {
        b[1] = mask_bit | len as u8;
    } else if let Ok(short) = u16::try_from(len) {
        b[1] = mask_bit | 126;
        b[2..4].copy_from_slice(&short.to_be_bytes());
        at = 4;
    } else {
        b[1] = mask_bit | 127;
        b[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        at = 10;
    }
    if let Some(key) = mask {
        b[at..at + 4].copy_from_slice(&key);
        at += 4;
    }
    HeaderBytes {
        bytes: b,
        len: at as u8,
    }
}

/// Append a whole frame whose payload is `parts` joined (e.g. a Close's
/// code and reason), masked with `mask` if given.
pub fn write_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: Opcode,
    parts: &[&[u8]],
    mask: Option<[u8; 4]>,
) {
    let len = parts.iter().map(|p| p.len()).sum();
    out.reserve(MAX_HEADER + len);
    out.extend_from_slice(encode_header(fin, opcode, len, mask).as_slice());
    let key = mask.unwrap_or_default();
    let payload = parts.iter().flat_map(|p| p.iter());
    out.extend(payload.enumerate().map(|(i, b)| b ^ key[i & 3]));
}
