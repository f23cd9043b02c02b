//! Why a peer's frame ends the connection: each [`Violation`] knows the
//! close code the peer is sent (RFC 6455 §7.4.1), the reason text that goes
//! with it, and a bounded metric label.

/// A frame that breaks RFC 6455 or a size limit. The reason texts are what
/// clients read in the Close frame (docs/configuration.md lists some); keep
/// them stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub enum Violation {
    /// RSV1–3 set, with no extension negotiated that defines them.
    ReservedBits,
    /// RSV1 on a control or continuation frame of a session with
    /// permessage-deflate (RFC 7692 §6.1).
    MisplacedCompressedBit,
    /// A client frame without a mask (§5.1).
    ClientUnmasked,
    /// A server frame with a mask (§5.1).
    ServerMasked,
    /// An opcode RFC 6455 reserves.
    ReservedOpcode,
    /// A 64-bit length with the most significant bit set (§5.2).
    InvalidLength,
    /// A Close, Ping or Pong without FIN.
    FragmentedControl,
    /// A control frame over 125 bytes.
    ControlTooLong,
    /// A Continuation while no fragmented message is open.
    ContinuationWithoutMessage,
    /// A Text or Binary frame while a fragmented message is open.
    MessageInsideMessage,
    /// A Close payload of exactly one byte (§5.5.1).
    CloseOneByte,
    /// A Close code no endpoint may send (§7.4).
    InvalidCloseCode,
    /// Over `max_frame` or `max_message`.
    TooBig,
    /// A Close reason that is not UTF-8 (§5.5.1).
    BadCloseReason,
    /// Text message data that is not UTF-8 (§8.1); only the readers that
    /// look at payloads find it.
    BadUtf8,
    /// A compressed message that is not valid deflate data (RFC 7692);
    /// only edge compression, which inflates, finds it.
    BadDeflateData,
}

impl Violation {
    /// The code the peer's connection is closed with.
    pub fn close_code(self) -> u16 {
        match self {
            Violation::TooBig => 1009,
            Violation::BadCloseReason | Violation::BadUtf8 | Violation::BadDeflateData => 1007,
            _ => 1002,
        }
    }

    /// The reason sent with the Close (at most 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            Violation::ReservedBits => "reserved bits set",
            Violation::MisplacedCompressedBit => "RSV1 on a control or continuation frame",
            Violation::ClientUnmasked => "client frame not masked",
            Violation::ServerMasked => "server frame masked",
            Violation::ReservedOpcode => "reserved opcode",
            Violation::InvalidLength => "invalid frame length",
            Violation::FragmentedControl => "fragmented control frame",
            Violation::ControlTooLong => "control frame too long",
            Violation::ContinuationWithoutMessage => "continuation without a message",
            Violation::MessageInsideMessage => "new message inside a fragmented one",
            Violation::CloseOneByte => "close payload of one byte",
            Violation::InvalidCloseCode => "invalid close code",
            Violation::TooBig => "message too big",
            Violation::BadCloseReason => "invalid close reason",
            Violation::BadUtf8 => "invalid UTF-8",
            Violation::BadDeflateData => "invalid compressed data",
        }
    }

    /// Metric label; a fixed set.
    pub fn label(self) -> &'static str {
        match self {
            Violation::ReservedBits => "reserved_bits",
            Violation::MisplacedCompressedBit => "misplaced_compressed_bit",
            Violation::ClientUnmasked => "client_unmasked",
            Violation::ServerMasked => "server_masked",
            Violation::ReservedOpcode => "reserved_opcode",
            Violation::InvalidLength => "invalid_length",
            Violation::FragmentedControl => "fragmented_control",
            Violation::ControlTooLong => "control_too_long",
            Violation::ContinuationWithoutMessage => "continuation_without_message",
            Violation::MessageInsideMessage => "message_inside_message",
            Violation::CloseOneByte => "close_one_byte",
            Violation::InvalidCloseCode => "invalid_close_code",
            Violation::TooBig => "too_big",
            Violation::BadCloseReason => "bad_close_reason",
            Violation::BadUtf8 => "bad_utf8",
            Violation::BadDeflateData => "bad_deflate_data",
        }
    }
}
