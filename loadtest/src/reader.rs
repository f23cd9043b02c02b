//! The client's view of the server's frame stream: count messages, answer
//! pings, notice the close — without copying or inspecting payloads.
//!
//! Data payloads are skipped in place (even when they span reads), so a
//! connection's cost per message is one header parse; control frames, at
//! most 125 bytes, are the only ones looked into.

use std::io;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::frame::{self, FrameError, OP_CLOSE, OP_PING, OP_PONG};

/// Read buffer per connection: enough for many small replies per system call.
pub const READ_BUF: usize = 64 * 1024;

/// Why a connection's frame stream could not be followed.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("server closed the TCP connection without a close frame")]
    Eof,
    #[error("protocol: {0}")]
    Frame(#[from] FrameError),
    #[error("server sent a masked frame")]
    Masked,
}

impl ReadError {
    /// Bounded label for error tallies.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Io(_) => "read_io",
            Self::Eof => "read_eof",
            Self::Frame(_) | Self::Masked => "protocol",
        }
    }
}

/// What one read brought in.
#[derive(Debug, Default)]
pub struct Batch {
    /// Complete data messages (frames with FIN set) seen.
    pub messages: u64,
    /// Masked pong frames to send back, one per ping received.
    pub pongs: Vec<u8>,
    /// The server's close frame, with its code (1005 if it carried none).
    pub close: Option<u16>,
}

impl Batch {
    fn reset(&mut self) {
        self.messages = 0;
        self.pongs.clear();
        self.close = None;
    }
}

/// Follows the server-to-client frame stream of one connection.
pub struct FrameReader {
    /// Bytes read but not yet parsed live in `buf[start..end]`.
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Payload bytes of the current data frame still to skip.
    skip: u64,
    /// Whether the frame being skipped ends a message.
    skip_fin: bool,
    /// Key used to mask pongs we send.
    mask: [u8; 4],
}

impl FrameReader {
    /// A reader with a `capacity`-byte buffer, primed with `leftover` bytes
    /// that arrived together with the handshake response.
    pub fn new(capacity: usize, leftover: &[u8], mask: [u8; 4]) -> Self {
        let mut buf = vec![0u8; capacity.max(leftover.len()).max(256)].into_boxed_slice();
        buf[..leftover.len()].copy_from_slice(leftover);
        Self {
            buf,
            start: 0,
            end: leftover.len(),
            skip: 0,
            skip_fin: false,
            mask,
        }
    }

    /// Reads once from `s` (unless buffered bytes already complete something)
    /// and parses everything complete into `out`.
    pub async fn read_batch<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        out: &mut Batch,
    ) -> Result<(), ReadError> {
        out.reset();
        self.parse(out)?;
        if out.messages > 0 || out.close.is_some() || !out.pongs.is_empty() {
            return Ok(());
        }
        self.compact();
        let n = s.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(ReadError::Eof);
        }
        self.end += n;
        self.parse(out)
    }

    /// Moves unparsed bytes to the front so the next read has room.
    fn compact(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// Parses all complete frames (and skippable payload) in the buffer.
    pub fn parse(&mut self, out: &mut Batch) -> Result<(), ReadError> {
        loop {
            let avail = self.end - self.start;
            if self.skip > 0 {
                if avail == 0 {
                    return Ok(());
                }
                let take = self.skip.min(avail as u64);
                self.start += take as usize;
                self.skip -= take;
                if self.skip == 0 && self.skip_fin {
                    out.messages += 1;
                }
                continue;
            }
            let Some(h) = frame::parse_header(&self.buf[self.start..self.end])? else {
                return Ok(());
            };
            if h.mask.is_some() {
                return Err(ReadError::Masked);
            }
            if !h.is_control() {
                self.start += h.header_len;
                if h.len == 0 {
                    out.messages += u64::from(h.fin);
                } else {
                    self.skip = h.len;
                    self.skip_fin = h.fin;
                }
                continue;
            }
            // Control frames are at most 125 bytes: wait until whole.
            let total = h.header_len + h.len as usize;
            if avail < total {
                return Ok(());
            }
            let body = &self.buf[self.start + h.header_len..self.start + total];
            match h.opcode {
                OP_PING => frame::push_client_frame(&mut out.pongs, OP_PONG, body, self.mask),
                OP_CLOSE => {
                    let code = if body.len() >= 2 {
                        u16::from_be_bytes([body[0], body[1]])
                    } else {
                        1005
                    };
                    out.close = Some(code);
                }
                _ => {} // unsolicited pong: nothing to do
            }
            self.start += total;
            if out.close.is_some() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{write_header, OP_BINARY, OP_CONTINUATION, OP_TEXT};

    fn server_frame(out: &mut Vec<u8>, fin: bool, op: u8, payload: &[u8]) {
        write_header(out, fin, op, None, payload.len() as u64);
        out.extend_from_slice(payload);
    }

    #[tokio::test]
    async fn counts_messages_split_across_reads() {
        let mut wire = Vec::new();
        server_frame(&mut wire, true, OP_TEXT, b"hello");
        server_frame(&mut wire, false, OP_BINARY, &[1; 300]);
        server_frame(&mut wire, true, OP_CONTINUATION, &[2; 70000]);
        server_frame(&mut wire, true, OP_PING, b"p");
        server_frame(&mut wire, true, OP_BINARY, b"");
        server_frame(&mut wire, true, OP_CLOSE, &1000u16.to_be_bytes());
        // Feed it through a reader with a small buffer, 7 bytes at a time.
        let (mut tx, mut rx) = tokio::io::duplex(7);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(&wire).await.unwrap();
        });
        let mut r = FrameReader::new(256, &[], [0; 4]);
        let mut batch = Batch::default();
        let (mut messages, mut pongs, mut close) = (0, 0, None);
        while close.is_none() {
            r.read_batch(&mut rx, &mut batch).await.unwrap();
            messages += batch.messages;
            pongs += batch.pongs.len();
            close = batch.close;
        }
        assert_eq!(messages, 3);
        assert_eq!(pongs, 2 + 4 + 1);
        assert_eq!(close, Some(1000));
    }

    #[test]
    fn refuses_masked_server_frames() {
        let mut wire = Vec::new();
        frame::push_client_frame(&mut wire, OP_TEXT, b"x", [1, 2, 3, 4]);
        let mut r = FrameReader::new(256, &wire, [0; 4]);
        assert!(matches!(
            r.parse(&mut Batch::default()),
            Err(ReadError::Masked)
        ));
    }
}
