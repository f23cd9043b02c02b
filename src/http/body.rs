//! The client's request body: how long it is (decided from the head, the
//! smuggling checks of `handshake::framing` already passed), and the pump
//! that reads it from the client socket, decodes it (fixed length or
//! chunked) and hands it to the upstream writer chunk by chunk through a
//! one-slot channel — the upstream's pace is the client's pace, nothing is
//! buffered beyond one read.
//!
//! After the body the same reader keeps watching the client, so a client
//! that goes away mid-response (a long-poll, an event stream) is noticed
//! and the upstream request cancelled; bytes of a next (pipelined) request
//! are kept, up to the head limit.

use super::chunked::{ChunkError, Decoder};
use super::HttpError;
use crate::handshake::{has_token, RequestHead};
use crate::io::read_via_scratch;
use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// Bytes asked of the socket per read while a body streams.
const READ_CHUNK: usize = 16 * 1024;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no `Content-Length`, no `Transfer-Encoding`).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

impl Framing {
    /// The request's framing. `handshake::framing` has refused duplicate
    /// or non-numeric lengths and length + encoding; here a transfer
    /// coding other than exactly `chunked`, or one on HTTP/1.0, is refused
    /// too, and a declared length over `max` is a 413 before any byte.
    pub fn of(head: &RequestHead, max: u64) -> Result<Framing, HttpError> {
        let mut codings = head.all("transfer-encoding");
        if let Some(te) = codings.next() {
            let chunked = te.trim().eq_ignore_ascii_case("chunked");
            if !chunked || codings.next().is_some() || head.version == 0 {
                return Err(HttpError::Framing);
            }
            return Ok(Framing::Chunked);
        }
        match head.get("content-length") {
            None => Ok(Framing::Empty),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(0) => Ok(Framing::Empty),
                Ok(n) if n > max => Err(HttpError::BodyTooLarge),
                Ok(n) => Ok(Framing::Length(n)),
                Err(_) => Err(HttpError::Framing),
            },
        }
    }

    pub fn has_body(self) -> bool {
        self != Framing::Empty
    }
}

/// Does the client wait for `100 Continue` before its body? Any other
/// expectation is refused (417).
pub fn expects_continue(head: &RequestHead) -> Result<bool, HttpError> {
    match head.get("expect") {
        None => Ok(false),
        Some(_) if has_token(head, "expect", "100-continue") => Ok(true),
        Some(_) => Err(HttpError::Expectation),
    }
}

/// One item of the body channel.
pub enum Piece {
    Data(Bytes),
    /// The body is complete: only after this does the upstream see its end.
    End,
    Failed,
}

/// The channel between the client side's pump and the upstream writer
/// (`upstream_conn::forward_body`). One slot: the pump reads the client
/// again only once the upstream connection took the previous chunk. A
/// channel that closes without [`Piece::End`] is an error, so a cancelled
/// or failed client body is never forwarded as a complete shorter one.
pub fn channel() -> (mpsc::Sender<Piece>, mpsc::Receiver<Piece>) {
    mpsc::channel(1)
}

/// What the client side of an exchange ended with.
#[derive(Debug)]
pub enum ClientEvent {
    /// The client closed its socket (or it failed).
    Gone,
    /// The body was refused (bad chunking, over the limit, too slow).
    Refused(HttpError),
}

/// Bounds of the client side.
#[derive(Debug, Clone, Copy)]
pub struct ClientLimits {
    pub max_body: u64,
    /// Longest wait for the next body bytes; `None`: no limit.
    pub idle: Option<Duration>,
    /// Bytes of a next request kept while this one is answered.
    pub max_head: usize,
}

/// Pump the body into `tx`, then watch the client until it goes away.
/// Never returns while the client behaves: the caller drops it once the
/// response is complete. `sent` counts body bytes; `body_done` says the
/// body was read to its end (the connection can take another request).
pub async fn client_side<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    framing: Framing,
    tx: Option<mpsc::Sender<Piece>>,
    limits: ClientLimits,
    (sent, body_done): (&mut u64, &mut bool),
) -> ClientEvent {
    if let Some(tx) = tx {
        // Boxed: only an upload pumps, and this future is part of every
        // exchange's, which an idle event stream holds for its life.
        if let Err(e) = Box::pin(pump(reader, buf, framing, tx, limits, sent)).await {
            return e;
        }
    }
    *body_done = true;
    if buf.is_empty() {
        // Give back the body's read buffer while the response is awaited.
        *buf = BytesMut::new();
    }
    watch(reader, buf, limits.max_head).await
}

/// The whole body into `tx`, then its end; a failed body says so.
async fn pump<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    framing: Framing,
    tx: mpsc::Sender<Piece>,
    limits: ClientLimits,
    sent: &mut u64,
) -> Result<(), ClientEvent> {
    let pumped = match framing {
        Framing::Chunked => pump_chunked(reader, buf, &tx, limits, sent).await,
        _ => pump_length(reader, buf, &tx, limits, sent, framing).await,
    };
    match pumped {
        Ok(()) => {
            // The upstream may have answered and gone: fine.
            let _ = tx.send(Piece::End).await;
            Ok(())
        }
        Err(e) => {
            let _ = tx.try_send(Piece::Failed);
            Err(e)
        }
    }
}

/// Read until EOF, keeping what arrives (a pipelined request) up to `max`.
/// Reads go through the worker's scratch buffer: this future lives in
/// every held long-poll and event stream, so it holds no buffer itself.
async fn watch<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> ClientEvent {
    loop {
        if buf.len() >= max {
            // Enough of the next request is here; it is read once this
            // exchange is over.
            return std::future::pending().await;
        }
        match read_via_scratch(reader, buf, max - buf.len()).await {
            Ok(0) | Err(_) => return ClientEvent::Gone,
            Ok(_) => {}
        }
    }
}

/// Read more of the body into `buf`, bounded by the idle timeout.
async fn fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    idle: Option<Duration>,
) -> Result<(), ClientEvent> {
    buf.reserve(READ_CHUNK);
    let read = reader.read_buf(buf);
    let n = match idle {
        Some(limit) => tokio::time::timeout(limit, read)
            .await
            .map_err(|_| ClientEvent::Refused(HttpError::ClientTimeout))?,
        None => read.await,
    };
    match n {
        Ok(0) | Err(_) => Err(ClientEvent::Gone),
        Ok(_) => Ok(()),
    }
}

async fn send(tx: &mpsc::Sender<Piece>, data: Bytes) -> Result<(), ClientEvent> {
    // A closed channel: the upstream request is over (answered early or
    // failed); the exchange decides what follows.
    tx.send(Piece::Data(data))
        .await
        .map_err(|_| ClientEvent::Refused(HttpError::UpstreamGone))
}

async fn pump_length<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    tx: &mpsc::Sender<Piece>,
    limits: ClientLimits,
    sent: &mut u64,
    framing: Framing,
) -> Result<(), ClientEvent> {
    let Framing::Length(mut left) = framing else {
        return Ok(());
    };
    while left > 0 {
        if buf.is_empty() {
            fill(reader, buf, limits.idle).await?;
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        left -= take as u64;
        *sent += take as u64;
        send(tx, buf.split_to(take).freeze()).await?;
    }
    Ok(())
}

async fn pump_chunked<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    tx: &mpsc::Sender<Piece>,
    limits: ClientLimits,
    sent: &mut u64,
) -> Result<(), ClientEvent> {
    let mut decoder = Decoder::default();
    loop {
        let progress = decoder
            .decode(buf)
            .map_err(|e: ChunkError| ClientEvent::Refused(HttpError::Chunked(e)))?;
        let mut used = buf.split_to(progress.consumed);
        if let Some(range) = progress.data {
            let data = used.split_off(range.start);
            *sent += data.len() as u64;
            if *sent > limits.max_body {
                return Err(ClientEvent::Refused(HttpError::BodyTooLarge));
            }
            send(tx, data.freeze()).await?;
        }
        if progress.done {
            return Ok(());
        }
        if progress.consumed == 0 {
            fill(reader, buf, limits.idle).await?;
        }
    }
}
