//! The chunked transfer coding of a client's request body (RFC 9112 §7.1),
//! decoded strictly: every line ends in CRLF (a bare LF is an error, as in
//! the head), a chunk size is 1–16 hex digits, extensions and trailers are
//! bounded and dropped. A body two parsers could split differently is
//! refused, never forwarded: the upstream gets the decoded bytes re-framed
//! by the gateway.
//!
//! A pure state machine over whatever bytes have arrived, allocation-free
//! and panic-free on any input (fuzzed: `fuzz/fuzz_targets/chunked.rs`).

use std::ops::Range;

/// Most hex digits of a chunk size (a u64).
const MAX_SIZE_DIGITS: u8 = 16;

/// Bytes of chunk extensions on one size line, and of the whole trailer
/// section: enough for any real client, bounded for a hostile one.
pub const MAX_LINE_EXTRA: usize = 4096;

/// Why a chunked body is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk size is not 1-16 hex digits")]
    Size,
    #[error("chunk line does not end in CRLF")]
    LineEnd,
    #[error("chunk data is not followed by CRLF")]
    DataEnd,
    #[error("chunk extensions or trailers over the limit")]
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a size line (`digits` so far, `size`).
    Size { digits: u8, size: u64 },
    /// In a `;extension` after the size, until CR.
    Extension { size: u64, seen: usize },
    /// After the size line's CR: LF must follow.
    SizeLf { size: u64 },
    /// Inside chunk data: bytes still to come.
    Data { left: u64 },
    /// After chunk data: CR must follow.
    DataCr,
    /// After chunk data and CR: LF must follow.
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart { seen: usize },
    /// Inside a trailer field line, until CR.
    Trailer { seen: usize },
    /// After a trailer line's CR: LF must follow.
    TrailerLf { seen: usize },
    /// After the final CR: LF must follow.
    EndLf,
    /// The body is complete.
    Done,
}

/// What one call to [`Decoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes used; the caller drops them before the next call.
    pub consumed: usize,
    /// Body bytes, as a range of the input, if any were found.
    pub data: Option<Range<usize>>,
    /// The body (with its trailers) ended.
    pub done: bool,
}

/// Decoder state between reads.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::Size { digits: 0, size: 0 },
        }
    }
}

impl Decoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Advance over `input` until body bytes are found, the body ends, or
    /// the input is used up. Bytes after the end are left unconsumed (the
    /// next request of the connection).
    pub fn decode(&mut self, input: &[u8]) -> Result<Progress, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { left } = self.state {
                let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                return Ok(Progress {
                    consumed: i + take,
                    data: Some(i..i + take),
                    done: false,
                });
            }
            self.state = self.step(input[i])?;
            i += 1;
            if self.state == State::Done {
                break;
            }
        }
        Ok(Progress {
            consumed: i,
            data: None,
            done: self.state == State::Done,
        })
    }

    /// One byte outside chunk data.
    fn step(&self, b: u8) -> Result<State, ChunkError> {
        Ok(match self.state {
            State::Size { digits, size } => match (b, hex(b)) {
                (_, Some(v)) if digits < MAX_SIZE_DIGITS => State::Size {
                    digits: digits + 1,
                    size: size << 4 | u64::from(v),
                },
                (b';', None) if digits > 0 => State::Extension { size, seen: 0 },
                (b'\r', None) if digits > 0 => State::SizeLf { size },
                _ => return Err(ChunkError::Size),
            },
            State::Extension { size, seen } => match b {
                b'\r' => State::SizeLf { size },
                b'\n' => return Err(ChunkError::LineEnd),
                _ if seen >= MAX_LINE_EXTRA => return Err(ChunkError::TooLong),
                _ => State::Extension {
                    size,
                    seen: seen + 1,
                },
            },
            State::SizeLf { size } => match (b, size) {
                (b'\n', 0) => State::TrailerStart { seen: 0 },
                (b'\n', left) => State::Data { left },
                _ => return Err(ChunkError::LineEnd),
            },
            State::DataCr => match b {
                b'\r' => State::DataLf,
                _ => return Err(ChunkError::DataEnd),
            },
            State::DataLf => match b {
                b'\n' => State::Size { digits: 0, size: 0 },
                _ => return Err(ChunkError::DataEnd),
            },
            State::TrailerStart { seen } => match b {
                b'\r' => State::EndLf,
                b'\n' => return Err(ChunkError::LineEnd),
                _ => State::Trailer { seen: seen + 1 },
            },
            State::Trailer { seen } => match b {
                b'\r' => State::TrailerLf { seen },
                b'\n' => return Err(ChunkError::LineEnd),
                _ if seen >= MAX_LINE_EXTRA => return Err(ChunkError::TooLong),
                _ => State::Trailer { seen: seen + 1 },
            },
            State::TrailerLf { seen } => match b {
                b'\n' => State::TrailerStart { seen },
                _ => return Err(ChunkError::LineEnd),
            },
            State::EndLf => match b {
                b'\n' => State::Done,
                _ => return Err(ChunkError::LineEnd),
            },
            State::Data { .. } | State::Done => self.state,
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `input` fed in pieces of `step` bytes: the body, whether it
    /// ended, and the bytes left after it.
    fn decode_split(input: &[u8], step: usize) -> Result<(Vec<u8>, bool, usize), ChunkError> {
        let mut d = Decoder::default();
        let mut body = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        loop {
            if !d.is_done() && fed < input.len() {
                let end = (fed + step).min(input.len());
                pending.extend_from_slice(&input[fed..end]);
                fed = end;
            }
            let p = d.decode(&pending)?;
            if let Some(r) = p.data.clone() {
                body.extend_from_slice(&pending[r]);
            }
            pending.drain(..p.consumed);
            if p.done || (fed == input.len() && p.consumed == 0 && p.data.is_none()) {
                return Ok((body, p.done, pending.len() + input.len() - fed));
            }
        }
    }

    #[test]
    fn decodes_at_every_split_point() {
        let input =
            b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..input.len() {
            let (body, done, left) = decode_split(input, step).expect("valid chunked body");
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz", "step {step}");
            assert!(done);
            assert_eq!(left, 4, "the next request's bytes stay unconsumed");
        }
    }

    #[test]
    fn refuses_what_parsers_read_differently() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"11111111111111111\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\n\n",
            b"0\r\n\r\r",
        ] {
            assert!(
                decode_split(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bounds_extensions_and_trailers() {
        let mut long = b"1;".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_LINE_EXTRA + 1));
        assert_eq!(decode_split(&long, 64), Err(ChunkError::TooLong));
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..MAX_LINE_EXTRA {
            trailers.extend_from_slice(b"a:\r\n");
        }
        assert_eq!(decode_split(&trailers, 64), Err(ChunkError::TooLong));
    }

    #[test]
    fn a_huge_size_is_not_an_overflow() {
        let mut d = Decoder::default();
        let p = d
            .decode(b"ffffffffffffffff\r\nab")
            .expect("16 digits are valid");
        assert_eq!(p.data, Some(18..20));
    }
}
