//! Extension `fanout` (docs/mux-protocol.md §10): the negotiation header,
//! channel-name rules, and the SUBSCRIBE / UNSUBSCRIBE / PUBLISH bodies.
//!
//! The frame types and their flag / session rules live with the other
//! types in `codec.rs`; this file owns what is inside the bodies. A PUBLISH
//! body is decoded by slicing the frame's `Bytes`: the payload a gateway
//! fans out shares the memory of the WebSocket message it arrived in.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CodecError, Frame, FrameType, KIND_BINARY, KIND_MASK, KIND_TEXT};

/// Header in the upgrade request (gateway) and the 101 (application) that
/// lists the extensions each side supports, comma-separated.
pub const EXTENSIONS_HEADER: &str = "x-tidegate-mux-extensions";

/// The extension token for fan-out.
pub const EXTENSION_FANOUT: &str = "fanout";

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 128;

/// Does a comma list (the value of [`EXTENSIONS_HEADER`]) contain `name`?
/// Tokens are compared case-insensitively after trimming; unknown tokens
/// are ignored, as the contract asks.
pub fn has_extension(list: &str, name: &str) -> bool {
    list.split(',').any(|t| t.trim().eq_ignore_ascii_case(name))
}

/// Is `name` a valid channel: 1–128 bytes of `A–Z a–z 0–9 . _ - : @ /`?
/// The set is ASCII, so a valid name is also valid UTF-8.
pub fn valid_channel(name: &[u8]) -> bool {
    (1..=MAX_CHANNEL_LEN).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b".-_:@/".contains(&b))
}

/// A decoded PUBLISH: both fields slice the frame body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The channel name as sent; check it with [`valid_channel`] (an
    /// invalid name is the receiver's to drop, not a protocol error).
    pub channel: Bytes,
    /// `true`: a text message; `false`: binary.
    pub text: bool,
    /// The whole message.
    pub payload: Bytes,
    /// Session id not to deliver to (echo suppression); `None` for all.
    pub except: Option<u32>,
}

impl Publish {
    /// The channel name as text, if it is UTF-8 (every valid name is).
    pub fn channel_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.channel).ok()
    }

    /// The body: u16 channel length (big-endian), channel, payload.
    /// Copies once, into the frame body; an application sending large
    /// payloads can write [`Publish::prefix`] and the payload as two
    /// slices of one vectored write instead.
    pub fn encode_body(channel: &str, payload: &[u8]) -> Bytes {
        let mut b = BytesMut::with_capacity(2 + channel.len() + payload.len());
        b.put_slice(&Publish::prefix(channel));
        b.put_slice(payload);
        b.freeze()
    }

    /// The part of the body before the payload.
    pub fn prefix(channel: &str) -> Bytes {
        let len = u16::try_from(channel.len()).unwrap_or(u16::MAX);
        let name = &channel.as_bytes()[..usize::from(len)];
        let mut b = BytesMut::with_capacity(2 + name.len());
        b.put_u16(len);
        b.put_slice(name);
        b.freeze()
    }
}

impl Frame {
    /// SUBSCRIBE `session` to `channel`.
    pub fn subscribe(session: u32, channel: &str) -> Frame {
        Frame::new(
            FrameType::Subscribe,
            0,
            session,
            Bytes::copy_from_slice(channel.as_bytes()),
        )
    }

    /// UNSUBSCRIBE `session` from `channel`.
    pub fn unsubscribe(session: u32, channel: &str) -> Frame {
        Frame::new(
            FrameType::Unsubscribe,
            0,
            session,
            Bytes::copy_from_slice(channel.as_bytes()),
        )
    }

    /// PUBLISH one whole message; `except`: a session not to deliver to.
    pub fn publish(channel: &str, text: bool, payload: &[u8], except: Option<u32>) -> Frame {
        let kind = if text { KIND_TEXT } else { KIND_BINARY };
        Frame::new(
            FrameType::Publish,
            kind,
            except.unwrap_or(0),
            Publish::encode_body(channel, payload),
        )
    }

    /// SUBSCRIBE / UNSUBSCRIBE: the channel name, as sent.
    pub fn channel(&self) -> &[u8] {
        &self.body
    }

    /// Decode a PUBLISH body without copying. The frame's flags and
    /// session were checked by `decode`; this checks the body's layout.
    pub fn publish_body(&self) -> Result<Publish, CodecError> {
        if self.kind != FrameType::Publish {
            return Err(CodecError::BadPublish("not a PUBLISH frame"));
        }
        let len = match self.body.get(..2) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(CodecError::BadPublish("body shorter than its length field")),
        };
        if self.body.len() < 2 + len {
            return Err(CodecError::BadPublish("channel runs past the body"));
        }
        Ok(Publish {
            channel: self.body.slice(2..2 + len),
            text: self.flags & KIND_MASK == KIND_TEXT,
            payload: self.body.slice(2 + len..),
            except: (self.session != 0).then_some(self.session),
        })
    }
}
