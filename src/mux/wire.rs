//! WebSocket framing where tidegate is an endpoint in mux mode: frame
//! headers for both legs, and a reader for the mux leg.
//!
//! The mux leg is written by hand rather than through a `WebSocket` type so
//! that a batch goes out as one vectored write of headers and payload
//! slices that are never copied: the gateway is the WebSocket client there,
//! and masks with the all-zero key (docs/mux-protocol.md §1), which leaves
//! the payload bytes as they are.

use crate::relay::scan::parse_header;
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A frame header: at most 14 bytes, kept inline.
#[derive(Clone, Copy)]
pub struct Header {
    bytes: [u8; 14],
    len: u8,
}

impl Header {
    /// Header of a frame of `len` payload bytes. `masked`: the gateway is
    /// the client on this leg; the key is all zeros.
    pub fn new(fin: bool, opcode: u8, len: usize, masked: bool) -> Header {
        let mut b = [0u8; 14];
        b[0] = if fin { 0x80 } else { 0 } | opcode;
        let mask_bit = if masked { 0x80 } else { 0 };
        let mut at = 2;
        if len < 126 {
            b[1] = mask_bit | len as u8;
        } else if len <= u16::MAX as usize {
            b[1] = mask_bit | 126;
            b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            at = 4;
        } else {
            b[1] = mask_bit | 127;
            b[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            at = 10;
        }
        if masked {
            at += 4; // the zero key is already there
        }
        Header {
            bytes: b,
            len: at as u8,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// A Close frame payload: code + reason (reason cut to fit 125 bytes).
pub fn close_payload(code: u16, reason: &str) -> Bytes {
    tidegate_mux::Close::new(code, reason).encode()
}

/// What the mux leg's reader delivers.
pub enum Incoming {
    /// A complete binary message (fragments joined).
    Binary(Bytes),
    Text,
    Ping(Bytes),
    Pong,
    Close,
}

/// Why the application's side of a mux connection is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed")]
    Eof,
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("message over {0} bytes")]
    TooBig(usize),
}

/// Reads server frames (unmasked) from the application. The buffer is per
/// mux connection — there are a handful of them, so it may be large.
pub struct MuxReader {
    buf: BytesMut,
    /// Fragments of a message in progress.
    partial: Option<BytesMut>,
    partial_text: bool,
    max_message: usize,
}

impl MuxReader {
    pub fn new(leftover: &[u8], max_message: usize) -> MuxReader {
        let mut buf = BytesMut::with_capacity(256 * 1024);
        buf.extend_from_slice(leftover);
        MuxReader {
            buf,
            partial: None,
            partial_text: false,
            max_message,
        }
    }

    /// Next message or control frame.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Incoming, ReadError> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(frame);
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            if io.read_buf(&mut self.buf).await? == 0 {
                return Err(ReadError::Eof);
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            let h = match parse_header(&self.buf) {
                None => return Ok(None),
                // A length with the top bit set.
                Some(Err(_)) => return Err(ReadError::TooBig(self.max_message)),
                Some(Ok(h)) => h,
            };
            if h.rsv != 0 {
                return Err(ReadError::Protocol("reserved bits set"));
            }
            if h.masked {
                return Err(ReadError::Protocol("masked frame from the server"));
            }
            let (fin, opcode, len, at) = (h.fin, h.opcode, h.len, h.header_len);
            let held = self.partial.as_ref().map_or(0, |p| p.len()) as u64;
            if len + held > self.max_message as u64 {
                return Err(ReadError::TooBig(self.max_message));
            }
            let len = len as usize;
            if self.buf.len() < at + len {
                self.buf.reserve(at + len - self.buf.len());
                return Ok(None);
            }
            self.buf.advance(at);
            let payload = self.buf.split_to(len);
            match opcode {
                OP_PING if fin && len <= 125 => return Ok(Some(Incoming::Ping(payload.freeze()))),
                OP_PONG if fin && len <= 125 => return Ok(Some(Incoming::Pong)),
                OP_CLOSE if fin && len <= 125 => return Ok(Some(Incoming::Close)),
                OP_PING | OP_PONG | OP_CLOSE => {
                    return Err(ReadError::Protocol("bad control frame"))
                }
                OP_TEXT | OP_BINARY if self.partial.is_none() => {
                    if fin {
                        return Ok(Some(if opcode == OP_TEXT {
                            Incoming::Text
                        } else {
                            Incoming::Binary(payload.freeze())
                        }));
                    }
                    self.partial_text = opcode == OP_TEXT;
                    self.partial = Some(payload);
                }
                OP_CONTINUATION => {
                    let Some(mut whole) = self.partial.take() else {
                        return Err(ReadError::Protocol("continuation without a message"));
                    };
                    whole.extend_from_slice(&payload);
                    if !fin {
                        self.partial = Some(whole);
                        continue;
                    }
                    return Ok(Some(if self.partial_text {
                        Incoming::Text
                    } else {
                        Incoming::Binary(whole.freeze())
                    }));
                }
                OP_TEXT | OP_BINARY => {
                    return Err(ReadError::Protocol("new message inside a fragmented one"))
                }
                _ => return Err(ReadError::Protocol("unknown opcode")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_fragmented_and_control_frames() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&[0x02, 3, 1, 2, 3]); // binary, not fin
        wire.extend_from_slice(&[0x89, 1, 9]); // ping between fragments
        wire.extend_from_slice(&[0x80, 2, 4, 5]); // continuation, fin
        wire.extend_from_slice(&[0x82, 126, 0, 200]);
        wire.extend_from_slice(&[7; 200]);
        let mut r = MuxReader::new(&wire[..4], 1 << 20);
        let mut rest = &wire[4..];
        assert!(matches!(r.next(&mut rest).await, Ok(Incoming::Ping(p)) if p[..] == [9]));
        assert!(
            matches!(r.next(&mut rest).await, Ok(Incoming::Binary(m)) if m[..] == [1, 2, 3, 4, 5])
        );
        assert!(matches!(r.next(&mut rest).await, Ok(Incoming::Binary(m)) if m.len() == 200));
        assert!(matches!(r.next(&mut rest).await, Err(ReadError::Eof)));
    }

    #[tokio::test]
    async fn refuses_masked_and_oversized() {
        let mut r = MuxReader::new(&[0x82, 0x81, 0, 0, 0, 0, 1], 1 << 20);
        assert!(matches!(
            r.next(&mut &[][..]).await,
            Err(ReadError::Protocol(_))
        ));
        let mut r = MuxReader::new(&[0x82, 126, 1, 0], 100);
        assert!(matches!(
            r.next(&mut &[][..]).await,
            Err(ReadError::TooBig(100))
        ));
    }

    #[test]
    fn headers() {
        assert_eq!(
            Header::new(true, OP_BINARY, 5, true).as_slice(),
            &[0x82, 0x85, 0, 0, 0, 0]
        );
        assert_eq!(
            Header::new(false, OP_TEXT, 300, false).as_slice(),
            &[0x01, 126, 1, 44]
        );
        assert_eq!(
            Header::new(true, OP_BINARY, 70_000, false).as_slice().len(),
            10
        );
    }
}
