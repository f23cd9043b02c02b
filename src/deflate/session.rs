//! The relay of an edge-compressed session: the client speaks
//! permessage-deflate with the gateway, the upstream plain WebSocket.
//!
//! Unlike the zero-copy relay this path must look inside payloads, so it
//! decodes frames: client frames are unmasked and, when RSV1 says so,
//! inflated — checked against the route's message limit after every step,
//! so a zip bomb ends with 1009 after at most the limit's bytes of output —
//! and sent upstream as masked frames; upstream messages are compressed
//! (unless shorter than `min_size`) and sent to the client with RSV1.
//! Messages stream piece by piece (at most [`CHUNK`] of input at a time);
//! no message is held whole. Control frames pass through re-framed.
//!
//! Kept apart from `relay` so sessions without edge compression keep the
//! byte relay unchanged. Not (yet) here: the relay's keepalive pings,
//! idle timeout and token expiry; drain and the close timeout are.

use super::codec::{Deflater, Inflater, TAIL};
use super::edge::{EdgeConfig, Reservation, MIN_ZLIB_BITS};
use super::params::{Params, WindowBits, MAX_WINDOW_BITS};
use crate::frame::{
    check_header, parse_close, parse_header, write_frame, Limits, Opcode, Violation, MAX_HEADER,
    RSV1,
};
use crate::io::Io;
use crate::metrics::RouteMetrics;
use crate::relay::Settings;
use std::io::Cursor;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, WriteHalf};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Input taken per step: bounds what one piece of a message holds.
pub const CHUNK: usize = 16 * 1024;

/// Read buffer per direction: headers and small frames in one read.
const READ_BUF: usize = 512;

/// One side's write half, shared by the direction that sends to it and by
/// the gateway's own Closes.
type Writer = Arc<Mutex<Out>>;

struct Out {
    w: WriteHalf<Io>,
    /// A Close went to this peer: nothing may follow it (RFC 6455 §5.5.1).
    closed: bool,
}

impl Out {
    /// Write one whole frame unless a Close went before it.
    async fn frame(&mut self, bytes: &[u8], is_close: bool) -> Result<(), End> {
        if self.closed {
            return Ok(());
        }
        self.closed = is_close;
        self.w.write_all(bytes).await.map_err(|_| End::Gone)?;
        self.w.flush().await.map_err(|_| End::Gone)
    }
}

/// Why one direction stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A Close was forwarded.
    Closed,
    /// The peer's stream ended without a Close, or a write failed.
    Gone,
    /// The peer broke a rule: it is closed with the violation's code.
    Broke(Violation),
    /// The client's compressed data did not inflate (1007).
    BadData,
}

/// Everything an edge session needs besides its sockets.
pub struct EdgeSession {
    pub params: Params,
    pub config: Arc<EdgeConfig>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<RouteMetrics>,
    /// Held for the session's life: its share of `limits.deflate_memory`.
    pub reservation: Reservation,
}

impl EdgeSession {
    /// Relay until both sides closed, one broke the protocol or left, or
    /// the gateway drains.
    pub async fn run(
        self,
        (client, upstream): (Io, Io),
        (from_client, from_upstream): (Vec<u8>, Vec<u8>),
        draining: CancellationToken,
    ) {
        self.metrics.active.inc();
        let started = tokio::time::Instant::now();
        let (cr, cw) = tokio::io::split(client);
        let (ur, uw) = tokio::io::split(upstream);
        let out = |w| Arc::new(Mutex::new(Out { w, closed: false }));
        let (cw, uw): (Writer, Writer) = (out(cw), out(uw));
        let client_bits = match self.params.client_max_window_bits {
            Some(WindowBits::Bits(b)) => b.max(MIN_ZLIB_BITS),
            _ => MAX_WINDOW_BITS,
        };
        let mut inflater = Inflater::new(client_bits, !self.params.client_no_context_takeover);
        let mut deflater = Deflater::new(
            self.config.level,
            self.params
                .server_max_window_bits
                .unwrap_or(MAX_WINDOW_BITS),
            !self.params.server_no_context_takeover,
        );
        let c2u = client_to_upstream(
            BufReader::with_capacity(READ_BUF, Cursor::new(from_client).chain(cr)),
            &uw,
            &mut inflater,
            &self,
        );
        let u2c = upstream_to_client(
            BufReader::with_capacity(READ_BUF, Cursor::new(from_upstream).chain(ur)),
            &cw,
            &mut deflater,
            &self,
        );
        tokio::pin!(c2u, u2c);
        let close_timeout = self.settings.close_timeout;
        let ended = tokio::select! {
            // Client side ended first: close the upstream accordingly.
            e = &mut c2u => Some((true, e)),
            // Upstream side ended first.
            e = &mut u2c => Some((false, e)),
            // Drain: both sides hear 1001.
            _ = draining.cancelled() => None,
        };
        match ended {
            Some((from_client, end)) => {
                let (broke, other) = if from_client { (&cw, &uw) } else { (&uw, &cw) };
                self.after_end(from_client, end, broke, other).await;
                let rest = async {
                    if from_client {
                        (&mut u2c).await
                    } else {
                        (&mut c2u).await
                    }
                };
                let _ = tokio::time::timeout(close_timeout, rest).await;
            }
            None => {
                send_close(&cw, false, 1001, "going away").await;
                send_close(&uw, true, 1001, "going away").await;
                let both = async { tokio::join!(&mut c2u, &mut u2c) };
                let _ = tokio::time::timeout(close_timeout, both).await;
            }
        }
        for w in [&cw, &uw] {
            let _ = w.lock().await.w.shutdown().await;
        }
        self.metrics.active.dec();
        self.metrics
            .session
            .observe(started.elapsed().as_secs_f64());
    }

    /// One direction ended: tell the side(s) that still listen.
    async fn after_end(&self, from_client: bool, end: End, src: &Writer, dst: &Writer) {
        let (code, reason) = match end {
            End::Closed => return,
            End::Gone if from_client => (1001, "client went away"),
            End::Gone => (1014, "upstream went away"),
            End::BadData => (1007, "invalid compressed data"),
            End::Broke(v) => (v.close_code(), v.reason()),
        };
        if matches!(end, End::Broke(_) | End::BadData) {
            // The sender broke the rules: it hears why.
            send_close(src, !from_client, code, reason).await;
            self.metrics.close("gateway", Some(code));
        }
        let (code, reason) = match (end, from_client) {
            (End::Gone, _) => (code, reason),
            (_, true) => (1001, "client protocol error"),
            (_, false) => (1014, "upstream protocol error"),
        };
        send_close(dst, from_client, code, reason).await;
    }
}

/// A Close of the gateway's own; `masked` towards the upstream.
async fn send_close(w: &Writer, masked: bool, code: u16, reason: &str) {
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
struct Emitter<'a> {
    w: &'a Writer,
    masked: bool,
    opcode: Opcode,
    rsv1: bool,
    started: bool,
    held: Option<Vec<u8>>,
    /// Bytes written as payload (for the metrics).
    bytes: u64,
}

impl<'a> Emitter<'a> {
    fn new(w: &'a Writer, masked: bool, opcode: Opcode, rsv1: bool) -> Self {
        Emitter {
            w,
            masked,
            opcode,
            rsv1,
            started: false,
            held: None,
            bytes: 0,
        }
    }

    async fn push(&mut self, piece: Vec<u8>) -> Result<(), End> {
        if piece.is_empty() {
            return Ok(());
        }
        if let Some(prev) = self.held.replace(piece) {
            self.write(false, &prev).await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<u64, End> {
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
        self.w.lock().await.frame(&out, false).await
    }
}

/// A frame header as read: the parsed header.
async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<crate::frame::Header, End> {
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

/// Read `n` payload bytes (at most [`CHUNK`]), unmasked with `mask` from
/// payload offset `at`.
async fn read_piece<R: AsyncRead + Unpin>(
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
async fn control<R: AsyncRead + Unpin>(
    r: &mut R,
    h: &crate::frame::Header,
    op: Opcode,
    dst: &Writer,
    to_upstream: bool,
) -> Result<bool, End> {
    let mask = h.masked.then_some(h.mask);
    let payload = read_piece(r, h.len as usize, mask, 0).await?;
    if op == Opcode::Close {
        parse_close(&payload).map_err(End::Broke)?;
    }
    let mut out = Vec::with_capacity(MAX_HEADER + payload.len());
    let key = to_upstream.then(rand::random::<[u8; 4]>);
    write_frame(&mut out, true, op, &[&payload], key);
    dst.lock().await.frame(&out, op == Opcode::Close).await?;
    Ok(op == Opcode::Close)
}

/// Client frames: unmask, inflate compressed messages within the limit,
/// send upstream masked.
async fn client_to_upstream<R: AsyncRead + Unpin>(
    mut r: R,
    uw: &Writer,
    inflater: &mut Inflater,
    s: &EdgeSession,
) -> End {
    match client_frames(&mut r, uw, inflater, s).await {
        Ok(()) => End::Closed,
        Err(e) => e,
    }
}

async fn client_frames<R: AsyncRead + Unpin>(
    r: &mut R,
    uw: &Writer,
    inflater: &mut Inflater,
    s: &EdgeSession,
) -> Result<(), End> {
    let limits: Limits = s.settings.client_limits;
    loop {
        let h = read_header(r).await?;
        let op = check_header(&h, true, false, true).map_err(End::Broke)?;
        if op.is_control() {
            if control(r, &h, op, uw, true).await? {
                return Ok(());
            }
            continue;
        }
        // A new data message: its frames follow, controls may interleave.
        let compressed = h.rsv & RSV1 != 0;
        let mut out = Emitter::new(uw, true, op, false);
        let (mut wire, mut plain) = (0u64, 0u64);
        let mut h = h;
        loop {
            limits.check(h.len, wire).map_err(End::Broke)?;
            let mut at = 0u64;
            while at < h.len {
                let n = (h.len - at).min(CHUNK as u64) as usize;
                let piece = read_piece(r, n, Some(h.mask), at).await?;
                at += n as u64;
                if compressed {
                    inflate_into(inflater, &piece, &mut out, &mut plain, limits.max_message)
                        .await?;
                } else {
                    plain += n as u64;
                    out.push(piece).await?;
                }
            }
            wire += h.len;
            if h.fin {
                break;
            }
            // Next frame of this message, with controls in between.
            h = loop {
                let next = read_header(r).await?;
                let op = check_header(&next, true, true, true).map_err(End::Broke)?;
                if !op.is_control() {
                    break next;
                }
                if control(r, &next, op, uw, true).await? {
                    return Ok(());
                }
            };
        }
        if compressed {
            inflate_into(inflater, &TAIL, &mut out, &mut plain, limits.max_message).await?;
            inflater.end_message();
            s.metrics.deflate_edge_bytes[0].inc_by(wire);
            s.metrics.deflate_edge_bytes[1].inc_by(plain);
        }
        out.finish().await?;
        s.metrics.messages_c2u.inc();
        s.metrics.bytes_c2u.inc_by(plain);
    }
}

/// Inflate `input` step by step, each step's output pushed as a piece;
/// the message's inflated size is checked after every step.
async fn inflate_into(
    inflater: &mut Inflater,
    input: &[u8],
    out: &mut Emitter<'_>,
    plain: &mut u64,
    max_message: u64,
) -> Result<(), End> {
    let mut at = 0;
    loop {
        let mut piece = Vec::with_capacity(CHUNK);
        at += inflater
            .step(&input[at..], &mut piece)
            .map_err(|_| End::BadData)?;
        let full = piece.len() == piece.capacity();
        *plain += piece.len() as u64;
        if *plain > max_message {
            return Err(End::Broke(Violation::TooBig));
        }
        if !piece.is_empty() {
            out.push(piece).await?;
        }
        if at == input.len() && !full {
            return Ok(());
        }
    }
}

/// Upstream frames: compress each data message (unless small), send to
/// the client with RSV1 on its first frame.
async fn upstream_to_client<R: AsyncRead + Unpin>(
    mut r: R,
    cw: &Writer,
    deflater: &mut Deflater,
    s: &EdgeSession,
) -> End {
    match upstream_frames(&mut r, cw, deflater, s).await {
        Ok(()) => End::Closed,
        Err(e) => e,
    }
}

async fn upstream_frames<R: AsyncRead + Unpin>(
    r: &mut R,
    cw: &Writer,
    deflater: &mut Deflater,
    s: &EdgeSession,
) -> Result<(), End> {
    let limits: Limits = s.settings.upstream_limits;
    loop {
        let h = read_header(r).await?;
        let op = check_header(&h, false, false, false).map_err(End::Broke)?;
        if op.is_control() {
            if control(r, &h, op, cw, false).await? {
                return Ok(());
            }
            continue;
        }
        let compress = !(h.fin && h.len < s.config.min_size);
        let mut out = Emitter::new(cw, false, op, compress);
        let mut plain = 0u64;
        let mut h = h;
        loop {
            limits.check(h.len, plain).map_err(End::Broke)?;
            let mut at = 0u64;
            loop {
                let n = (h.len - at).min(CHUNK as u64) as usize;
                let piece = read_piece(r, n, None, at).await?;
                at += n as u64;
                let last = h.fin && at == h.len;
                out.push(if compress {
                    deflater.piece(&piece, last)
                } else {
                    piece
                })
                .await?;
                if at == h.len {
                    break;
                }
            }
            plain += h.len;
            if h.fin {
                break;
            }
            h = loop {
                let next = read_header(r).await?;
                let op = check_header(&next, false, true, false).map_err(End::Broke)?;
                if !op.is_control() {
                    break next;
                }
                if control(r, &next, op, cw, false).await? {
                    return Ok(());
                }
            };
        }
        let sent = out.finish().await?;
        if compress {
            s.metrics.deflate_edge_bytes[2].inc_by(plain);
            s.metrics.deflate_edge_bytes[3].inc_by(sent);
        }
        s.metrics.messages_u2c.inc();
        s.metrics.bytes_u2c.inc_by(plain);
    }
}

/// Edge compression's answer for a client: `Some((params, reservation))`
/// when the route compresses at the edge, the client offered something
/// the gateway can honour and the memory budget has room.
pub fn negotiate(
    config: &EdgeConfig,
    offers: &[Params],
    budget: &Arc<super::Budget>,
    metrics: &RouteMetrics,
) -> Option<(Params, Reservation)> {
    let params = config.answer(offers)?;
    match budget.reserve(super::edge::session_memory(&params)) {
        Some(r) => {
            metrics.deflate_edge.inc();
            Some((params, r))
        }
        None => {
            metrics.deflate_declined.inc();
            None
        }
    }
}
