//! Fan-out at dispatch: the channels an upstream's 101 (or a mux ACCEPT)
//! subscribes a session to, and the subscriber of a passthrough session.
//! The header is the gateway's, so it never reaches the client.

use super::super::{Admitted, Ctx, RouteRuntime};
use std::sync::Arc;

/// Remove `X-Tidegate-Subscribe` from an upstream's 101 (or a mux
/// ACCEPT) and return the channels it lists.
pub(super) fn take_subscribe_header(headers: &mut Vec<(String, String)>) -> Vec<String> {
    let mut channels = Vec::new();
    headers.retain(|(name, value)| {
        if !name.eq_ignore_ascii_case(crate::fanout::SUBSCRIBE_HEADER) {
            return true;
        }
        channels.extend(crate::fanout::header_channels(value).map(str::to_string));
        false
    });
    channels
}

/// Passthrough fan-out: a subscriber for the session when the upstream's
/// 101 or the token's claim subscribes it to anything.
pub(super) fn passthrough_subscriber(
    cx: &Ctx,
    rt: &RouteRuntime,
    a: &Admitted,
    channels: &[String],
) -> Option<Arc<crate::fanout::Subscriber>> {
    let claim = rt.config.fanout.channels_claim.is_some();
    let access = crate::fanout::Access::for_session(&rt.fanout, claim, a.identity.as_ref());
    if channels.is_empty() && access.granted().is_empty() {
        return None;
    }
    let sub = cx.gw.hub.subscriber(None, access);
    let granted: Vec<Box<str>> = sub.access.granted().to_vec();
    for channel in granted
        .iter()
        .map(|c| c.as_bytes())
        .chain(channels.iter().map(|c| c.as_bytes()))
    {
        let _ = sub.subscribe(channel);
    }
    Some(sub)
}
