//! The wire format of `tidegate.mux.v1` (docs/mux-protocol.md §2).
//!
//! A WebSocket binary message carries one or more frames, each a 10-byte
//! header (type, flags, session id, body length) and a body. Decoding
//! slices bodies out of the message's `Bytes` without copying; encoding
//! gives the header separately so a writer can send header and payload as
//! one vectored write.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// The sub-protocol a mux connection is negotiated with.
pub const SUBPROTOCOL: &str = "tidegate.mux.v1";

/// Bytes of every frame header.
pub const HEADER_LEN: usize = 10;

/// Largest PING / PONG body, and largest CLOSE body.
pub const MAX_CONTROL_BODY: usize = 125;

/// OPEN: the session existed on another connection.
pub const FLAG_RESUMED: u8 = 0x01;
/// MESSAGE: last fragment of a message.
pub const FLAG_FIN: u8 = 0x01;
/// MESSAGE: the kind bits.
pub const KIND_MASK: u8 = 0x06;
/// MESSAGE kind: a continuation fragment.
pub const KIND_CONTINUATION: u8 = 0x00;
/// MESSAGE kind: first fragment of a text message.
pub const KIND_TEXT: u8 = 0x02;
/// MESSAGE kind: first fragment of a binary message.
pub const KIND_BINARY: u8 = 0x04;

/// Frame types (§2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    Open = 0x01,
    Accept = 0x02,
    Reject = 0x03,
    Message = 0x04,
    Close = 0x05,
    Ping = 0x06,
    Pong = 0x07,
    Goaway = 0x08,
    /// Extension `fanout` (§10): subscribe a session to a channel.
    Subscribe = 0x09,
    /// Extension `fanout`: unsubscribe a session from a channel.
    Unsubscribe = 0x0A,
    /// Extension `fanout`: publish one message to a channel.
    Publish = 0x0B,
}

impl FrameType {
    pub fn from_u8(b: u8) -> Option<FrameType> {
        Some(match b {
            0x01 => FrameType::Open,
            0x02 => FrameType::Accept,
            0x03 => FrameType::Reject,
            0x04 => FrameType::Message,
            0x05 => FrameType::Close,
            0x06 => FrameType::Ping,
            0x07 => FrameType::Pong,
            0x08 => FrameType::Goaway,
            0x09 => FrameType::Subscribe,
            0x0A => FrameType::Unsubscribe,
            0x0B => FrameType::Publish,
            _ => return None,
        })
    }

    /// PING, PONG and GOAWAY concern the connection (session id 0).
    pub fn is_connection_level(self) -> bool {
        matches!(self, FrameType::Ping | FrameType::Pong | FrameType::Goaway)
    }

    /// Does this type belong to the `fanout` extension (§10)? Such frames
    /// are valid only on a connection that negotiated it.
    pub fn is_fanout(self) -> bool {
        matches!(
            self,
            FrameType::Subscribe | FrameType::Unsubscribe | FrameType::Publish
        )
    }

    /// May the gateway send this type?
    pub fn from_gateway(self) -> bool {
        !matches!(
            self,
            FrameType::Accept | FrameType::Reject | FrameType::Goaway
        ) && !self.is_fanout()
    }

    /// May the application send this type?
    pub fn from_app(self) -> bool {
        self != FrameType::Open
    }

    fn allowed_flags(self) -> u8 {
        match self {
            FrameType::Open => FLAG_RESUMED,
            FrameType::Message => FLAG_FIN | KIND_MASK,
            FrameType::Publish => KIND_MASK,
            _ => 0,
        }
    }

    /// Which session ids the type may carry: connection-level types only 0,
    /// PUBLISH any (0 = no "except" session), the others only non-zero.
    fn session_allowed(self, session: u32) -> bool {
        match self {
            FrameType::Publish => true,
            _ => self.is_connection_level() == (session == 0),
        }
    }
}

/// Why bytes are not a valid mux frame (§7). `label()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("text WebSocket message on a mux connection")]
    TextMessage,
    #[error("message ends inside a mux frame")]
    Truncated,
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    #[error("undefined flag bits {flags:#04x} on {kind:?}")]
    BadFlags { kind: FrameType, flags: u8 },
    #[error("session id {session} not allowed on {kind:?}")]
    BadSession { kind: FrameType, session: u32 },
    #[error("{0:?} sent in the wrong direction")]
    WrongDirection(FrameType),
    #[error("{kind:?} body of {len} bytes is over the limit")]
    TooBig { kind: FrameType, len: u32 },
    #[error("bad JSON body on {kind:?}: {why}")]
    BadJson { kind: FrameType, why: String },
    #[error("bad CLOSE body: {0}")]
    BadClose(&'static str),
    #[error("bad PUBLISH body: {0}")]
    BadPublish(&'static str),
}

impl CodecError {
    /// Every value [`CodecError::label`] returns, so a metric family can
    /// show each at 0 before the first error.
    pub const LABELS: &'static [&'static str] = &[
        "text_message",
        "truncated",
        "unknown_type",
        "bad_flags",
        "bad_session",
        "wrong_direction",
        "too_big",
        "bad_json",
        "bad_close",
        "bad_publish",
    ];

    /// Bounded metric label.
    pub fn label(&self) -> &'static str {
        match self {
            CodecError::TextMessage => "text_message",
            CodecError::Truncated => "truncated",
            CodecError::UnknownType(_) => "unknown_type",
            CodecError::BadFlags { .. } => "bad_flags",
            CodecError::BadSession { .. } => "bad_session",
            CodecError::WrongDirection(_) => "wrong_direction",
            CodecError::TooBig { .. } => "too_big",
            CodecError::BadJson { .. } => "bad_json",
            CodecError::BadClose(_) => "bad_close",
            CodecError::BadPublish(_) => "bad_publish",
        }
    }
}

/// One decoded frame; `body` shares the message's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameType,
    pub flags: u8,
    pub session: u32,
    pub body: Bytes,
}

/// The 10-byte header of a frame with a body of `len` bytes.
pub fn header(kind: FrameType, flags: u8, session: u32, len: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = kind as u8;
    h[1] = flags;
    h[2..6].copy_from_slice(&session.to_be_bytes());
    h[6..10].copy_from_slice(&len.to_be_bytes());
    h
}

impl Frame {
    pub fn new(kind: FrameType, flags: u8, session: u32, body: impl Into<Bytes>) -> Frame {
        Frame {
            kind,
            flags,
            session,
            body: body.into(),
        }
    }

    pub fn open(session: u32, resumed: bool, body: &OpenBody) -> Frame {
        let flags = if resumed { FLAG_RESUMED } else { 0 };
        Frame::new(FrameType::Open, flags, session, json(body))
    }

    pub fn accept(session: u32, body: &AcceptBody) -> Frame {
        Frame::new(FrameType::Accept, 0, session, json(body))
    }

    pub fn reject(session: u32, body: &RejectBody) -> Frame {
        Frame::new(FrameType::Reject, 0, session, json(body))
    }

    /// `kind`: `KIND_TEXT`, `KIND_BINARY` or `KIND_CONTINUATION`.
    pub fn message(session: u32, kind: u8, fin: bool, payload: impl Into<Bytes>) -> Frame {
        let flags = (kind & KIND_MASK) | if fin { FLAG_FIN } else { 0 };
        Frame::new(FrameType::Message, flags, session, payload)
    }

    pub fn close(session: u32, close: &Close) -> Frame {
        Frame::new(FrameType::Close, 0, session, close.encode())
    }

    pub fn ping(body: impl Into<Bytes>) -> Frame {
        Frame::new(FrameType::Ping, 0, 0, body)
    }

    pub fn pong(body: impl Into<Bytes>) -> Frame {
        Frame::new(FrameType::Pong, 0, 0, body)
    }

    pub fn goaway(reason: &str) -> Frame {
        let body = if reason.is_empty() {
            Bytes::new()
        } else {
            json(&GoawayBody {
                reason: reason.to_string(),
            })
        };
        Frame::new(FrameType::Goaway, 0, 0, body)
    }

    /// This frame's header.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let len = u32::try_from(self.body.len()).expect("mux frame bodies are below 4 GiB");
        header(self.kind, self.flags, self.session, len)
    }

    /// Bytes on the wire (header + body), appended to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(HEADER_LEN + self.body.len());
        out.put_slice(&self.header());
        out.put_slice(&self.body);
    }

    /// MESSAGE: the FIN bit.
    pub fn fin(&self) -> bool {
        self.flags & FLAG_FIN != 0
    }

    /// MESSAGE: `KIND_TEXT`, `KIND_BINARY` or `KIND_CONTINUATION`.
    pub fn message_kind(&self) -> u8 {
        self.flags & KIND_MASK
    }

    /// OPEN: the RESUMED flag.
    pub fn resumed(&self) -> bool {
        self.kind == FrameType::Open && self.flags & FLAG_RESUMED != 0
    }

    /// Parse a JSON body (OPEN / ACCEPT / REJECT / GOAWAY); an empty body
    /// reads as `{}`.
    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, CodecError> {
        let body: &[u8] = if self.body.is_empty() {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(body).map_err(|e| CodecError::BadJson {
            kind: self.kind,
            why: e.to_string(),
        })
    }
}

fn json<T: Serialize>(value: &T) -> Bytes {
    serde_json::to_vec(value)
        .expect("mux bodies are plain structs of strings and numbers")
        .into()
}

/// Check a frame header on its own (two-step parse: this allocates nothing).
fn check(
    kind: FrameType,
    flags: u8,
    session: u32,
    len: u32,
    max_body: u32,
) -> Result<(), CodecError> {
    let kind_bits = flags & KIND_MASK;
    if flags & !kind.allowed_flags() != 0
        || (kind == FrameType::Message && kind_bits == KIND_MASK)
        // A published message is one whole text or binary message.
        || (kind == FrameType::Publish && kind_bits != KIND_TEXT && kind_bits != KIND_BINARY)
    {
        return Err(CodecError::BadFlags { kind, flags });
    }
    if !kind.session_allowed(session) {
        return Err(CodecError::BadSession { kind, session });
    }
    let limit = match kind {
        FrameType::Ping | FrameType::Pong | FrameType::Close => MAX_CONTROL_BODY as u32,
        _ => max_body,
    };
    if len > limit {
        return Err(CodecError::TooBig { kind, len });
    }
    Ok(())
}

/// Iterator over the frames of one WebSocket message; stops at the first
/// error (the connection is then closed, so nothing after it matters).
pub struct Frames {
    msg: Bytes,
    max_body: u32,
    failed: bool,
}

/// Decode the frames in one binary WebSocket message. `max_body` limits
/// MESSAGE / OPEN / ACCEPT / REJECT / GOAWAY bodies.
pub fn decode(msg: Bytes, max_body: u32) -> Frames {
    Frames {
        failed: msg.is_empty(),
        msg,
        max_body,
    }
    .empty_is_error()
}

impl Frames {
    fn empty_is_error(mut self) -> Frames {
        // An empty message is reported once, as `Truncated`.
        if self.failed {
            self.failed = false;
            self.msg = Bytes::from_static(&[0]);
        }
        self
    }
}

impl Iterator for Frames {
    type Item = Result<Frame, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.msg.is_empty() {
            return None;
        }
        let r = self.next_frame();
        self.failed = r.is_err();
        Some(r)
    }
}

impl Frames {
    fn next_frame(&mut self) -> Result<Frame, CodecError> {
        let h = self.msg.get(..HEADER_LEN).ok_or(CodecError::Truncated)?;
        let kind = FrameType::from_u8(h[0]).ok_or(CodecError::UnknownType(h[0]))?;
        let flags = h[1];
        let session = u32::from_be_bytes([h[2], h[3], h[4], h[5]]);
        let len = u32::from_be_bytes([h[6], h[7], h[8], h[9]]);
        check(kind, flags, session, len, self.max_body)?;
        let end = HEADER_LEN + len as usize;
        if self.msg.len() < end {
            return Err(CodecError::Truncated);
        }
        let mut frame = self.msg.split_to(end);
        let body = frame.split_off(HEADER_LEN);
        Ok(Frame {
            kind,
            flags,
            session,
            body,
        })
    }
}

/// A CLOSE body: an optional code and a reason.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Close {
    /// `None`: no status (an empty body).
    pub code: Option<u16>,
    pub reason: String,
}

impl Close {
    pub fn new(code: u16, reason: impl Into<String>) -> Close {
        Close {
            code: Some(code),
            reason: reason.into(),
        }
    }

    pub fn encode(&self) -> Bytes {
        let Some(code) = self.code else {
            return Bytes::new();
        };
        let mut reason = self.reason.as_str();
        while reason.len() > MAX_CONTROL_BODY - 2 {
            // Shorten on a character boundary.
            let mut cut = MAX_CONTROL_BODY - 2;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason = &reason[..cut];
        }
        let mut b = BytesMut::with_capacity(2 + reason.len());
        b.put_u16(code);
        b.put_slice(reason.as_bytes());
        b.freeze()
    }

    /// Parse and check a CLOSE body (§2).
    pub fn decode(body: &[u8]) -> Result<Close, CodecError> {
        match body.len() {
            0 => return Ok(Close::default()),
            1 => return Err(CodecError::BadClose("one-byte body")),
            n if n > MAX_CONTROL_BODY => return Err(CodecError::BadClose("body over 125 bytes")),
            _ => {}
        }
        let code = u16::from_be_bytes([body[0], body[1]]);
        if !valid_code(code) {
            return Err(CodecError::BadClose("invalid close code"));
        }
        let reason = std::str::from_utf8(&body[2..])
            .map_err(|_| CodecError::BadClose("reason not UTF-8"))?;
        Ok(Close::new(code, reason))
    }
}

/// Close codes a CLOSE may carry: those an endpoint may send (RFC 6455
/// §7.4), plus 1006 (gateway → app only: the client vanished).
pub fn valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1006..=1014 | 3000..=4999)
}

/// OPEN body (§4.1).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenBody {
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub client_addr: String,
    pub protocols: Vec<String>,
    pub route: String,
    pub tls: bool,
    pub identity: Option<serde_json::Value>,
}

/// ACCEPT body (§4.2).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AcceptBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

/// REJECT body (§4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectBody {
    pub status: u16,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
}

/// GOAWAY body.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GoawayBody {
    pub reason: String,
}

mod fanout;
mod query;

pub use fanout::{
    has_extension, valid_channel, Publish, EXTENSIONS_HEADER, EXTENSION_FANOUT, MAX_CHANNEL_LEN,
};

#[cfg(test)]
mod tests;
