//! One direction of an edge session, for either side: read the peer's
//! frames, check each header against the rules for that side, pass control
//! frames on re-framed (but keep the pongs that answer the gateway's own
//! pings: the other side never asked for them), and hand each data message
//! to `message`, which carries it through the direction's codec.
//!
//! The two directions differ only in their rules (a client masks and may
//! set RSV1, an upstream may not) and their codec, so one loop serves both.

use super::frames::{read_header, read_piece, Way};
use super::lazy::LazyBuf;
use super::message::{message, published, Codec};
use super::{EdgeSession, End, CLIENT};
use crate::fanout::{Next, SharedFrame, Subscriber};
use crate::frame::{check_header, parse_close, write_frame, Header, Opcode, MAX_HEADER};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::Poll;
use tokio::io::AsyncRead;

/// Carry the peer's frames until its Close went on (`End::Closed`), it
/// left or broke a rule, or the other side cannot be written.
pub async fn run<R: AsyncRead + Unpin>(
    mut r: LazyBuf<R>,
    way: Way<'_>,
    mut codec: Codec<'_>,
    s: &EdgeSession,
) -> End {
    // Published fan-out messages join the stream towards the client
    // between the upstream's messages, never inside one.
    let feed = match way.from {
        CLIENT => None,
        _ => s.feed.as_deref(),
    };
    loop {
        if let Some(frame) = match feed {
            Some(feed) => next_published(&mut r, feed).await,
            None => None,
        } {
            match Box::pin(published(&frame, &way, &mut codec, s)).await {
                Ok(()) => continue,
                Err(e) => return e,
            }
        }
        // Idle sessions wait in here, for a header. What handling a frame
        // needs is boxed (made per frame, gone after it), so the session's
        // future — allocated for its whole life — stays small.
        let (h, op) = match next_frame(&mut r, &way, false).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return End::Closed,
            Err(e) => return e,
        };
        match Box::pin(message(&mut r, h, op, &way, &mut codec, s)).await {
            Ok(false) => {}
            Ok(true) => return End::Closed,
            Err(e) => return e,
        }
    }
}

/// Between the upstream's messages: the oldest published frame waiting,
/// or `None` as soon as the upstream has bytes (or ended) and nothing is
/// published. Waiting here loses no upstream byte (`LazyBuf::poll_fill`).
/// An overflowed subscriber gets nothing more; the session's watcher
/// closes it.
async fn next_published<R: AsyncRead + Unpin>(
    r: &mut LazyBuf<R>,
    feed: &Subscriber,
) -> Option<SharedFrame> {
    std::future::poll_fn(|cx| {
        if let Next::Frame(frame) = feed.next(cx) {
            return Poll::Ready(Some(frame));
        }
        Pin::new(&mut *r).poll_fill(cx).map(|()| None)
    })
    .await
}

/// The next data frame's header (within a message when `in_message`),
/// passing control frames on meanwhile; `None` once a Close went on.
pub async fn next_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    way: &Way<'_>,
    in_message: bool,
) -> Result<Option<(Header, Opcode)>, End> {
    // A client masks its frames and may compress (RSV1); an upstream
    // speaks plain, unmasked WebSocket to the gateway.
    let client = way.from == CLIENT;
    loop {
        let h = read_header(r).await?;
        let op = check_header(&h, client, in_message, client).map_err(End::Broke)?;
        if !op.is_control() {
            return Ok(Some((h, op)));
        }
        if Box::pin(control(r, &h, op, way)).await? {
            return Ok(None);
        }
    }
}

/// A control frame: check a Close, pass it on re-framed; a pong that
/// answers the gateway's own ping stays here. Returns true for a Close
/// (the direction is done).
async fn control<R: AsyncRead + Unpin>(
    r: &mut R,
    h: &Header,
    op: Opcode,
    way: &Way<'_>,
) -> Result<bool, End> {
    let mask = h.masked.then_some(h.mask);
    let payload = read_piece(r, h.len as usize, mask, 0).await?;
    match op {
        Opcode::Close => {
            if let Some((code, _)) = parse_close(&payload).map_err(End::Broke)? {
                way.activity.close[way.from].store(code.into(), Ordering::Relaxed);
            }
        }
        // Its arrival already counted as a sign of life (every read does).
        Opcode::Pong if way.activity.own_pong(&payload) => return Ok(false),
        _ => {}
    }
    let mut out = Vec::with_capacity(MAX_HEADER + payload.len());
    write_frame(&mut out, true, op, &[&payload], way.mask());
    way.send(&out, op == Opcode::Close).await?;
    Ok(op == Opcode::Close)
}
