//! RFC 6455 frame headers, masking and pre-built client frames.
//!
//! The load generator never looks inside payloads: it sends the same masked
//! frame over and over, so the bytes are built once per run and written
//! straight from a shared buffer, and replies are recognised by their header
//! alone. The echo server uses the same header code to unmask and echo.

use thiserror::Error;

/// Continuation frame of a fragmented message.
pub const OP_CONTINUATION: u8 = 0x0;
/// UTF-8 text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame (carries an optional code and reason).
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame; the peer must answer with a pong carrying the same payload.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Longest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;
/// Longest frame header: 2 bytes + 8 bytes of length + 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame header that does not follow RFC 6455.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("control frame is fragmented or longer than 125 bytes")]
    BadControlFrame,
    #[error("64-bit payload length has its most significant bit set")]
    LengthOverflow,
}

impl FrameError {
    /// The close code to send back when a peer sends such a frame.
    pub fn close_code(&self) -> u16 {
        1002
    }
}

/// A parsed frame header; the payload follows `header_len` bytes later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Last frame of a message.
    pub fin: bool,
    /// One of the `OP_*` constants.
    pub opcode: u8,
    /// Masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub len: u64,
    /// Bytes taken by the header itself (2 to 14).
    pub header_len: usize,
}

impl Header {
    /// Control frames (close, ping, pong) may be interleaved with fragments.
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses a frame header from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold the whole header, so a
/// caller can read more and try again without having consumed anything.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
        other => return Err(FrameError::UnknownOpcode(other)),
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut pos) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(FrameError::LengthOverflow);
            }
            (len, 10)
        }
        short => (u64::from(short), 2),
    };
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    let header = Header {
        fin,
        opcode,
        mask,
        len,
        header_len: pos,
    };
    if header.is_control() && (!fin || len > MAX_CONTROL_PAYLOAD) {
        return Err(FrameError::BadControlFrame);
    }
    Ok(Some(header))
}

/// Appends a frame header to `out`.
pub fn write_header(out: &mut Vec<u8>, fin: bool, opcode: u8, mask: Option<[u8; 4]>, len: u64) {
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
}

/// XORs `data` with `mask`, as if `data` started `offset` bytes into the
/// payload (so a payload can be unmasked in chunks as it arrives).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    // Rotate the key so that chunk index 0 lines up with payload `offset`,
    // then work a word at a time: this runs over every echoed byte.
    let r = offset % 4;
    let key = [
        mask[r],
        mask[(r + 1) % 4],
        mask[(r + 2) % 4],
        mask[(r + 3) % 4],
    ];
    let word = u32::from_ne_bytes(key);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i];
    }
}

/// Appends a complete client (masked) frame carrying `payload` to `out`.
pub fn push_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    write_header(out, true, opcode, Some(mask), payload.len() as u64);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
}

/// The payload every generated message carries: printable ASCII, so the same
/// bytes are valid in a text frame, and not all one byte, so a broken
/// unmasking step on the far side shows up in a packet capture.
pub fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `count` copies of one masked data frame, back to back.
///
/// Writing the first `k * frame_len` bytes sends `k` messages in a single
/// system call, with no per-message work at all.
#[derive(Debug, Clone)]
pub struct FrameBatch {
    bytes: Vec<u8>,
    frame_len: usize,
}

/// Largest pre-built batch: enough frames for one big write, without
/// `in_flight × size` bytes per connection for large messages.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

impl FrameBatch {
    /// Builds up to `count` frames of `size` payload bytes each, fewer if
    /// they would exceed [`MAX_BATCH_BYTES`] (but always at least one);
    /// [`FrameBatch::window`] streams any number of frames from it.
    pub fn new(opcode: u8, size: usize, count: usize, mask: [u8; 4]) -> Self {
        let body = payload(size);
        let mut one = Vec::with_capacity(size + MAX_HEADER_LEN);
        push_client_frame(&mut one, opcode, &body, mask);
        let frame_len = one.len();
        let count = count.min(MAX_BATCH_BYTES / frame_len).max(1);
        let bytes = one.repeat(count);
        Self { bytes, frame_len }
    }

    /// Up to `max` bytes of the batch starting `offset` bytes in. As the
    /// frames are identical, a write that stopped partway through a frame
    /// resumes from `offset % frame_len` with the right bytes.
    pub fn window(&self, offset: usize, max: usize) -> &[u8] {
        let start = offset % self.frame_len;
        let end = self.bytes.len().min(start.saturating_add(max));
        &self.bytes[start..end]
    }

    /// Bytes of one frame, header included.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// How many frames the batch holds.
    pub fn capacity(&self) -> usize {
        self.bytes.len() / self.frame_len
    }

    /// The bytes of the first `n` frames (`n` at most `capacity()`).
    pub fn frames(&self, n: usize) -> &[u8] {
        &self.bytes[..n.min(self.capacity()) * self.frame_len]
    }
}

/// A masked close frame with `code` and no reason.
pub fn client_close(code: u16, mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    push_client_frame(&mut out, OP_CLOSE, &code.to_be_bytes(), mask);
    out
}

#[cfg(test)]
mod tests;
