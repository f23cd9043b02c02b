//! Frame-header scanning over a byte stream.
//!
//! The relay forwards the bytes it reads as they are; this scanner walks
//! them to find where frames start and end, without unmasking or copying a
//! payload. It checks each header against the rules of [`crate::frame`]
//! (RFC 6455 §5) and the size limits *before* any byte of that frame is
//! forwarded, counts messages, captures
//! the (at most 125 byte) payload of a Close frame to learn its code, and
//! tells the relay where a frame of its own may be inserted.
//!
//! A header split across two reads — or a control frame (at most 139 bytes)
//! not yet complete — is kept in a small stash and handed back to be placed
//! in front of the next read. So forwarded output always ends at a frame
//! boundary or inside a data payload, never inside a header, and a control
//! frame is judged whole before any byte of it is forwarded.

use crate::frame::{
    check_header, parse_close, parse_header, Header, Opcode, Violation, MAX_CONTROL_PAYLOAD,
    MAX_HEADER,
};

/// The scanner's callers pass limits per direction.
pub use crate::frame::Limits;

/// Largest control frame: a 125-byte payload behind the largest header.
/// Not `2 + 4 + 125`: a peer may encode a short length in the 64-bit form
/// (RFC 6455 asks for the minimal form, but the scanner does not refuse
/// others), and such a frame is held whole like any control frame.
pub const MAX_STASH: usize = MAX_HEADER + MAX_CONTROL_PAYLOAD as usize;

/// Where scanning stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A Close frame ended at the returned offset (it is included in what
    /// may be forwarded). `None`: empty close payload.
    Close(Option<u16>),
    /// The frame starting at the returned offset must not be forwarded.
    Violation(Violation),
}

/// Per-direction scanning state. Small on purpose: one exists per direction
/// per connection for the whole session.
pub struct Scanner {
    /// Payload bytes of the current frame still to pass; 0 = at a header.
    remaining: u64,
    /// A fragmented data message is open.
    in_message: bool,
    /// Bytes of the open message so far.
    message_len: u64,
    /// Frames from this source must be masked (client → gateway) or must
    /// not be (upstream → gateway).
    expect_masked: bool,
    /// permessage-deflate was negotiated end to end: RSV1 may mark a
    /// message's first frame (the payload passes on still compressed).
    compressed: bool,
    /// Bytes held back from the last scan (a partial header or control
    /// frame); empty, and unallocated, almost always.
    stash: Vec<u8>,
    /// Data messages completed (FIN seen) since the last `take_tally`.
    messages: u64,
    /// Data payload bytes since the last `take_tally`.
    bytes: u64,
    /// Length of the Close frame the last `Stop::Close` ended with.
    close_len: u8,
}

impl Scanner {
    /// `expect_masked`: true for frames coming from a client.
    pub fn new(expect_masked: bool) -> Self {
        Scanner {
            remaining: 0,
            in_message: false,
            message_len: 0,
            expect_masked,
            compressed: false,
            stash: Vec::new(),
            messages: 0,
            bytes: 0,
            close_len: 0,
        }
    }

    /// Let RSV1 through on the first frame of each data message (the
    /// session negotiated permessage-deflate).
    pub fn allow_compressed(&mut self, on: bool) {
        self.compressed = on;
    }

    /// True when the bytes forwarded so far end on a frame boundary, so a
    /// frame of the gateway's own may be inserted.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// True while a fragmented message is open (a gateway ping may still go
    /// between its frames; data may not).
    pub fn in_message(&self) -> bool {
        self.in_message
    }

    /// Move a stashed partial header to the front of `dst`; returns its length.
    /// Copy held-back bytes to the front of `dst` (at least [`MAX_STASH`]
    /// long); the next `scan` must be given them again at its start.
    pub fn copy_stash(&self, dst: &mut [u8]) -> usize {
        let n = self.stash.len();
        dst[..n].copy_from_slice(&self.stash);
        n
    }

    /// Bytes of the Close frame that ended the last scan with `Stop::Close`
    /// (it is the last thing in the forwardable prefix).
    pub fn close_len(&self) -> usize {
        self.close_len as usize
    }

    /// (messages, payload bytes) since the last call.
    pub fn take_tally(&mut self) -> (u64, u64) {
        let t = (self.messages, self.bytes);
        self.messages = 0;
        self.bytes = 0;
        t
    }

    /// Scan `buf`. Returns how many leading bytes may be forwarded and why
    /// scanning stopped early, if it did. Bytes of an incomplete header or
    /// control frame at the end are stashed, not counted.
    pub fn scan(&mut self, buf: &[u8], limits: Limits) -> (usize, Option<Stop>) {
        if !self.stash.is_empty() {
            // The caller put these bytes in front of `buf`. Free the memory:
            // a connection keeps no buffer while it waits.
            self.stash = Vec::new();
        }
        let mut pos = 0;
        loop {
            if self.remaining > 0 {
                let take = self.remaining.min((buf.len() - pos) as u64);
                self.bytes += take;
                pos += take as usize;
                self.remaining -= take;
                if self.remaining > 0 {
                    return (pos, None);
                }
            }
            if pos == buf.len() {
                return (pos, None);
            }
            let header = match parse_header(&buf[pos..]) {
                None => return self.hold(buf, pos),
                Some(Err(v)) => return (pos, Some(Stop::Violation(v))),
                Some(Ok(h)) => h,
            };
            let opcode = match self.check(&header, limits) {
                Ok(op) => op,
                Err(v) => return (pos, Some(Stop::Violation(v))),
            };
            if opcode.is_control() {
                // Control frames are judged whole: wait for all of it.
                let total = header.header_len + header.len as usize;
                let Some(frame) = buf.get(pos..pos + total) else {
                    return self.hold(buf, pos);
                };
                if opcode == Opcode::Close {
                    return match close_frame(&header, &frame[header.header_len..]) {
                        Ok(code) => {
                            self.close_len = total as u8;
                            (pos + total, Some(Stop::Close(code)))
                        }
                        Err(v) => (pos, Some(Stop::Violation(v))),
                    };
                }
                pos += total;
                continue;
            }
            pos += header.header_len;
            self.remaining = header.len;
            self.in_message = !header.fin;
            self.message_len = if header.fin {
                0
            } else {
                self.message_len + header.len
            };
            if header.fin {
                self.messages += 1;
            }
        }
    }

    /// Keep `buf[pos..]` (shorter than a header or a control frame) for the
    /// next scan.
    fn hold(&mut self, buf: &[u8], pos: usize) -> (usize, Option<Stop>) {
        self.stash.clear();
        self.stash.extend_from_slice(&buf[pos..]);
        (pos, None)
    }

    /// The RFC 6455 rules for this direction's stream, then the limits.
    fn check(&self, h: &Header, limits: Limits) -> Result<Opcode, Violation> {
        let opcode = check_header(h, self.expect_masked, self.in_message, self.compressed)?;
        if !opcode.is_control() {
            limits.check(h.len, self.message_len)?;
        }
        Ok(opcode)
    }
}

/// Check a complete Close frame's payload; returns its code.
fn close_frame(h: &Header, masked: &[u8]) -> Result<Option<u16>, Violation> {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD as usize];
    let payload = &mut payload[..masked.len()];
    for (i, (out, b)) in payload.iter_mut().zip(masked).enumerate() {
        *out = b ^ h.mask[i & 3];
    }
    Ok(parse_close(payload)?.map(|(code, _)| code))
}

#[cfg(test)]
mod tests;
