//! RFC 6455 framing rules, in one place: opcodes, the allocation-free
//! header parser, the checks a header and a Close payload must pass (each
//! failure a [`Violation`] that knows its close code), the size limits, and
//! the header encoder for frames the gateway writes itself.
//!
//! Readers keep their own streaming state — the passthrough relay's scanner
//! (`relay::scan`), the mux leg's client and application readers
//! (`mux::client`, `mux::wire`) — and ask this module what a header means
//! and whether it is allowed, so every reader refuses the same frames with
//! the same code and reason.

mod encode;
mod violation;

pub use encode::{encode_header, write_frame, HeaderBytes};
pub use violation::Violation;

/// Largest frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER: usize = 14;

/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A frame's opcode (RFC 6455 §5.2); the other ten values are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Opcode {
    #[default]
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    /// The opcode of the low four bits of a header's first byte; `None`
    /// for a reserved value.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        match bits {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// Close, Ping and Pong: never fragmented, at most 125 bytes, and
    /// allowed between the frames of a fragmented message.
    pub fn is_control(self) -> bool {
        self as u8 >= 0x8
    }
}

impl From<Opcode> for u8 {
    fn from(op: Opcode) -> u8 {
        op as u8
    }
}

/// A parsed frame header, as the bits say; [`check_header`] says whether
/// they are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// RSV1–3, in place (`0x70` mask of the first byte).
    pub rsv: u8,
    /// The raw four opcode bits (reserved values included).
    pub opcode: u8,
    pub masked: bool,
    /// The masking key; zeros when not masked.
    pub mask: [u8; 4],
    /// Payload length.
    pub len: u64,
    /// Bytes of the header itself (2 to [`MAX_HEADER`]).
    pub header_len: usize,
}

/// Parse a header at the start of `buf`; `None` if more bytes are needed.
/// Reads at most [`MAX_HEADER`] bytes and allocates nothing.
pub fn parse_header(buf: &[u8]) -> Option<Result<Header, Violation>> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            let b = buf.get(2..4)?;
            (u16::from_be_bytes([b[0], b[1]]) as u64, 4)
        }
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                // §5.2: the most significant bit must be 0.
                return Some(Err(Violation::InvalidLength));
            }
            (len, 10)
        }
        n => (n as u64, 2),
    };
    let mut mask = [0; 4];
    if masked {
        mask.copy_from_slice(buf.get(at..at + 4)?);
        at += 4;
    }
    Some(Ok(Header {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70,
        opcode: b0 & 0x0f,
        masked,
        mask,
        len,
        header_len: at,
    }))
}

/// RSV1 of a header's first byte: "compressed" under permessage-deflate.
pub const RSV1: u8 = 0x40;

/// Check a header against RFC 6455 §5.1–5.5: `expect_masked` for frames
/// from a client, `in_message` while a fragmented data message is open,
/// `compressed` when permessage-deflate is negotiated on the session (RSV1
/// is then allowed on the first frame of a data message, RFC 7692 §6).
/// Returns the opcode; sizes are [`Limits::check`]'s business.
pub fn check_header(
    h: &Header,
    expect_masked: bool,
    in_message: bool,
    compressed: bool,
) -> Result<Opcode, Violation> {
    let rsv_ok = if compressed { RSV1 } else { 0 };
    if h.rsv & !rsv_ok != 0 {
        // No extension that would give them a meaning is negotiated.
        return Err(Violation::ReservedBits);
    }
    if h.masked != expect_masked {
        return Err(if expect_masked {
            Violation::ClientUnmasked
        } else {
            Violation::ServerMasked
        });
    }
    let op = Opcode::from_bits(h.opcode).ok_or(Violation::ReservedOpcode)?;
    if h.rsv & RSV1 != 0 && (op.is_control() || op == Opcode::Continuation) {
        // RFC 7692 §6.1: only a message's first frame says "compressed".
        return Err(Violation::MisplacedCompressedBit);
    }
    match op {
        Opcode::Continuation if !in_message => Err(Violation::ContinuationWithoutMessage),
        Opcode::Text | Opcode::Binary if in_message => Err(Violation::MessageInsideMessage),
        _ if !op.is_control() => Ok(op),
        _ if !h.fin => Err(Violation::FragmentedControl),
        _ if h.len > MAX_CONTROL_PAYLOAD => Err(Violation::ControlTooLong),
        // A code is two bytes: one alone is neither empty nor a code.
        Opcode::Close if h.len == 1 => Err(Violation::CloseOneByte),
        _ => Ok(op),
    }
}

/// Size limits on data frames from one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of one frame.
    pub max_frame: u64,
    /// Largest message, all its fragments together.
    pub max_message: u64,
}

impl Limits {
    /// A data frame of `frame_len` bytes that follows `message_so_far`
    /// bytes of the same message.
    pub fn check(self, frame_len: u64, message_so_far: u64) -> Result<(), Violation> {
        if frame_len > self.max_frame || message_so_far.saturating_add(frame_len) > self.max_message
        {
            return Err(Violation::TooBig);
        }
        Ok(())
    }
}

/// Close codes an endpoint may send (RFC 6455 §7.4, IANA registry).
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Check a whole, unmasked Close payload (§5.5.1): `None` when empty, else
/// its code and reason.
pub fn parse_close(payload: &[u8]) -> Result<Option<(u16, &str)>, Violation> {
    let [hi, lo, reason @ ..] = payload else {
        return match payload.len() {
            0 => Ok(None),
            _ => Err(Violation::CloseOneByte),
        };
    };
    let code = u16::from_be_bytes([*hi, *lo]);
    if !close_code_allowed(code) {
        return Err(Violation::InvalidCloseCode);
    }
    let reason = std::str::from_utf8(reason).map_err(|_| Violation::BadCloseReason)?;
    Ok(Some((code, reason)))
}

#[cfg(test)]
mod tests;
