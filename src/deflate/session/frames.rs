//! Frames on an edge-compressed session: the shared write halves (which
//! tell the timers whether a peer takes our bytes), the emitter that writes
//! a message piece by piece, frame reading with unmasking, control frames
//! passed on re-framed (but for the pongs answering the gateway's own
//! pings), and the gateway's own Close and Ping frames.

use super::duties::{Activity, CLIENT};
use super::End;
use crate::frame::{parse_header, write_frame, Header, Opcode, MAX_HEADER};
use crate::io::Io;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::Mutex;

/// One side's write half, shared by the direction that sends to it and by
/// the gateway's own Closes and pings.
pub type Writer = Arc<Mutex<Out>>;

pub struct Out {
    w: WriteHalf<Io>,
    /// A Close went to this peer: nothing may follow it (RFC 6455 §5.5.1).
    closed: bool,
    /// The peer this writes to, and where to report whether it takes our
    /// bytes (keepalive judges it by that).
    to: usize,
    activity: Arc<Activity>,
}

/// The writer towards side `to`.
pub fn writer(w: WriteHalf<Io>, to: usize, activity: &Arc<Activity>) -> Writer {
    let activity = Arc::clone(activity);
    Arc::new(Mutex::new(Out {
        w,
        closed: false,
        to,
        activity,
    }))
}

impl Out {
    /// Write one whole frame unless a Close went before it.
    pub async fn frame(&mut self, bytes: &[u8], is_close: bool) -> Result<(), End> {
        if self.closed {
            return Ok(());
        }
        self.closed = is_close;
        let (mut at, mut waited) = (0, false);
        let r = std::future::poll_fn(|cx| self.poll_frame(cx, bytes, &mut at, &mut waited)).await;
        self.activity.block(self.to, false);
        r.map_err(|_| End::Gone)
    }

    /// `write_all` and `flush`, noting when the peer makes us wait and
    /// when it takes bytes after a wait (the relay's sign of life of a
    /// slow reader: its pong may be behind what it still has to read).
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
        at: &mut usize,
        waited: &mut bool,
    ) -> Poll<io::Result<()>> {
        while *at < bytes.len() {
            match Pin::new(&mut self.w).poll_write(cx, &bytes[*at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *at += n;
                    self.moved(waited);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return self.wait(waited),
            }
        }
        // TLS: the bytes sit in rustls until flushed.
        match Pin::new(&mut self.w).poll_flush(cx) {
            Poll::Pending => self.wait(waited),
            Poll::Ready(r) => {
                if r.is_ok() {
                    self.moved(waited);
                }
                Poll::Ready(r)
            }
        }
    }

    /// The peer's socket is full: it does not take our bytes now.
    fn wait(&self, waited: &mut bool) -> Poll<io::Result<()>> {
        *waited = true;
        self.activity.block(self.to, true);
        Poll::Pending
    }

    /// Bytes moved; after a wait, that is the peer reading.
    fn moved(&self, waited: &mut bool) {
        if std::mem::take(waited) {
            self.activity.took(self.to);
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.w.shutdown().await;
    }
}

/// A Close of the gateway's own; `masked` towards the upstream.
pub async fn send_close(w: &Writer, masked: bool, code: u16, reason: &str) {
    let mut out = Vec::with_capacity(MAX_HEADER + 2 + reason.len());
    let mask = masked.then(rand::random::<[u8; 4]>);
    write_frame(
        &mut out,
        true,
        Opcode::Close,
        &[&code.to_be_bytes(), reason.as_bytes()],
        mask,
    );
    let _ = w.lock().await.frame(&out, true).await;
}

/// Where a direction's frames go: the other side's writer, the session's
/// activity, and the side they come from.
#[derive(Clone, Copy)]
pub struct Way<'a> {
    pub dst: &'a Writer,
    pub activity: &'a Activity,
    pub from: usize,
}

impl Way<'_> {
    /// Write one frame to the other side; meanwhile the gateway does not
    /// read `from` (keepalive must know: its pong may wait unread).
    pub async fn send(&self, frame: &[u8], is_close: bool) -> Result<(), End> {
        self.activity.pause(self.from, true);
        let r = self.dst.lock().await.frame(frame, is_close).await;
        self.activity.pause(self.from, false);
        r
    }

    /// Frames towards the upstream (from the client) are masked.
    pub fn mask(&self) -> Option<[u8; 4]> {
        (self.from == CLIENT).then(rand::random::<[u8; 4]>)
    }
}

/// A frame header as read: the parsed header.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<Header, End> {
    let mut buf = [0u8; MAX_HEADER];
    let mut have = 2;
    r.read_exact(&mut buf[..2]).await.map_err(|_| End::Gone)?;
    loop {
        match parse_header(&buf[..have]) {
            Some(Ok(h)) => return Ok(h),
            Some(Err(v)) => return Err(End::Broke(v)),
            None => {
                let need = match buf[1] & 0x7f {
                    126 => 4,
                    127 => 10,
                    _ => 2,
                } + if buf[1] & 0x80 != 0 { 4 } else { 0 };
                r.read_exact(&mut buf[have..need])
                    .await
                    .map_err(|_| End::Gone)?;
                have = need;
            }
        }
    }
}

/// Read `n` payload bytes (at most `CHUNK`), unmasked with `mask` from
/// payload offset `at`.
pub async fn read_piece<R: AsyncRead + Unpin>(
    r: &mut R,
    n: usize,
    mask: Option<[u8; 4]>,
    at: u64,
) -> Result<Vec<u8>, End> {
    let mut piece = vec![0u8; n];
    r.read_exact(&mut piece).await.map_err(|_| End::Gone)?;
    if let Some(key) = mask {
        for (i, b) in piece.iter_mut().enumerate() {
            *b ^= key[(at as usize + i) & 3];
        }
    }
    Ok(piece)
}

/// The gateway's keepalive ping, with the session's payload (its pong is
/// known by it), masked towards the upstream.
pub fn ping_frame(masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER + payload.len());
    write_frame(
        &mut out,
        true,
        Opcode::Ping,
        &[payload],
        masked.then(rand::random::<[u8; 4]>),
    );
    out
}
