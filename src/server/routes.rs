//! What a configuration's routes need at run time, built when it is
//! loaded or reloaded: per route its limits, relay settings, metrics,
//! upstream and its mux, fan-out and HTTP parts; per upstream its HTTP
//! keep-alive pool.

use super::RouteRuntime;
use crate::config::{Config, RouteConfig, RouteMode};
use crate::metrics::Metrics;
use crate::mux::{MuxRoute, Pool};
use crate::relay::{self, scan::Limits};
use crate::upstream::Upstream;
use std::collections::HashMap;
use std::sync::Arc;

/// What the routes of one configuration share, by name: the mux pools
/// (made once at start-up), the upstreams and the HTTP pools.
pub(super) struct Shared<'a> {
    pub pools: &'a HashMap<String, Arc<Pool>>,
    pub upstreams: &'a HashMap<String, Arc<Upstream>>,
    pub http_pools: &'a HashMap<String, Arc<crate::http::pool::Pool>>,
}

/// What a route's sessions need at run time: its limits and relay
/// settings, metrics, upstream, and its mux, fan-out and HTTP parts.
pub(super) fn runtime(
    config: &Config,
    r: &Arc<RouteConfig>,
    metrics: &Metrics,
    shared: &Shared<'_>,
) -> RouteRuntime {
    let limits = Limits {
        max_frame: config.limits.max_frame_size.min(r.max_message_size),
        max_message: r.max_message_size,
    };
    let settings = relay::Settings {
        client_limits: limits,
        upstream_limits: limits,
        ping_interval: config.keepalive.ping_interval,
        pong_timeout: config.keepalive.pong_timeout,
        idle_timeout: r.idle_timeout,
        close_timeout: config.limits.close_timeout,
        drain_spread: config.drain.spread,
    };
    let route_metrics = metrics.route(&r.name);
    let mux = match (r.mode, shared.pools.get(&r.upstream.name)) {
        (RouteMode::Mux, Some(pool)) => Some(Arc::new(MuxRoute::new(
            config,
            Arc::clone(pool),
            (limits, r.idle_timeout),
            Arc::clone(&route_metrics),
            metrics.mux.route(&r.name),
        ))),
        _ => None,
    };
    let fanout = Arc::new(crate::fanout::Access::new(
        r.fanout.policy,
        config.mux.session_queue_bytes,
        Arc::clone(&r.fanout.allow),
        None,
    ));
    RouteRuntime {
        fanout,
        config: Arc::clone(r),
        metrics: route_metrics,
        settings: Arc::new(settings),
        upstream: Arc::clone(&shared.upstreams[&r.upstream.name]),
        mux,
        http: r.http.as_ref().map(|h| {
            Arc::new(crate::http::HttpRoute {
                settings: crate::http::Settings::new(h, config.limits.max_header_bytes),
                pool: Arc::clone(&shared.http_pools[&r.upstream.name]),
                metrics: metrics.http.route(&r.name),
            })
        }),
    }
}

/// One HTTP keep-alive pool per upstream, shared by its routes. A reload
/// builds new ones; the old pools' idle connections close with them.
pub(super) fn http_pools(config: &Config) -> HashMap<String, Arc<crate::http::pool::Pool>> {
    let h = &config.http;
    config
        .upstreams
        .iter()
        .map(|u| {
            let pool = crate::http::pool::Pool::new(
                u.endpoints.len(),
                h.max_idle_per_endpoint,
                h.pool_idle_timeout,
            );
            let pool = Arc::new(pool);
            pool.start_reaper();
            (u.name.clone(), pool)
        })
        .collect()
}
