//! Validation of the plain HTTP settings: `[http]` and the per-route
//! `http`, `http_request_timeout`, `http_idle_timeout`, `max_body_bytes`.

use super::*;
use crate::config::raw::RawHttp;

pub(super) fn global(p: &mut Problems, h: &RawHttp) -> HttpConfig {
    let max_idle = h.max_idle_per_endpoint;
    if max_idle > 100_000 {
        p.push("http.max_idle_per_endpoint", "must be at most 100000");
    }
    nonzero(p, "http.max_body_bytes", h.max_body_bytes);
    // Checked once here; routes that follow them parse them quietly.
    duration(p, "http.request_timeout", &h.request_timeout, false);
    duration(p, "http.idle_timeout", &h.idle_timeout, true);
    HttpConfig {
        keepalive_timeout: duration(p, "http.keepalive_timeout", &h.keepalive_timeout, false),
        max_idle_per_endpoint: max_idle.min(100_000) as usize,
        pool_idle_timeout: duration(p, "http.pool_idle_timeout", &h.pool_idle_timeout, false),
    }
}

/// The route's HTTP settings, or `None` when `http = false`.
pub(super) fn route(
    p: &mut Problems,
    key: &str,
    r: &RawRoute,
    h: &RawHttp,
) -> Option<HttpRouteConfig> {
    let mut quiet = Problems::default();
    let (request, rp) = match &r.http_request_timeout {
        Some(t) => (t, &mut *p),
        None => (&h.request_timeout, &mut quiet),
    };
    let request_timeout = duration(rp, &format!("{key}.http_request_timeout"), request, false);
    let (idle, ip) = match &r.http_idle_timeout {
        Some(t) => (t, &mut *p),
        None => (&h.idle_timeout, &mut quiet),
    };
    let idle = duration(ip, &format!("{key}.http_idle_timeout"), idle, true);
    let idle_timeout = Some(idle).filter(|d| !d.is_zero());
    let max_body_bytes = match r.max_body_bytes {
        Some(n) => nonzero(p, &format!("{key}.max_body_bytes"), n),
        None => h.max_body_bytes,
    };
    r.http.then_some(HttpRouteConfig {
        request_timeout,
        idle_timeout,
        max_body_bytes,
    })
}
