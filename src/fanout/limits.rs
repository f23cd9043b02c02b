//! The rules of fan-out: the gateway-wide bounds (`[fanout]`), how a
//! broadcast's sends are made, the per-route slow-subscriber policy, and
//! why a subscription or publish is refused (with its metric label).

/// What happens to a subscriber whose queue is full (per route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowPolicy {
    /// Drop the oldest waiting frames to make room, counting them.
    #[default]
    DropOldest,
    /// Close the client with 1008.
    Close,
}

/// Gateway-wide bounds (`[fanout]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Subscriptions one session may hold.
    pub max_subscriptions_per_session: usize,
    /// Channels with local subscribers, gateway-wide.
    pub max_channels: usize,
    /// How a broadcast's direct sends are made (`fanout.send_batch`).
    pub send_batch: SendBatch,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_subscriptions_per_session: 64,
            max_channels: 100_000,
            send_batch: SendBatch::IoUring,
        }
    }
}

/// How a broadcast writes the shared frame to the idle subscribers of the
/// publishing worker (`[fanout] send_batch`, docs/fanout.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendBatch {
    /// One non-blocking `send` per subscriber.
    None,
    /// The sends in batches of [`super::uring::BATCH`], one `io_uring_enter` per
    /// batch; plain sends if the kernel refuses a ring. The default: 0.80×
    /// the gateway CPU per delivery of `None` (docs/performance.md,
    /// "Batched sends through io_uring").
    #[default]
    IoUring,
}

/// Why a subscription or a publish was refused. Never a connection error:
/// it is dropped, logged at debug and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("invalid channel name")]
    InvalidName,
    #[error("channel not granted by the token or the route's allow patterns")]
    NotGranted,
    #[error("per-session subscription limit reached")]
    SessionLimit,
    #[error("gateway-wide channel limit reached")]
    ChannelLimit,
    #[error("fan-out is not available on this session")]
    Unsupported,
    #[error("the session has ended")]
    Closed,
    #[error("publish request without the right bearer token")]
    Unauthorized,
    #[error("publish request over a size limit")]
    TooLarge,
    #[error("malformed publish request")]
    BadRequest,
}

impl Refusal {
    pub const LABELS: &'static [&'static str] = &[
        "invalid_name",
        "not_granted",
        "session_limit",
        "channel_limit",
        "unsupported",
        "closed",
        "unauthorized",
        "too_large",
        "bad_request",
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::InvalidName => "invalid_name",
            Refusal::NotGranted => "not_granted",
            Refusal::SessionLimit => "session_limit",
            Refusal::ChannelLimit => "channel_limit",
            Refusal::Unsupported => "unsupported",
            Refusal::Closed => "closed",
            Refusal::Unauthorized => "unauthorized",
            Refusal::TooLarge => "too_large",
            Refusal::BadRequest => "bad_request",
        }
    }
}
