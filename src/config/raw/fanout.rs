//! `[fanout]` and `routes[].fanout` as written (docs/fanout.md).

use serde::{Deserialize, Serialize};

/// `[fanout]`: gateway-wide bounds and the HTTP publish listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFanout {
    /// Subscriptions one session may hold.
    pub max_subscriptions_per_session: u64,
    /// Channels with local subscribers, gateway-wide.
    pub max_channels: u64,
    /// A broadcast's direct sends: `none` (one send each) or `io_uring`
    /// (batched, one system call per batch).
    pub send_batch: String,
    /// The HTTP publish API (`[fanout.publish]`), off unless `listen` is set.
    pub publish: RawPublish,
    /// Fan-out across instances over NATS (`[fanout.backplane]`), off
    /// unless `kind` is set.
    pub backplane: super::backplane::RawBackplane,
}

impl Default for RawFanout {
    fn default() -> Self {
        Self {
            max_subscriptions_per_session: 64,
            max_channels: 100_000,
            send_batch: "io_uring".into(),
            publish: RawPublish::default(),
            backplane: super::backplane::RawBackplane::default(),
        }
    }
}

/// `[fanout.publish]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPublish {
    /// Address of the publish listener; empty: off.
    pub listen: String,
    /// File holding the bearer token (trailing whitespace ignored).
    pub token_file: String,
    /// Or: environment variable holding it.
    pub token_env: String,
    /// Largest request body (413 above it).
    pub max_body_bytes: u64,
    /// Most messages in one batch request (413 above it).
    pub max_batch: u64,
}

impl Default for RawPublish {
    fn default() -> Self {
        Self {
            listen: String::new(),
            token_file: String::new(),
            token_env: String::new(),
            max_body_bytes: 1 << 20,
            max_batch: 1000,
        }
    }
}

/// `routes[].fanout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRouteFanout {
    /// A subscriber whose queue is full: `drop_oldest` or `close` (1008).
    pub slow_subscriber: String,
    /// A token claim listing the channels the client is subscribed to and
    /// may be subscribed to; empty: no claim is consulted.
    pub channels_claim: String,
    /// Channel patterns (`*` matches any run) every subscription must
    /// match; empty allows any valid name.
    pub allow: Vec<String>,
}

impl Default for RawRouteFanout {
    fn default() -> Self {
        Self {
            slow_subscriber: "drop_oldest".into(),
            channels_claim: String::new(),
            allow: Vec::new(),
        }
    }
}
