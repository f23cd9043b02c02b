//! Phase: policy. Who may come in on a route, decided before any upstream
//! connection is made: the Origin rule, the drain, then edge auth.

use super::Ctx;
use crate::auth::Identity;
use crate::handshake::{check_origin, Rejection, RequestHead, Upgrade};
use tokio::time::Instant;

/// Every policy step in order. On success, the client's identity (routes
/// with an auth policy), whose credential-bearing sub-protocols have been
/// removed from `upgrade`.
pub(super) async fn check(
    cx: &Ctx,
    head: &RequestHead,
    upgrade: &mut Upgrade,
) -> Result<Option<Identity>, Rejection> {
    check_origin(head, &upgrade.route)?;
    if cx.gw.shutdown.is_draining() {
        return Err(Rejection::Draining);
    }
    authenticate(cx, head, upgrade).await
}

/// Edge auth, with its duration and result counted per route and method.
async fn authenticate(
    cx: &Ctx,
    head: &RequestHead,
    upgrade: &mut Upgrade,
) -> Result<Option<Identity>, Rejection> {
    let Some(policy) = &upgrade.route.auth else {
        return Ok(None);
    };
    let route = upgrade.route.name.as_str();
    let method = policy.method_label();
    let metrics = &cx.gw.metrics;
    let started = Instant::now();
    // Boxed: most connections take no auth, and the handshake task's
    // future is as large as its largest state.
    let checked = Box::pin(policy.authenticate(head, upgrade)).await;
    metrics
        .auth_duration
        .with_label_values(&[route, method])
        .observe(started.elapsed().as_secs_f64());
    let result = match &checked {
        Ok(identity) => identity.result,
        Err(e) => e.label(),
    };
    metrics
        .auth_results
        .with_label_values(&[route, method, result])
        .inc();
    match checked {
        Ok(identity) => {
            identity.strip_protocols(&mut upgrade.protocols);
            Ok(Some(identity))
        }
        Err(e) => {
            // The reason only: never the credential.
            tracing::debug!(route, policy = %policy.name, reason = e.label(), "auth refused");
            Err(e.rejection())
        }
    }
}
