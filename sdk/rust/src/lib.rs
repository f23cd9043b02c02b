//! `tidegate.mux.v1`: the protocol between a tidegate gateway in mux mode and
//! the application behind it (see `docs/mux-protocol.md`).
//!
//! [`codec`] is the wire format, shared by the gateway and this SDK.
//! [`server`] (feature `server`, on by default) is the application side: an
//! async server the gateway's mux connections come to.

pub mod codec;
#[cfg(feature = "server")]
pub mod server;

pub use codec::{
    AcceptBody, Close, CodecError, Frame, FrameType, OpenBody, RejectBody, HEADER_LEN, SUBPROTOCOL,
};
