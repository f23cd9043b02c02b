//! One HTTP/1.1 connection to an upstream endpoint, held as the bare
//! socket: no task, no buffer, nothing but the descriptor (and its TLS
//! session) while it waits in the pool or for a response. The exchange
//! writes the request head itself ([`Conn::send_head`]) and reads the
//! response through the worker's scratch buffer (`response_reader`).
//!
//! Only a silent connection is reused: an upstream that closed a pooled
//! connection, or sent bytes nobody asked for, has it dropped
//! ([`Conn::is_quiet`]), so a stale response can never answer another
//! client's request.

use super::body::Piece;
use crate::io::{write_all_buf, Io};
use bytes::{Buf, Bytes};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// One upstream HTTP/1.1 connection.
pub struct Conn {
    pub io: Io,
    /// Index of its endpoint in the upstream's `endpoints`.
    pub endpoint: usize,
    /// The worker that opened it, whose I/O driver has its socket.
    pub worker: usize,
    /// Taken from the pool (a request may fail on it because the upstream
    /// closed it meanwhile, and is then worth one retry on a new one).
    pub reused: bool,
}

impl Conn {
    pub fn new(io: Io, endpoint: usize) -> Conn {
        Conn {
            io,
            endpoint,
            worker: crate::server::workers::current(),
            reused: false,
        }
    }

    /// Close it now (its request was cancelled or failed, or it is not
    /// reusable). Dropping the socket closes it.
    pub fn discard(self) {}

    /// Nothing is waiting to be read: no EOF, no reset, no stray byte.
    /// An idle keep-alive connection must be silent; anything else means
    /// the upstream closed it or broke the protocol, and it is dropped.
    /// Polled once with a no-op waker: the answer is about now, and no
    /// task is woken for an idle socket later.
    pub fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut rb = ReadBuf::new(&mut byte);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut rb),
            Poll::Pending
        )
    }
}

/// Write the request head and the first body bytes in one (vectored)
/// write, and flush (a TLS upstream buffers inside rustls).
pub async fn send_head<W: AsyncWrite + Unpin>(
    w: &mut W,
    head: Vec<u8>,
    first: Bytes,
) -> std::io::Result<()> {
    // Borrowed, not made a `Bytes` (whose conversion from a `Vec` with
    // spare capacity allocates); one slice is one plain write.
    let mut all = head.as_slice().chain(first);
    write_all_buf(w, &mut all).await?;
    w.flush().await
}

/// A request body the exchange streams itself: what the client side
/// pumps arrives here one piece at a time (a one-slot channel, so the
/// upstream's pace is the client's) and is written in the upstream
/// framing: as it is for a length, re-chunked for a chunked body.
pub async fn forward_body<W: AsyncWrite + Unpin>(
    w: &mut W,
    rx: &mut tokio::sync::mpsc::Receiver<Piece>,
    chunked: bool,
) -> Result<(), super::HttpError> {
    use super::HttpError;
    loop {
        // A closed channel without `End`: the client body failed, and a
        // shorter body must never look complete upstream.
        let piece = rx.recv().await.unwrap_or(Piece::Failed);
        let written = match piece {
            Piece::Data(data) if data.is_empty() => Ok(()),
            Piece::Data(data) if chunked => {
                let size = format!("{:x}\r\n", data.len());
                let mut all = size.as_bytes().chain(data).chain(&b"\r\n"[..]);
                write_all_buf(w, &mut all).await
            }
            Piece::Data(mut data) => write_all_buf(w, &mut data).await,
            Piece::End => {
                if chunked {
                    w.write_all(b"0\r\n\r\n")
                        .await
                        .map_err(|_| HttpError::UpstreamGone)?;
                }
                return w.flush().await.map_err(|_| HttpError::UpstreamGone);
            }
            Piece::Failed => return Err(HttpError::ClientGone),
        };
        written.map_err(|_| HttpError::UpstreamGone)?;
        w.flush().await.map_err(|_| HttpError::UpstreamGone)?;
    }
}

/// The first piece of a streamed body, in the upstream framing, to leave
/// with the request head — so a body refused before its first byte (bad
/// chunk framing) never lets its head reach the application. True: that
/// was the whole body. `None`: the body failed.
pub async fn first_piece(
    pieces: &mut tokio::sync::mpsc::Receiver<Piece>,
    chunked: bool,
) -> Option<(Bytes, bool)> {
    let mut piece = pieces.recv().await?;
    while matches!(&piece, Piece::Data(d) if d.is_empty()) {
        piece = pieces.recv().await?;
    }
    match piece {
        Piece::Data(data) if chunked => {
            let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
            framed.extend_from_slice(&data);
            framed.extend_from_slice(b"\r\n");
            Some((Bytes::from(framed), false))
        }
        Piece::Data(data) => Some((data, false)),
        Piece::End if chunked => Some((Bytes::from_static(b"0\r\n\r\n"), true)),
        Piece::End => Some((Bytes::new(), true)),
        Piece::Failed => None,
    }
}
