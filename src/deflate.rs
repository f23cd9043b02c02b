//! permessage-deflate (RFC 7692).
//!
//! Passthrough routes negotiate it end to end: the client's offer goes
//! upstream ([`params::forwardable_offer`]), the upstream's answer is
//! checked against it ([`params::check_answer`]) before it reaches the
//! client, and the relay then lets RSV1 pass on the first frame of a data
//! message (`frame::check_header` with `compressed`). Payloads stay
//! compressed and untouched on the way through, so the relay stays
//! zero-copy; size limits count compressed bytes.
//!
//! Why no inflated-size check on passthrough sessions: checking the
//! inflated size of a message needs an inflater fed with the unmasked
//! payload. With context takeover (the default every browser and server
//! library asks for) that inflater must keep the sliding window (up to
//! 32 KiB, plus ~7 KiB of state) per direction for the whole session, and
//! every payload would be unmasked into a copy: both break the relay's
//! promises (~2 KB per idle session, no copy). The upstream is the real
//! endpoint and bounds what it inflates itself.
//!
//! Edge routes (`permessage_deflate = "edge"`) terminate the extension at
//! the gateway instead: `edge` picks the answer and holds the memory
//! budget, `codec` the zlib streams, `session` the frame-decoding relay
//! those sessions run (separate from the zero-copy one).

pub mod codec;
pub mod edge;
pub mod params;
pub mod session;

pub use edge::{Budget, EdgeConfig};
pub use params::{check_answer, forwardable_offer, AnswerError, Params, WindowBits};
