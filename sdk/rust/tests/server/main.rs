//! The SDK server driven over real sockets by a stand-in gateway that
//! speaks `tidegate.mux.v1` (docs/mux-protocol.md).

mod app;
mod fanout;
mod gateway;
mod messages;
mod resume;
mod room;
