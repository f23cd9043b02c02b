//! Client frames in mux mode, where the gateway is the WebSocket server
//! endpoint: parse headers, check RFC 6455 rules and limits, unmask
//! payloads in place and cut them into pieces that become MESSAGE frames —
//! a piece is whatever part of a frame one read delivered, so a session
//! never buffers a frame to forward it. Text is checked as UTF-8 as it
//! streams (1007 on the first bad byte sequence). The header and Close
//! rules are [`crate::frame`]'s, the same the passthrough scanner applies.
//!
//! With edge permessage-deflate ([`ClientReader::allow_compressed`]) RSV1
//! may mark a message's first frame; the pieces of such a message carry
//! `compressed` and are checked as UTF-8 only once inflated (by the
//! session's `compress` part), since the wire bytes are deflate data.

use crate::frame::{
    check_header, parse_close, parse_header, Limits, Opcode, Violation, MAX_HEADER, RSV1,
};
use bytes::{Buf, Bytes, BytesMut};
use tidegate_mux::codec::{KIND_BINARY, KIND_CONTINUATION, KIND_TEXT};

/// What a read from the client produced, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// Part of a data frame: `kind` is the MESSAGE kind (text/binary on
    /// the first piece of a message's first frame, else continuation).
    Data {
        kind: u8,
        fin: bool,
        /// The message is deflate data (RSV1 on its first frame).
        compressed: bool,
        payload: Bytes,
    },
    Ping(Bytes),
    Pong,
    /// A Close frame's code (`None`: no payload) and reason.
    Close(Option<u16>, String),
}

/// Streaming UTF-8 check: the up to 3 bytes of a character cut by a read
/// boundary are kept until the next piece.
#[derive(Default)]
pub(crate) struct Utf8 {
    tail: [u8; 4],
    len: u8,
}

fn char_width(first: u8) -> usize {
    match first {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

impl Utf8 {
    /// Whether `data` continues valid UTF-8 (a character may still be cut).
    pub(crate) fn check(&mut self, mut data: &[u8]) -> bool {
        if self.len > 0 {
            let need = char_width(self.tail[0]);
            while (self.len as usize) < need && !data.is_empty() {
                self.tail[self.len as usize] = data[0];
                self.len += 1;
                data = &data[1..];
            }
            let held = &self.tail[..self.len as usize];
            match std::str::from_utf8(held) {
                Ok(_) => self.len = 0,
                // Still incomplete but valid so far.
                Err(e) if e.error_len().is_none() && (self.len as usize) < need => return true,
                Err(_) => return false,
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let rest = &data[e.valid_up_to()..];
                self.tail[..rest.len()].copy_from_slice(rest);
                self.len = rest.len() as u8;
                true
            }
            Err(_) => false,
        }
    }

    /// A character is cut at the end: the message ended mid-character.
    pub(crate) fn incomplete(&self) -> bool {
        self.len > 0
    }
}

/// The kind of data message being read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Message {
    #[default]
    None,
    Text,
    Binary,
    /// RSV1 on its first frame: deflate data, checked as UTF-8 (if text)
    /// only once inflated.
    Compressed,
}

/// Per-session parsing state; small, since every client holds one.
#[derive(Default)]
pub struct ClientReader {
    /// A header cut by a read boundary.
    hdr: [u8; MAX_HEADER],
    hdr_len: u8,
    /// Inside a frame's payload.
    in_frame: bool,
    remaining: u64,
    mask: [u8; 4],
    /// Payload offset modulo 4, for the mask.
    mask_pos: u8,
    opcode: Opcode,
    fin: bool,
    /// The next data piece is the first of its frame.
    first_piece: bool,
    /// A control frame's payload being collected (at most 125 bytes).
    control: Vec<u8>,
    /// The data message in progress, if any (one byte: the session future
    /// that holds this reader has a size budget).
    message: Message,
    /// RSV1 may mark a message as compressed (edge permessage-deflate).
    compression: bool,
    message_len: u64,
    utf8: Utf8,
    /// Complete data messages seen (for metrics).
    pub messages: u64,
}

impl ClientReader {
    /// Let RSV1 mark compressed messages (edge permessage-deflate was
    /// negotiated with this client).
    pub fn allow_compressed(&mut self, yes: bool) {
        self.compression = yes;
    }

    /// Parse `buf` (bytes just read), pushing what it holds onto `out`.
    pub fn feed(
        &mut self,
        mut buf: BytesMut,
        limits: Limits,
        out: &mut Vec<Piece>,
    ) -> Result<(), Violation> {
        while !buf.is_empty() || (self.in_frame && self.remaining == 0) {
            if !self.in_frame {
                if !self.header(&mut buf, limits)? {
                    return Ok(());
                }
                continue;
            }
            let take = self.remaining.min(buf.len() as u64) as usize;
            let mut piece = buf.split_to(take);
            unmask(&mut piece, self.mask, self.mask_pos);
            self.mask_pos = ((self.mask_pos as usize + take) % 4) as u8;
            self.remaining -= take as u64;
            let frame_done = self.remaining == 0;
            if self.opcode.is_control() {
                self.control.extend_from_slice(&piece);
                if frame_done {
                    self.in_frame = false;
                    out.push(self.control_piece()?);
                }
                continue;
            }
            if self.message == Message::Text && !self.utf8.check(&piece) {
                return Err(Violation::BadUtf8);
            }
            let kind = match (self.first_piece, self.opcode) {
                (true, Opcode::Text) => KIND_TEXT,
                (true, Opcode::Binary) => KIND_BINARY,
                _ => KIND_CONTINUATION,
            };
            self.first_piece = false;
            let fin = frame_done && self.fin;
            // Before the message's end resets it: its last piece is
            // compressed too.
            let compressed = self.message == Message::Compressed;
            if frame_done {
                self.in_frame = false;
                if self.fin {
                    if self.message == Message::Text && self.utf8.incomplete() {
                        return Err(Violation::BadUtf8);
                    }
                    self.message = Message::None;
                    self.messages += 1;
                }
            }
            out.push(Piece::Data {
                kind,
                fin,
                compressed,
                payload: piece.freeze(),
            });
        }
        Ok(())
    }

    /// Take header bytes from `buf`; Ok(true) once a header is complete
    /// and checked.
    fn header(&mut self, buf: &mut BytesMut, limits: Limits) -> Result<bool, Violation> {
        // Copy what may be header bytes, parse, and take from `buf` only
        // what the header turned out to use.
        let have = self.hdr_len as usize;
        let n = (MAX_HEADER - have).min(buf.len());
        self.hdr[have..have + n].copy_from_slice(&buf[..n]);
        let h = match parse_header(&self.hdr[..have + n]) {
            None => {
                // Incomplete: all of `buf` was header bytes.
                buf.advance(n);
                self.hdr_len += n as u8;
                return Ok(false);
            }
            Some(Err(v)) => {
                self.hdr_len = 0;
                return Err(v);
            }
            Some(Ok(h)) => h,
        };
        buf.advance(h.header_len - have);
        self.hdr_len = 0;
        let in_message = self.message != Message::None;
        let opcode = check_header(&h, true, in_message, self.compression)?;
        let (fin, len) = (h.fin, h.len);
        if matches!(opcode, Opcode::Text | Opcode::Binary) {
            self.message = match opcode {
                _ if h.rsv & RSV1 != 0 => Message::Compressed,
                Opcode::Text => Message::Text,
                _ => Message::Binary,
            };
            self.message_len = 0;
            self.utf8 = Utf8::default();
        }
        if !opcode.is_control() {
            limits.check(len, self.message_len)?;
            self.message_len += len;
        }
        self.mask = h.mask;
        self.mask_pos = 0;
        self.opcode = opcode;
        self.fin = fin;
        self.remaining = len;
        self.in_frame = true;
        self.first_piece = opcode != Opcode::Continuation;
        self.control = Vec::new();
        Ok(true)
    }

    fn control_piece(&mut self) -> Result<Piece, Violation> {
        let payload = std::mem::take(&mut self.control);
        Ok(match self.opcode {
            Opcode::Ping => Piece::Ping(Bytes::from(payload)),
            Opcode::Pong => Piece::Pong,
            _ => match parse_close(&payload)? {
                None => Piece::Close(None, String::new()),
                Some((code, reason)) => Piece::Close(Some(code), reason.to_string()),
            },
        })
    }
}

fn unmask(data: &mut [u8], mask: [u8; 4], offset: u8) {
    let mut key = mask;
    key.rotate_left(offset as usize);
    let k = u32::from_ne_bytes(key);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ k;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i];
    }
}

#[cfg(test)]
mod tests;
