//! The batching writer of a mux connection: whatever frames of any
//! sessions are queued go out as one WebSocket message (up to
//! `mux.batch_bytes`) in one vectored write — header, then each frame's
//! header and payload slice, none of them copied. Pongs are taken from
//! the connection's coalescing slots when their marker comes up.
//!
//! While a write waits for the application to read, the writer keeps
//! taking what sessions queue into `waiting`, small payloads copied
//! ([`crate::mux::detach`]): a frame left in the channel would keep the
//! client read arena it is a slice of alive. Only the frames of the batch
//! being written (≤ `MAX_BATCH_FRAMES`) stay slices.

use super::{Conn, Out};
use crate::frame::{encode_header, Opcode};
use crate::io::Io;
use crate::mux::detach;
use crate::mux::wire::{self, ZERO_KEY};
use std::collections::VecDeque;
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
    // Taken from the channel while a write was blocked; they go first.
    let mut waiting: VecDeque<Out> = VecDeque::new();
    loop {
        if !waiting.is_empty() {
            let n = waiting.len().min(MAX_BATCH_FRAMES);
            batch.extend(waiting.drain(..n));
        } else if rx.recv_many(&mut batch, MAX_BATCH_FRAMES).await == 0 {
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
                Out::Pong | Out::MuxPong => {
                    let mux = matches!(batch[i], Out::MuxPong);
                    i += 1;
                    write_pong(&mut wr, conn, mux, &mut rx, &mut waiting).await
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
                    write_taking(&mut wr, &mut slices, &mut rx, &mut waiting).await
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
async fn write_pong(
    wr: &mut WriteHalf<Io>,
    conn: &Conn,
    mux: bool,
    rx: &mut UnboundedReceiver<Out>,
    waiting: &mut VecDeque<Out>,
) -> bool {
    let Some(p) = conn.take_pong(mux) else {
        return true;
    };
    if !mux {
        let h = encode_header(true, Opcode::Pong, p.len(), Some(ZERO_KEY));
        let mut s = [IoSlice::new(h.as_slice()), IoSlice::new(&p)];
        return write_taking(wr, &mut s, rx, waiting).await;
    }
    let f = Frame::pong(p);
    let fh = f.header();
    let len = fh.len() + f.body.len();
    let h = encode_header(true, Opcode::Binary, len, Some(ZERO_KEY));
    let mut s = [
        IoSlice::new(h.as_slice()),
        IoSlice::new(&fh),
        IoSlice::new(&f.body),
    ];
    write_taking(wr, &mut s, rx, waiting).await
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

/// [`write_all`], and while it waits for the application to read, move
/// what sessions queue meanwhile out of the channel into `waiting`, small
/// payloads copied. A write that completes at once never takes anything.
async fn write_taking<W: AsyncWrite + Unpin>(
    wr: &mut W,
    slices: &mut [IoSlice<'_>],
    rx: &mut UnboundedReceiver<Out>,
    waiting: &mut VecDeque<Out>,
) -> bool {
    let write = write_all(wr, slices);
    tokio::pin!(write);
    loop {
        tokio::select! {
            biased;
            // The write finished (or failed): the normal way out.
            ok = &mut write => return ok,
            // Polled only while the write is pending. A closed channel
            // disables this arm; the write still ends the loop.
            Some(out) = rx.recv() => waiting.push_back(match out {
                Out::Frame { header, body, permit } => Out::Frame {
                    header,
                    body: detach(body),
                    permit,
                },
                other => other,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;
    use tokio::sync::mpsc;

    /// Two frames cut from one 256 KiB read buffer: 10 bytes and
    /// `COPY_QUEUED_BELOW` bytes.
    fn queued(tx: &mpsc::UnboundedSender<Out>, buffer: &Bytes) {
        for end in [10, crate::mux::COPY_QUEUED_BELOW] {
            let out = Out::Frame {
                header: [0; HEADER_LEN],
                body: buffer.slice(0..end),
                permit: None,
            };
            assert!(tx.send(out).is_ok(), "the receiver is alive");
        }
    }

    fn body_start(out: &Out) -> *const u8 {
        match out {
            Out::Frame { body, .. } => body.as_ptr(),
            _ => unreachable!("only frames were queued"),
        }
    }

    /// While the application does not read, what sessions queue leaves
    /// the channel: the small payload in its own allocation (the read
    /// buffer is no longer held by it), the large one as it was.
    #[tokio::test]
    async fn a_blocked_write_takes_queued_frames_and_copies_small_ones() {
        let (mut app, mut gw) = tokio::io::duplex(64);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let buffer = Bytes::from(vec![1u8; 256 * 1024]);
        queued(&tx, &buffer);
        let reader = tokio::spawn(async move {
            // Not reading for a while is what blocks the write.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let mut got = vec![0u8; 4096];
            app.read_exact(&mut got).await.map(|_| got.len())
        });
        let data = vec![0u8; 4096];
        let mut waiting = VecDeque::new();
        let ok = write_taking(&mut gw, &mut [IoSlice::new(&data)], &mut rx, &mut waiting).await;
        assert!(ok);
        assert_eq!(reader.await.ok().and_then(Result::ok), Some(4096));
        assert_eq!(waiting.len(), 2, "both frames taken while blocked");
        assert_ne!(body_start(&waiting[0]), buffer.as_ptr(), "small: copied");
        assert_eq!(body_start(&waiting[1]), buffer.as_ptr(), "large: as it was");
    }

    /// A write that completes at once takes nothing: the fast path copies
    /// no payload.
    #[tokio::test]
    async fn a_write_that_completes_takes_nothing() {
        let (_app, mut gw) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let buffer = Bytes::from(vec![1u8; 256 * 1024]);
        queued(&tx, &buffer);
        let mut waiting = VecDeque::new();
        let data = [0u8; 100];
        let ok = write_taking(&mut gw, &mut [IoSlice::new(&data)], &mut rx, &mut waiting).await;
        assert!(ok);
        assert!(waiting.is_empty());
        assert_eq!(rx.len(), 2);
    }
}
