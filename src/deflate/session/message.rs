//! One data message through an edge session, either way: its frames read
//! piece by piece (at most [`CHUNK`] of input at a time), each piece
//! carried through the direction's codec — inflated from the client when
//! it came compressed, compressed towards the client unless small — and
//! written out one piece behind, so the last frame can carry FIN. No
//! message is held whole. Its size is checked against the side's limits as
//! it goes: each frame's before its payload is read, the inflated size
//! after every inflate step (a zip bomb ends with 1009 after at most the
//! limit's bytes of output).

use super::direction::next_frame;
use super::frames::{read_piece, Way};
use super::{EdgeSession, End, CHUNK, CLIENT};
use crate::deflate::codec::{Deflater, Inflater, TAIL};
use crate::fanout::SharedFrame;
use crate::frame::{write_frame, Header, Opcode, Violation, MAX_HEADER, RSV1};
use tokio::io::AsyncRead;

/// What a direction does to its messages' payloads.
pub enum Codec<'a> {
    /// From the client: inflate the messages that came compressed (RSV1).
    Inflate(&'a mut Inflater),
    /// From the upstream: compress every message but one of a single frame
    /// shorter than this (`min_size`).
    Deflate(&'a mut Deflater, u64),
}

/// One data message from its first frame `h`, to the other side. Ok(true):
/// a Close came in between (the direction is done).
pub async fn message<R: AsyncRead + Unpin>(
    r: &mut R,
    mut h: Header,
    op: Opcode,
    way: &Way<'_>,
    codec: &mut Codec<'_>,
    s: &EdgeSession,
) -> Result<bool, End> {
    let limits = match way.from {
        CLIENT => s.settings.client_limits,
        _ => s.settings.upstream_limits,
    };
    let mut pieces = Pieces::new(codec, &h, limits.max_message);
    let compressing = pieces.on && matches!(pieces.codec, Codec::Deflate(..));
    let mut out = Emitter::new(*way, op, compressing);
    // Payload bytes as they came, over the message's frames so far.
    let mut wire = 0u64;
    loop {
        limits.check(h.len, wire).map_err(End::Broke)?;
        let mask = h.masked.then_some(h.mask);
        let mut at = 0u64;
        // Once even for an empty frame: a compressor's last piece ends
        // the message.
        loop {
            let n = (h.len - at).min(CHUNK as u64) as usize;
            let piece = read_piece(r, n, mask, at).await?;
            at += n as u64;
            pieces.feed(piece, h.fin && at == h.len);
            while let Some(p) = pieces.next()? {
                out.push(p).await?;
            }
            if at == h.len {
                break;
            }
        }
        wire += h.len;
        if h.fin {
            break;
        }
        // The message's next frame; control frames may come in between.
        match next_frame(r, way, true).await? {
            Some((next, _)) => h = next,
            None => return Ok(true),
        }
    }
    let sent = out.finish().await?;
    let m = &s.metrics;
    if pieces.on {
        // [compressed in, plain out] from the client, [plain in,
        // compressed out] towards it.
        m.deflate_edge_bytes[2 * way.from].inc_by(wire);
        m.deflate_edge_bytes[2 * way.from + 1].inc_by(sent);
    }
    let plain = if way.from == CLIENT { sent } else { wire };
    let (messages, bytes) = match way.from {
        CLIENT => (&m.messages_c2u, &m.bytes_c2u),
        _ => (&m.messages_u2c, &m.bytes_u2c),
    };
    messages.inc();
    bytes.inc_by(plain);
    way.activity.message(way.from, plain);
    Ok(false)
}

/// A published fan-out message to the client, as the upstream's own
/// messages go: through the deflater unless shorter than `min_size` (then
/// its shared frame is written as it is), so the client's compression
/// context stays in step. Called only between the upstream's messages.
pub async fn published(
    frame: &SharedFrame,
    way: &Way<'_>,
    codec: &mut Codec<'_>,
    s: &EdgeSession,
) -> Result<(), End> {
    let payload = frame.payload();
    let op = match frame.wire().first().map(|b| b & 0x0f) {
        Some(0x1) => Opcode::Text,
        _ => Opcode::Binary,
    };
    let h = Header {
        fin: true,
        rsv: 0,
        opcode: op.into(),
        masked: false,
        mask: [0; 4],
        len: payload.len() as u64,
        header_len: 0,
    };
    // The publisher's size rules already applied; nothing to check here.
    let mut pieces = Pieces::new(codec, &h, u64::MAX);
    if pieces.on {
        let mut out = Emitter::new(*way, op, true);
        pieces.feed(payload.to_vec(), true);
        while let Some(p) = pieces.next()? {
            out.push(p).await?;
        }
        let sent = out.finish().await?;
        let m = &s.metrics;
        m.deflate_edge_bytes[2 * way.from].inc_by(payload.len() as u64);
        m.deflate_edge_bytes[2 * way.from + 1].inc_by(sent);
    } else {
        way.send(frame.wire(), false).await?;
    }
    if let Some(feed) = &s.feed {
        feed.hub()
            .metrics
            .latency
            .observe(frame.published().elapsed().as_secs_f64());
    }
    Ok(())
}

/// A message's pieces through the codec: what was fed and is not used up.
struct Pieces<'c, 'a> {
    codec: &'c mut Codec<'a>,
    /// The codec works on this message; else its pieces pass unchanged.
    on: bool,
    /// The message's inflated size may not pass this.
    max: u64,
    input: Vec<u8>,
    /// How much of `input` the inflater took.
    at: usize,
    /// `input` is the message's last piece.
    last: bool,
    /// Output given so far (inflating: checked against `max`).
    out: u64,
    /// `next` has more to give for `input`.
    pending: bool,
}

impl<'c, 'a> Pieces<'c, 'a> {
    fn new(codec: &'c mut Codec<'a>, first: &Header, max: u64) -> Self {
        let on = match codec {
            Codec::Inflate(_) => first.rsv & RSV1 != 0,
            Codec::Deflate(_, min_size) => !(first.fin && first.len < *min_size),
        };
        Pieces {
            codec,
            on,
            max,
            input: Vec::new(),
            at: 0,
            last: false,
            out: 0,
            pending: false,
        }
    }

    fn feed(&mut self, mut input: Vec<u8>, last: bool) {
        if last && self.on && matches!(self.codec, Codec::Inflate(_)) {
            // RFC 7692 §7.2.2: the sender removed it, the inflater needs it.
            input.extend_from_slice(&TAIL);
        }
        (self.input, self.at, self.last, self.pending) = (input, 0, last, true);
    }

    /// The next piece to send (possibly empty), `None` once what was fed
    /// is used up. Inflating, one step at a time: at most [`CHUNK`] of
    /// output each.
    fn next(&mut self) -> Result<Option<Vec<u8>>, End> {
        if !self.pending {
            return Ok(None);
        }
        let piece = match (&mut *self.codec, self.on) {
            (Codec::Inflate(z), true) => {
                let mut piece = Vec::with_capacity(CHUNK);
                self.at += z
                    .step(&self.input[self.at..], &mut piece)
                    .map_err(|_| End::BadData)?;
                // A full piece may have left output inside the inflater.
                let full = piece.len() == piece.capacity();
                self.pending = self.at < self.input.len() || full;
                if !self.pending && self.last {
                    z.end_message();
                }
                piece
            }
            (Codec::Deflate(z, _), true) => {
                self.pending = false;
                z.piece(&self.input, self.last)
            }
            (_, false) => {
                self.pending = false;
                std::mem::take(&mut self.input)
            }
        };
        self.out += piece.len() as u64;
        if self.out > self.max {
            return Err(End::Broke(Violation::TooBig));
        }
        Ok(Some(piece))
    }
}

/// Writes one message as frames, one piece behind: a piece goes out when
/// the next one exists (so the last can carry FIN), the first with the
/// message's opcode (and RSV1 when compressed).
struct Emitter<'a> {
    way: Way<'a>,
    opcode: Opcode,
    rsv1: bool,
    started: bool,
    held: Option<Vec<u8>>,
    /// Bytes written as payload (for the metrics).
    bytes: u64,
}

impl<'a> Emitter<'a> {
    fn new(way: Way<'a>, opcode: Opcode, rsv1: bool) -> Self {
        Emitter {
            way,
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
        write_frame(&mut out, fin, opcode, &[payload], self.way.mask());
        if self.rsv1 && !self.started {
            out[0] |= RSV1;
        }
        self.started = true;
        self.bytes += payload.len() as u64;
        self.way.send(&out, false).await
    }
}
