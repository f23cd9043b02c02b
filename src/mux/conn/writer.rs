//! The batching writer of a mux connection: whatever frames of any
//! sessions are queued go out as one WebSocket message (up to
//! `mux.batch_bytes`) in one vectored write — header, then each frame's
//! header and payload slice, none of them copied. Pongs are taken from
//! the connection's coalescing slots when their marker comes up.

use super::{Conn, Out};
use crate::frame::{encode_header, Opcode};
use crate::io::Io;
use crate::mux::wire::{self, ZERO_KEY};
use std::io::IoSlice;
use tidegate_mux::codec::{Frame, HEADER_LEN};
use tokio::io::{AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc::UnboundedReceiver;

/// Frames per write at most (each is two iovecs).
const MAX_BATCH_FRAMES: usize = 256;

/// A batch smaller than this waits one scheduler round for more frames.
const COALESCE_BELOW: usize = 16;

/// Batch whatever is queued into WebSocket messages of up to
/// `mux.batch_bytes`, each written as one vectored write.
pub(super) async fn write_loop(mut wr: WriteHalf<Io>, mut rx: UnboundedReceiver<Out>, conn: &Conn) {
    let batch_bytes = conn.settings.batch_bytes;
    let mut batch: Vec<Out> = Vec::with_capacity(MAX_BATCH_FRAMES);
    loop {
        if rx.recv_many(&mut batch, MAX_BATCH_FRAMES).await == 0 {
            return;
        }
        if batch.len() < COALESCE_BELOW {
            // Few frames ready: let the sessions that were woken with them
            // run first, so frames that arrive in separate wake-ups still
            // leave in one write (one system call instead of one per
            // client frame, at the cost of one scheduler round).
            tokio::task::yield_now().await;
            while batch.len() < MAX_BATCH_FRAMES {
                match rx.try_recv() {
                    Ok(out) => batch.push(out),
                    Err(_) => break,
                }
            }
        }
        let mut i = 0;
        while i < batch.len() {
            let ok = match &batch[i] {
                Out::Pong => {
                    i += 1;
                    write_pong(&mut wr, conn, false).await
                }
                Out::MuxPong => {
                    i += 1;
                    write_pong(&mut wr, conn, true).await
                }
                Out::Close(code, reason) => {
                    let p = wire::close_payload(*code, reason);
                    let h = encode_header(true, Opcode::Close, p.len(), Some(ZERO_KEY));
                    let _ = write_all(&mut wr, &mut [IoSlice::new(h.as_slice()), IoSlice::new(&p)])
                        .await;
                    let _ = wr.flush().await;
                    return;
                }
                Out::Frame { .. } => {
                    let (end, total) = frames_that_fit(&batch, i, batch_bytes);
                    let h = encode_header(true, Opcode::Binary, total, Some(ZERO_KEY));
                    let mut slices = Vec::with_capacity(1 + 2 * (end - i));
                    slices.push(IoSlice::new(h.as_slice()));
                    for out in &batch[i..end] {
                        if let Out::Frame { header, body, .. } = out {
                            slices.push(IoSlice::new(header));
                            if !body.is_empty() {
                                slices.push(IoSlice::new(body));
                            }
                        }
                    }
                    conn.metrics.batch_frames.observe((end - i) as f64);
                    i = end;
                    write_all(&mut wr, &mut slices).await
                }
            };
            if !ok {
                return;
            }
        }
        if wr.flush().await.is_err() {
            return;
        }
        // Drops the permits: the bytes are out, sessions may queue more.
        batch.clear();
    }
}

/// Write the pong waiting in the connection's slot (`mux`: a mux PONG in
/// a binary message, else a WebSocket pong); nothing if an earlier marker
/// already took it. False if the write failed.
async fn write_pong(wr: &mut WriteHalf<Io>, conn: &Conn, mux: bool) -> bool {
    let Some(p) = conn.take_pong(mux) else {
        return true;
    };
    if !mux {
        let h = encode_header(true, Opcode::Pong, p.len(), Some(ZERO_KEY));
        return write_all(wr, &mut [IoSlice::new(h.as_slice()), IoSlice::new(&p)]).await;
    }
    let f = Frame::pong(p);
    let fh = f.header();
    let h = encode_header(
        true,
        Opcode::Binary,
        fh.len() + f.body.len(),
        Some(ZERO_KEY),
    );
    let mut s = [
        IoSlice::new(h.as_slice()),
        IoSlice::new(&fh),
        IoSlice::new(&f.body),
    ];
    write_all(wr, &mut s).await
}

/// Frames from `start` that go into one message: `(end, payload bytes)`.
/// At least one; further ones while the total stays within `limit`.
fn frames_that_fit(batch: &[Out], start: usize, limit: usize) -> (usize, usize) {
    let mut total = 0;
    let mut end = start;
    for out in &batch[start..] {
        let Out::Frame { body, .. } = out else {
            break;
        };
        let n = HEADER_LEN + body.len();
        if end > start && total + n > limit {
            break;
        }
        total += n;
        end += 1;
    }
    (end, total)
}

async fn write_all<W: AsyncWrite + Unpin>(wr: &mut W, mut slices: &mut [IoSlice<'_>]) -> bool {
    while !slices.is_empty() {
        match wr.write_vectored(slices).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
        }
    }
    true
}
