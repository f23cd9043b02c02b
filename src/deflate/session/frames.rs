//! Frames on an edge-compressed session: the shared write halves, the
//! emitter that writes a message piece by piece, frame reading with
//! unmasking, control frames passed on re-framed, and the gateway's own
//! Close and Ping frames. Moved out of `session` so that file keeps the
//! session's shape (who runs when, how it ends).

use super::duties::Activity;
use super::End;
use crate::frame::{parse_close, parse_header, write_frame, Opcode, MAX_HEADER, RSV1};
use crate::io::Io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, WriteHalf};
use tokio::sync::Mutex;

/// One side's write half, shared by the direction that sends to it and by
/// the gateway's own Closes.
pub type Writer = Arc<Mutex<Out>>;

pub struct Out {
    pub w: WriteHalf<Io>,
    /// A Close went to this peer: nothing may follow it (RFC 6455 §5.5.1).
    pub closed: bool,
}

impl Out {
    /// Write one whole frame unless a Close went before it.
    pub async fn frame(&mut self, bytes: &[u8], is_close: bool) -> Result<(), End> {
        if self.closed {
            return Ok(());
        }
        self.closed = is_close;
        self.w.write_all(bytes).await.map_err(|_| End::Gone)?;
        self.w.flush().await.map_err(|_| End::Gone)
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

/// Writes one message as frames, one piece behind: a piece goes out when
/// the next one exists (so the last can carry FIN), the first with the
/// message's opcode (and RSV1 when compressed).
pub struct Emitter<'a> {
    w: &'a Writer,
    /// The session's activity and the side this message comes from: the
    /// direction is paused while it waits on a write.
    activity: &'a Activity,
    from: usize,
    masked: bool,
    opcode: Opcode,
    rsv1: bool,
    started: bool,
    held: Option<Vec<u8>>,
    /// Bytes written as payload (for the metrics).
    bytes: u64,
}

impl<'a> Emitter<'a> {
    pub fn new(
        (w, activity, from): (&'a Writer, &'a Activity, usize),
        masked: bool,
        opcode: Opcode,
        rsv1: bool,
    ) -> Self {
        Emitter {
            w,
            activity,
            from,
            masked,
            opcode,
            rsv1,
            started: false,
            held: None,
            bytes: 0,
        }
    }

    pub async fn push(&mut self, piece: Vec<u8>) -> Result<(), End> {
        if piece.is_empty() {
            return Ok(());
        }
        if let Some(prev) = self.held.replace(piece) {
            self.write(false, &prev).await?;
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<u64, End> {
        let last = self.held.take().unwrap_or_default();
        self.write(true, &last).await?;
        Ok(self.bytes)
    }

    async fn write(&mut self, fin: bool, payload: &[u8]) -> Result<(), End> {
        let opcode = if self.started {
            Opcode::Continuation
        } else {
            self.opcode
        };
        let mut out = Vec::with_capacity(MAX_HEADER + payload.len());
        let mask = self.masked.then(rand::random::<[u8; 4]>);
        write_frame(&mut out, fin, opcode, &[payload], mask);
        if self.rsv1 && !self.started {
            out[0] |= RSV1;
        }
        self.started = true;
        self.bytes += payload.len() as u64;
        self.activity.pause(self.from, true);
        let r = self.w.lock().await.frame(&out, false).await;
        self.activity.pause(self.from, false);
        r
    }
}

/// A frame header as read: the parsed header.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<crate::frame::Header, End> {
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

/// A control frame: check a Close, pass it on re-framed. Returns true for
/// a Close (the direction is done).
pub async fn control<R: AsyncRead + Unpin>(
    r: &mut R,
    h: &crate::frame::Header,
    op: Opcode,
    (dst, activity, from): (&Writer, &Activity, usize),
) -> Result<bool, End> {
    let mask = h.masked.then_some(h.mask);
    let payload = read_piece(r, h.len as usize, mask, 0).await?;
    if op == Opcode::Close {
        if let Some((code, _)) = parse_close(&payload).map_err(End::Broke)? {
            activity.close[from].store(code.into(), Ordering::Relaxed);
        }
    }
    let mut out = Vec::with_capacity(MAX_HEADER + payload.len());
    // Frames towards the upstream (from the client) are masked.
    let key = (from == super::duties::CLIENT).then(rand::random::<[u8; 4]>);
    write_frame(&mut out, true, op, &[&payload], key);
    activity.pause(from, true);
    let r = dst.lock().await.frame(&out, op == Opcode::Close).await;
    activity.pause(from, false);
    r?;
    Ok(op == Opcode::Close)
}

/// The gateway's keepalive ping (empty), masked towards the upstream.
pub fn ping_frame(masked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER);
    write_frame(
        &mut out,
        true,
        Opcode::Ping,
        &[],
        masked.then(rand::random::<[u8; 4]>),
    );
    out
}
