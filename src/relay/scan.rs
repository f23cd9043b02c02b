//! Frame-header scanning over a byte stream.
//!
//! The relay forwards the bytes it reads as they are; this scanner walks
//! them to find where frames start and end, without unmasking or copying a
//! payload. It checks each header against RFC 6455 §5 and the size limits
//! *before* any byte of that frame is forwarded, counts messages, captures
//! the (at most 125 byte) payload of a Close frame to learn its code, and
//! tells the relay where a frame of its own may be inserted.
//!
//! A header split across two reads — or a control frame (at most 139 bytes)
//! not yet complete — is kept in a small stash and handed back to be placed
//! in front of the next read. So forwarded output always ends at a frame
//! boundary or inside a data payload, never inside a header, and a control
//! frame is judged whole before any byte of it is forwarded.

/// Largest frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER: usize = 14;

/// Largest control frame: a 125-byte payload behind the largest header.
/// Not `2 + 4 + 125`: a peer may encode a short length in the 64-bit form
/// (RFC 6455 asks for the minimal form, but the scanner does not refuse
/// others), and such a frame is held whole like any control frame.
pub const MAX_STASH: usize = MAX_HEADER + 125;

/// Why the stream must stop at the frame that starts at the returned offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Breaks RFC 6455 framing: close with 1002.
    Protocol(&'static str),
    /// Over `max_frame_size` / `max_message_size`: close with 1009.
    TooBig,
    /// A Close frame's reason is not UTF-8: close with 1007.
    BadCloseReason,
}

impl Violation {
    pub fn close_code(self) -> u16 {
        match self {
            Violation::Protocol(_) => 1002,
            Violation::TooBig => 1009,
            Violation::BadCloseReason => 1007,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Violation::Protocol(why) => why,
            Violation::TooBig => "message too big",
            Violation::BadCloseReason => "invalid close reason",
        }
    }
}

/// Where scanning stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A Close frame ended at the returned offset (it is included in what
    /// may be forwarded). `None`: empty close payload.
    Close(Option<u16>),
    /// The frame starting at the returned offset must not be forwarded.
    Violation(Violation),
}

/// Limits applied to one direction.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame: u64,
    pub max_message: u64,
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

/// A parsed frame header (shared with the mux leg's readers).
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) rsv: u8,
    pub(crate) opcode: u8,
    pub(crate) masked: bool,
    pub(crate) mask: [u8; 4],
    pub(crate) len: u64,
    pub(crate) header_len: usize,
}

/// Parse a header at the start of `buf`; `None` if more bytes are needed.
pub(crate) fn parse_header(buf: &[u8]) -> Option<Result<Header, Violation>> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => {
            let b = buf.get(2..4)?;
            (u16::from_be_bytes([b[0], b[1]]) as u64, 4)
        }
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Some(Err(Violation::Protocol("invalid frame length")));
            }
            (len, 10)
        }
        n => (n as u64, 2),
    };
    let mut mask = [0; 4];
    if masked {
        mask.copy_from_slice(buf.get(at..at + 4)?);
        at += 4;
    }
    Some(Ok(Header {
        fin: buf[0] & 0x80 != 0,
        rsv: buf[0] & 0x70,
        opcode: buf[0] & 0x0f,
        masked,
        mask,
        len,
        header_len: at,
    }))
}

impl Scanner {
    /// `expect_masked`: true for frames coming from a client.
    pub fn new(expect_masked: bool) -> Self {
        Scanner {
            remaining: 0,
            in_message: false,
            message_len: 0,
            expect_masked,
            stash: Vec::new(),
            messages: 0,
            bytes: 0,
            close_len: 0,
        }
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
            if let Err(v) = self.check(&header, limits) {
                return (pos, Some(Stop::Violation(v)));
            }
            if header.opcode >= 8 {
                // Control frames are judged whole: wait for all of it.
                let total = header.header_len + header.len as usize;
                let Some(frame) = buf.get(pos..pos + total) else {
                    return self.hold(buf, pos);
                };
                if header.opcode == 8 {
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

    /// Validate a header against RFC 6455 §5.2–5.5 and the limits.
    fn check(&self, h: &Header, limits: Limits) -> Result<(), Violation> {
        if h.rsv != 0 {
            return Err(Violation::Protocol("reserved bits set"));
        }
        if h.masked != self.expect_masked {
            return Err(Violation::Protocol(if self.expect_masked {
                "client frame not masked"
            } else {
                "server frame masked"
            }));
        }
        match h.opcode {
            0 if !self.in_message => Err(Violation::Protocol("continuation without a message")),
            1 | 2 if self.in_message => {
                Err(Violation::Protocol("new message inside a fragmented one"))
            }
            0..=2 => {
                if h.len > limits.max_frame
                    || self.message_len.saturating_add(h.len) > limits.max_message
                {
                    Err(Violation::TooBig)
                } else {
                    Ok(())
                }
            }
            8..=10 => {
                if !h.fin {
                    Err(Violation::Protocol("fragmented control frame"))
                } else if h.len > 125 {
                    Err(Violation::Protocol("control frame too long"))
                } else if h.opcode == 8 && h.len == 1 {
                    Err(Violation::Protocol("close payload of one byte"))
                } else {
                    Ok(())
                }
            }
            _ => Err(Violation::Protocol("reserved opcode")),
        }
    }
}

/// Check a complete Close frame's payload; returns its code.
fn close_frame(h: &Header, masked: &[u8]) -> Result<Option<u16>, Violation> {
    let mut payload = [0u8; 125];
    let payload = &mut payload[..masked.len()];
    for (i, (out, b)) in payload.iter_mut().zip(masked).enumerate() {
        *out = b ^ if h.masked { h.mask[i & 3] } else { 0 };
    }
    if payload.is_empty() {
        return Ok(None);
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    if !close_code_allowed(code) {
        return Err(Violation::Protocol("invalid close code"));
    }
    if std::str::from_utf8(&payload[2..]).is_err() {
        return Err(Violation::BadCloseReason);
    }
    Ok(Some(code))
}

/// Close codes an endpoint may send (RFC 6455 §7.4, IANA registry).
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests;
