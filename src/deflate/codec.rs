//! The zlib streams of an edge-compressed session (flate2, zlib-rs
//! backend): one inflater for the client's messages, one deflater for the
//! upstream's. Each is allocated when a message starts; without context
//! takeover it is dropped when the message ends, so an idle session holds
//! no zlib memory at all.
//!
//! Inflation is stepwise into a caller's bounded buffer, so the caller
//! checks the message size limit after every step: a zip bomb stops after
//! at most the limit's bytes of output (plus one step).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The four bytes RFC 7692 §7.2.1 strips from the end of a compressed
/// message (an empty stored block from the sync flush), and the receiver
/// appends before inflating.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The client's compressed data is not a valid deflate stream (1007).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid compressed data")]
pub struct InvalidData;

/// Inflates the client's messages.
pub struct Inflater {
    window_bits: u8,
    /// Keep the window between messages (client context takeover).
    takeover: bool,
    z: Option<Box<Decompress>>,
}

impl Inflater {
    pub fn new(window_bits: u8, takeover: bool) -> Inflater {
        Inflater {
            window_bits,
            takeover,
            z: None,
        }
    }

    /// Inflate from `input` into the spare capacity of `out` (which the
    /// caller empties between steps). Returns how much input was used.
    pub fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, InvalidData> {
        let bits = self.window_bits;
        let z = self
            .z
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        let before = z.total_in();
        let status = z
            .decompress_vec(input, out, FlushDecompress::Sync)
            .map_err(|_| InvalidData)?;
        let used = (z.total_in() - before) as usize;
        if status == Status::StreamEnd {
            // A final block (BFINAL) ends the stream; the next message
            // starts a fresh one.
            z.reset(false);
        }
        Ok(used)
    }

    /// The message ended: forget the window unless it is taken over.
    pub fn end_message(&mut self) {
        if !self.takeover {
            self.z = None;
        }
    }
}

/// Compresses the upstream's messages.
pub struct Deflater {
    level: Compression,
    window_bits: u8,
    /// Keep the window between messages (server context takeover).
    takeover: bool,
    z: Option<Box<Compress>>,
}

impl Deflater {
    pub fn new(level: u32, window_bits: u8, takeover: bool) -> Deflater {
        Deflater {
            level: Compression::new(level),
            window_bits,
            takeover,
            z: None,
        }
    }

    /// Compress one piece of a message; `last`: the message ends with it
    /// (sync flush, and the RFC 7692 tail removed). Output is at most a
    /// little more than the input, so one piece's output is held whole.
    pub fn piece(&mut self, input: &[u8], last: bool) -> Vec<u8> {
        let (level, bits) = (self.level, self.window_bits);
        let z = self
            .z
            .get_or_insert_with(|| Box::new(Compress::new_with_window_bits(level, false, bits)));
        let flush = if last {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut at = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = z.total_in();
            // Compressing into a Vec with spare room cannot fail.
            let _ = z.compress_vec(&input[at..], &mut out, flush);
            at += (z.total_in() - before) as usize;
            if at == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        if last {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            }
            if !self.takeover {
                self.z = None;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
