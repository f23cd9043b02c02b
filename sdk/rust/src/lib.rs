//! `tidegate.mux.v1`: the protocol between a tidegate gateway in mux mode and
//! the application behind it (see `docs/mux-protocol.md`).
//!
//! [`codec`] is the wire format, shared by the gateway and this SDK.

pub mod codec;

pub use codec::{
    AcceptBody, Close, CodecError, Frame, FrameType, OpenBody, RejectBody, HEADER_LEN,
    SUBPROTOCOL,
};
