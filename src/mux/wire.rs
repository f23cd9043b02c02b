//! WebSocket framing where tidegate is an endpoint in mux mode: the
//! reader of the mux leg and what the gateway's frames on it carry. The
//! header rules and the header encoder are [`crate::frame`]'s.
//!
//! The mux leg is written by hand rather than through a `WebSocket` type so
//! that a batch goes out as one vectored write of headers and payload
//! slices that are never copied: the gateway is the WebSocket client there,
//! and masks with the all-zero key (docs/mux-protocol.md §1), which leaves
//! the payload bytes as they are.

use crate::frame::{check_header, parse_header, Opcode, Violation};
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The masking key of every frame the gateway sends on the mux leg
/// (docs/mux-protocol.md §1): XOR with zeros leaves payloads as they are,
/// so they are written from where they lie.
pub const ZERO_KEY: [u8; 4] = [0; 4];

/// The read buffer of a mux connection: messages up to about this size
/// are slices of a shared buffer of this size; a larger one is read into
/// an allocation of its own size.
pub const READ_BUFFER: usize = 256 * 1024;

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
    Protocol(#[from] Violation),
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
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
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
                self.buf.reserve(READ_BUFFER);
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
            let held = self.partial.as_ref().map_or(0, |p| p.len()) as u64;
            // Size first: an over-long frame is the mux error `too_big`,
            // whatever else is wrong with it.
            if h.len + held > self.max_message as u64 {
                return Err(ReadError::TooBig(self.max_message));
            }
            let opcode = check_header(&h, false, self.partial.is_some())?;
            let (fin, len, at) = (h.fin, h.len as usize, h.header_len);
            if self.buf.len() < at + len {
                self.buf.reserve(at + len - self.buf.len());
                return Ok(None);
            }
            self.buf.advance(at);
            let payload = self.buf.split_to(len);
            let whole = match opcode {
                Opcode::Ping => return Ok(Some(Incoming::Ping(payload.freeze()))),
                Opcode::Pong => return Ok(Some(Incoming::Pong)),
                Opcode::Close => return Ok(Some(Incoming::Close)),
                Opcode::Text | Opcode::Binary => {
                    self.partial_text = opcode == Opcode::Text;
                    payload
                }
                Opcode::Continuation => {
                    // `check_header` refused a continuation with none open.
                    let Some(mut whole) = self.partial.take() else {
                        return Err(Violation::ContinuationWithoutMessage.into());
                    };
                    whole.extend_from_slice(&payload);
                    whole
                }
            };
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
            Err(ReadError::Protocol(Violation::ServerMasked))
        ));
        let mut r = MuxReader::new(&[0x82, 126, 1, 0], 100);
        assert!(matches!(
            r.next(&mut &[][..]).await,
            Err(ReadError::TooBig(100))
        ));
    }
}
