//! Mux mode: client sessions carried over a few pooled WebSocket
//! connections to the application, speaking `tidegate.mux.v1`
//! (docs/mux-protocol.md; the codec is the `tidegate-mux` crate in
//! `sdk/rust`, shared with the Rust SDK).
//!
//! - `pool`: K connections per endpoint, kept up with backoff; picks a
//!   connection per session.
//! - `conn`: one connection — session table, reader (dispatch to inboxes),
//!   batching writer.
//! - `open`: the handshake phase (OPEN → ACCEPT / REJECT before the 101).
//! - `session`: a client after its 101 (frames both ways, resume, close).
//! - `stored`: the OPEN kept compactly for resume.
//! - `client`: client frame parsing; `wire`: WebSocket framing on the mux
//!   leg; `inbox`: the per-session queue; `metrics`.

pub mod client;
pub mod conn;
pub mod inbox;
pub mod metrics;
pub mod open;
pub mod pool;
pub mod session;
pub mod stored;
pub mod wire;

pub use pool::Pool;

/// What one queued frame is charged against a queue's byte bound besides
/// its payload: at least its wire header (WebSocket ≤ 14, mux 10 bytes),
/// in fact about what the queue entry itself occupies in memory (a `Bytes`
/// handle, the header, a permit, the slot). Charging it is what bounds the
/// number of frames too: an empty frame is not free, so a queue of
/// `B` bytes holds at most `B / QUEUED_FRAME_COST` frames.
pub const QUEUED_FRAME_COST: usize = 64;

/// Payloads shorter than this are copied into their own allocation when
/// they have to wait behind a peer that does not read. Uncopied, a
/// payload is a slice of the buffer it was read into — a client's 64 KiB
/// read arena, or the mux connection's read buffer (256 KiB, or a whole
/// large message) — and keeps all of it alive, so a peer that arranges one
/// tiny queued frame per buffer would pin far more than the queue bounds
/// count. Copied below 16 KiB, a queue of `B` bytes pins at most
/// `B / 16 KiB` read buffers: 4 × `B` for client arenas, 16 × `B` for
/// 256 KiB connection buffers (docs/security.md, "Read buffers held by
/// queued frames"). Frames written at once are never copied.
pub const COPY_QUEUED_BELOW: usize = 16 * 1024;

/// `payload` made fit to wait in a queue (see [`COPY_QUEUED_BELOW`]).
pub fn detach(payload: bytes::Bytes) -> bytes::Bytes {
    if payload.is_empty() {
        // Shares nothing: `Bytes::new()` is static.
        bytes::Bytes::new()
    } else if payload.len() < COPY_QUEUED_BELOW {
        bytes::Bytes::copy_from_slice(&payload)
    } else {
        payload
    }
}

use crate::config::Config;
use crate::frame::Limits;
use crate::metrics::RouteMetrics;
use std::sync::Arc;
use std::time::Duration;

/// What a mux route's sessions need, resolved once per route.
pub struct MuxRoute {
    pub pool: Arc<Pool>,
    pub limits: Limits,
    pub ping_interval: Option<Duration>,
    pub pong_timeout: Duration,
    /// `routes[].idle_timeout`: no complete data message either way for
    /// this long closes the session (1001 to the client and the app).
    pub idle_timeout: Option<Duration>,
    pub close_timeout: Duration,
    pub drain_spread: Duration,
    pub open_timeout: Duration,
    pub resume_grace: Duration,
    pub session_queue_bytes: usize,
    pub resume_buffer_bytes: usize,
    pub metrics: Arc<RouteMetrics>,
    pub mux_metrics: metrics::RouteMuxMetrics,
}

impl MuxRoute {
    pub fn new(
        config: &Config,
        pool: Arc<Pool>,
        (limits, idle_timeout): (Limits, Option<Duration>),
        metrics: Arc<RouteMetrics>,
        mux_metrics: metrics::RouteMuxMetrics,
    ) -> MuxRoute {
        let m = &config.mux;
        MuxRoute {
            pool,
            limits,
            ping_interval: config.keepalive.ping_interval,
            pong_timeout: config.keepalive.pong_timeout,
            idle_timeout,
            close_timeout: config.limits.close_timeout,
            drain_spread: config.drain.spread,
            open_timeout: m.open_timeout,
            resume_grace: m.resume_grace,
            session_queue_bytes: m.session_queue_bytes,
            resume_buffer_bytes: m.resume_buffer_bytes,
            metrics,
            mux_metrics,
        }
    }
}

/// Random per process: `X-Tidegate-Instance`.
pub fn instance_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}
