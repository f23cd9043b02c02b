//! `[fanout]` and `routes[].fanout` validated into what the fan-out hub,
//! the publish listener and each route use.

use super::raw::fanout::{RawFanout, RawRouteFanout};
use super::validate::Problems;
use crate::fanout::{Limits, Pattern, SendBatch, SlowPolicy};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

/// Shortest publish token accepted.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, Default)]
pub struct FanoutConfig {
    pub limits: Limits,
    /// `None`: no publish listener.
    pub publish: Option<Arc<PublishConfig>>,
    /// `None`: fan-out stays within this instance.
    pub backplane: Option<Arc<super::backplane::BackplaneConfig>>,
}

/// The HTTP publish listener.
#[derive(Clone)]
pub struct PublishConfig {
    pub addr: SocketAddr,
    /// The bearer token (never logged: `Debug` hides it).
    pub token: String,
    pub max_body_bytes: usize,
    pub max_batch: usize,
}

impl fmt::Debug for PublishConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishConfig")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A route's fan-out settings.
#[derive(Debug, Clone, Default)]
pub struct RouteFanout {
    pub policy: SlowPolicy,
    /// The claim listing granted channels, if the route uses one.
    pub channels_claim: Option<String>,
    pub allow: Arc<[Pattern]>,
}

pub(super) fn global(p: &mut Problems, r: &RawFanout) -> FanoutConfig {
    let mut limits = Limits::default();
    for (key, value, slot) in [
        (
            "fanout.max_subscriptions_per_session",
            r.max_subscriptions_per_session,
            &mut limits.max_subscriptions_per_session,
        ),
        (
            "fanout.max_channels",
            r.max_channels,
            &mut limits.max_channels,
        ),
    ] {
        if value == 0 {
            p.push(key, "must be at least 1");
        } else {
            *slot = value as usize;
        }
    }
    limits.send_batch = match r.send_batch.as_str() {
        "none" => SendBatch::None,
        "io_uring" => SendBatch::IoUring,
        other => {
            p.push(
                "fanout.send_batch",
                format!("{other:?}: expected none or io_uring"),
            );
            SendBatch::None
        }
    };
    FanoutConfig {
        limits,
        publish: publish(p, r).map(Arc::new),
        backplane: super::backplane::backplane(p, &r.backplane).map(Arc::new),
    }
}

fn publish(p: &mut Problems, r: &RawFanout) -> Option<PublishConfig> {
    let r = &r.publish;
    if r.listen.trim().is_empty() {
        return None;
    }
    let addr = match r.listen.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push("fanout.publish.listen", "not an address (ip:port)");
            None
        }
    };
    let token = match (r.token_file.is_empty(), r.token_env.is_empty()) {
        (false, true) => std::fs::read_to_string(&r.token_file)
            .map_err(|e| p.push("fanout.publish.token_file", format!("cannot read: {e}")))
            .ok(),
        (true, false) => std::env::var(&r.token_env)
            .map_err(|_| p.push("fanout.publish.token_env", "variable not set"))
            .ok(),
        _ => {
            p.push(
                "fanout.publish",
                "set exactly one of token_file and token_env",
            );
            None
        }
    }
    .map(|t| t.trim().to_string());
    if token.as_ref().is_some_and(|t| t.len() < MIN_TOKEN_LEN) {
        p.push(
            "fanout.publish",
            format!("the token must be at least {MIN_TOKEN_LEN} characters"),
        );
    }
    if r.max_body_bytes == 0 || r.max_batch == 0 {
        p.push(
            "fanout.publish",
            "max_body_bytes and max_batch must be at least 1",
        );
    }
    Some(PublishConfig {
        addr: addr?,
        token: token.filter(|t| t.len() >= MIN_TOKEN_LEN)?,
        max_body_bytes: r.max_body_bytes as usize,
        max_batch: r.max_batch as usize,
    })
}

/// `routes[i].fanout`; `has_claims`: the route's auth policy yields claims.
pub(super) fn route(
    p: &mut Problems,
    key: &str,
    r: &RawRouteFanout,
    has_claims: bool,
) -> RouteFanout {
    let policy = match r.slow_subscriber.as_str() {
        "drop_oldest" => SlowPolicy::DropOldest,
        "close" => SlowPolicy::Close,
        other => {
            p.push(
                format!("{key}.fanout.slow_subscriber"),
                format!("{other:?}: expected drop_oldest or close"),
            );
            SlowPolicy::DropOldest
        }
    };
    let channels_claim = (!r.channels_claim.is_empty()).then(|| r.channels_claim.clone());
    if channels_claim.is_some() && !has_claims {
        p.push(
            format!("{key}.fanout.channels_claim"),
            "needs an auth policy with claims (jwt or api_keys) on the route",
        );
    }
    for (i, pat) in r.allow.iter().enumerate() {
        let ok = !pat.is_empty()
            && pat.len() <= tidegate_mux::codec::MAX_CHANNEL_LEN
            && tidegate_mux::codec::valid_channel(pat.replace('*', "x").as_bytes());
        if !ok {
            p.push(
                format!("{key}.fanout.allow[{i}]"),
                "a channel name, where * matches any run of characters",
            );
        }
    }
    RouteFanout {
        policy,
        channels_claim,
        allow: r.allow.iter().map(|s| Pattern::new(s)).collect(),
    }
}
