//! The socket side of a mux connection's write buffer: a batch taken from
//! the buffer is laid out as WebSocket messages — consecutive mux frames
//! packed into one binary message of up to `mux.batch_bytes`, pongs and
//! the Close as their own frames — and written with vectored writes from
//! a stack array of slices: headers and payloads are never copied, and
//! nothing is allocated per frame (the batch's deque keeps its capacity).
//!
//! Only the flush owner touches a `Writer` (see [`super::outbuf`]), so it
//! is polled from whichever task owns the flush; partial writes resume at
//! `offset`.

use super::outbuf::{Entry, State};
use super::Out;
use crate::frame::{encode_header, HeaderBytes, Opcode};
use crate::io::Io;
use crate::mux::wire::{self, ZERO_KEY};
use bytes::Bytes;
use prometheus::Histogram;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tidegate_mux::codec::{Frame, HEADER_LEN};
use tokio::io::{AsyncWrite, WriteHalf};

/// Mux frames taken per batch at most (each is up to two slices).
pub(super) const MAX_BATCH_FRAMES: usize = 256;

/// Slices per vectored write: a full batch with its message headers
/// (Linux allows 1024 per call).
const MAX_SLICES: usize = 3 * MAX_BATCH_FRAMES;

/// One part of a batch, in write order.
enum Piece {
    /// A WebSocket frame header (a binary message of mux frames, a pong,
    /// the Close).
    Ws(HeaderBytes),
    /// A mux frame and the budget it releases once written.
    Mux {
        header: [u8; HEADER_LEN],
        body: Bytes,
        charge: usize,
    },
    /// The payload of a WebSocket control frame.
    Payload(Bytes),
}

impl Piece {
    fn parts(&self) -> [&[u8]; 2] {
        match self {
            Piece::Ws(h) => [h.as_slice(), &[]],
            Piece::Mux { header, body, .. } => [header, body],
            Piece::Payload(p) => [p, &[]],
        }
    }

    fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }
}

pub(super) struct Writer {
    io: WriteHalf<Io>,
    /// TLS: rustls buffers written bytes until flushed.
    tls: bool,
    /// Written since the last flush (TLS only matters).
    dirty: bool,
    /// The batch being written; `offset` bytes of its front are out.
    pieces: VecDeque<Piece>,
    offset: usize,
    /// Budget of the pieces written since the owner last looked.
    pub(super) released: usize,
    /// The batch ends with the Close: the writer is done after it.
    pub(super) closing: bool,
    /// `mux.batch_bytes`: the largest message packed from several frames.
    batch_bytes: usize,
    batch_frames: Option<Histogram>,
    /// Wakers to run after a flush, kept for its capacity.
    pub(super) to_wake: Vec<Waker>,
}

impl Writer {
    pub(super) fn new(io: WriteHalf<Io>, tls: bool, batch_bytes: usize) -> Writer {
        Writer {
            io,
            tls,
            dirty: false,
            pieces: VecDeque::new(),
            offset: 0,
            released: 0,
            closing: false,
            batch_bytes,
            batch_frames: None,
            to_wake: Vec::new(),
        }
    }

    pub(super) fn observe_batches(&mut self, h: Histogram) {
        self.batch_frames = Some(h);
    }

    pub(super) fn needs_flush(&self) -> bool {
        self.tls && self.dirty
    }

    /// Take up to `MAX_BATCH_FRAMES` entries off the buffer and lay them
    /// out as WebSocket frames. A Close ends the batch and the writer.
    pub(super) fn take_batch(&mut self, st: &mut State) {
        let mut frames = 0;
        while frames < MAX_BATCH_FRAMES && !self.closing {
            let Some(front) = st.entries.front() else {
                break;
            };
            match &front.out {
                Out::Frame { .. } => frames += self.take_message(st, MAX_BATCH_FRAMES - frames),
                Out::Pong | Out::MuxPong => {
                    let mux = matches!(front.out, Out::MuxPong);
                    st.entries.pop_front();
                    let slot = if mux {
                        &mut st.pongs.mux
                    } else {
                        &mut st.pongs.ws
                    };
                    // Nothing if an earlier marker already took it.
                    if let Some(p) = slot.take() {
                        self.pong(mux, p);
                    }
                }
                Out::Close(code, reason) => {
                    let p = wire::close_payload(*code, reason);
                    let h = encode_header(true, Opcode::Close, p.len(), Some(ZERO_KEY));
                    self.pieces.push_back(Piece::Ws(h));
                    self.pieces.push_back(Piece::Payload(p));
                    // Nothing may follow the Close.
                    self.closing = true;
                    st.ended = true;
                }
            }
        }
    }

    /// Consecutive frames at the front as one binary message: at least
    /// one, more while the message stays within `batch_bytes`. Returns
    /// how many.
    fn take_message(&mut self, st: &mut State, max: usize) -> usize {
        let mut total = 0;
        let mut n = 0;
        for e in st.entries.iter().take(max) {
            let Out::Frame { body, .. } = &e.out else {
                break;
            };
            let len = HEADER_LEN + body.len();
            if n > 0 && total + len > self.batch_bytes {
                break;
            }
            total += len;
            n += 1;
        }
        let h = encode_header(true, Opcode::Binary, total, Some(ZERO_KEY));
        self.pieces.push_back(Piece::Ws(h));
        for Entry { out, charge } in st.entries.drain(..n) {
            if let Out::Frame { header, body } = out {
                self.pieces.push_back(Piece::Mux {
                    header,
                    body,
                    charge,
                });
            }
        }
        if let Some(h) = &self.batch_frames {
            h.observe(n as f64);
        }
        n
    }

    /// A pong: a WebSocket pong, or a mux PONG alone in a binary message.
    fn pong(&mut self, mux: bool, payload: Bytes) {
        if !mux {
            let h = encode_header(true, Opcode::Pong, payload.len(), Some(ZERO_KEY));
            self.pieces.push_back(Piece::Ws(h));
            self.pieces.push_back(Piece::Payload(payload));
            return;
        }
        let f = Frame::pong(payload);
        let header = f.header();
        let h = encode_header(
            true,
            Opcode::Binary,
            HEADER_LEN + f.body.len(),
            Some(ZERO_KEY),
        );
        self.pieces.push_back(Piece::Ws(h));
        self.pieces.push_back(Piece::Mux {
            header,
            body: f.body,
            charge: 0,
        });
    }

    /// Write the batch until it is out (`Ready(Ok)`, also when there is
    /// none) or the socket would block.
    pub(super) fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pieces.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut n = 0;
            let mut skip = self.offset;
            'fill: for piece in &self.pieces {
                for part in piece.parts() {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    slices[n] = IoSlice::new(&part[skip..]);
                    skip = 0;
                    n += 1;
                    if n == MAX_SLICES {
                        break 'fill;
                    }
                }
            }
            let written = match crate::io::poll_write_gathered(&mut self.io, cx, &slices[..n]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(w)) => w,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            };
            self.dirty = true;
            self.offset += written;
            while let Some(front) = self.pieces.front() {
                let len = front.len();
                if self.offset < len {
                    break;
                }
                self.offset -= len;
                if let Some(Piece::Mux { charge, .. }) = self.pieces.pop_front() {
                    self.released += charge;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// TLS: push rustls's buffered bytes to the socket.
    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        if matches!(r, Poll::Ready(Ok(()))) {
            self.dirty = false;
        }
        r
    }
}
