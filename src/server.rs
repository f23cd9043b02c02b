//! The running gateway: shared state built from a validated [`Config`],
//! listeners bound, the admin endpoint up, and drain on request.
//!
//! Shutdown is a state, not an event: [`Running::shutdown`] turns `/readyz`
//! to 503, stops every accept loop, tells each session to send Close 1001
//! (spread over `drain.spread`), and [`Running::wait`] returns when the last
//! connection is gone or `drain.grace` has passed.

mod connection;
mod limits;
mod listener;
mod probe;
mod reload;
mod routes;
pub(crate) mod workers;

pub use reload::ReloadError;
pub use workers::{BindError, StartError};

use crate::config::{Config, RouteConfig, RouteMode};
use crate::metrics::{Metrics, RouteMetrics};
use crate::mux::{MuxRoute, Pool};
use crate::relay;
use crate::route::RouteTable;
pub use crate::shutdown::Drained;
use crate::shutdown::Shutdown;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What a route needs at run time, resolved once.
pub struct RouteRuntime {
    pub config: Arc<RouteConfig>,
    /// The route's metric handles, resolved once (no label look-up per
    /// message).
    pub metrics: Arc<RouteMetrics>,
    /// Limits and timers of the route's passthrough sessions.
    pub settings: Arc<relay::Settings>,
    /// The upstream with its balancing cursor and connect metrics.
    pub upstream: Arc<Upstream>,
    /// Mux routes: the pool and session settings.
    pub mux: Option<Arc<MuxRoute>>,
    /// Routes that carry plain HTTP: settings, keep-alive pool, metrics.
    pub http: Option<Arc<crate::http::HttpRoute>>,
    /// Fan-out policy and allow patterns of the route's sessions (a
    /// session whose token grants channels gets its own copy).
    pub fanout: Arc<crate::fanout::Access>,
}

/// Everything a configuration decides, swapped whole on reload. A
/// connection takes one snapshot at accept and lives by it; sessions keep
/// their route's settings after a swap.
pub struct State {
    pub config: Config,
    /// What the route phase matches a request's host and path against.
    pub routes: RouteTable,
    /// Per route name: what its sessions need at run time.
    pub runtime: HashMap<String, RouteRuntime>,
    /// HTTP metrics of requests refused before a route matched (`-`).
    pub unrouted_http: crate::metrics::HttpMetrics,
}

impl State {
    /// `pools`: the mux pools, created once at start-up (reloads keep them).
    /// `previous`: the state a reload replaces (endpoint health carries
    /// over from it).
    pub fn new(
        config: Config,
        metrics: &Metrics,
        pools: &HashMap<String, Arc<Pool>>,
        previous: Option<&State>,
    ) -> State {
        let before = |name: &str| {
            previous?
                .runtime
                .values()
                .find(|rt| rt.upstream.config.name == name)
                .map(|rt| Arc::clone(&rt.upstream))
        };
        let upstreams: HashMap<String, Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|u| {
                let old = before(&u.name);
                let up = Upstream::start(Arc::clone(u), metrics, old.as_deref());
                (u.name.clone(), up)
            })
            .collect();
        let http_pools = routes::http_pools(&config);
        let shared = routes::Shared {
            pools,
            upstreams: &upstreams,
            http_pools: &http_pools,
        };
        let runtime = config
            .routes
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    routes::runtime(&config, r, metrics, &shared),
                )
            })
            .collect();
        State {
            routes: RouteTable::new(config.routes.clone()).with_path_policy(config.paths),
            runtime,
            unrouted_http: metrics.http.route("-"),
            config,
        }
    }
}

/// State shared by every connection.
pub struct Gateway {
    /// The current configuration and what was built from it.
    state: ArcSwap<State>,
    pub metrics: Arc<Metrics>,
    /// Drain state: the signal sessions select on, the task tracker, and
    /// the stop of the gateway's own tasks (admin, pools, watchers).
    pub shutdown: Shutdown,
    /// One permit per client connection (`limits.max_connections`, lowered
    /// to what the open-file limit fits; fixed at start-up).
    pub permits: Arc<Semaphore>,
    /// Per-client budgets checked at accept (fixed at start-up).
    pub client_limits: Arc<limits::ClientLimits>,
    /// `/readyz`: true between start-up and drain.
    pub ready: AtomicBool,
    /// Every passthrough upstream answered the last connect probe (only
    /// consulted with `readiness.require_upstream`).
    pub upstreams_reachable: AtomicBool,
    /// One reload at a time.
    reload_lock: tokio::sync::Mutex<()>,
    /// Mux pools by upstream name; fixed at start-up.
    pub pools: HashMap<String, Arc<Pool>>,
    /// Compression memory of edge permessage-deflate sessions
    /// (`limits.deflate_memory`; fixed at start-up).
    pub deflate_budget: Arc<crate::deflate::Budget>,
    /// Fan-out channels and subscriptions (`[fanout]` limits fixed at
    /// start-up).
    pub hub: Arc<crate::fanout::Hub>,
    /// The NATS backplane, once started (`[fanout.backplane]`).
    pub backplane: std::sync::OnceLock<Arc<crate::fanout::backplane::Backplane>>,
}

impl Gateway {
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Arc<Gateway> {
        let hub = crate::fanout::Hub::new(config.fanout.limits, metrics.fanout.clone());
        let pools = mux_pools(&config, &metrics, &hub);
        let cap = crate::fds::connection_cap(&config).connections;
        metrics.connection_limit.set(cap as i64);
        Arc::new(Gateway {
            deflate_budget: crate::deflate::Budget::new(config.limits.deflate_memory),
            hub,
            backplane: std::sync::OnceLock::new(),
            permits: Arc::new(Semaphore::new(cap)),
            client_limits: limits::ClientLimits::new(&config.limits),
            state: ArcSwap::from_pointee(State::new(config, &metrics, &pools, None)),
            pools,
            metrics,
            shutdown: Shutdown::new(),
            ready: AtomicBool::new(false),
            upstreams_reachable: AtomicBool::new(false),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The configuration in force now.
    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// `/readyz`: serving, every mux upstream has a connection up, and —
    /// with `readiness.require_upstream` — every passthrough upstream
    /// accepted the last connect probe.
    pub fn is_ready(&self) -> bool {
        let upstreams = !self.state().config.readiness.require_upstream
            || self.upstreams_reachable.load(Ordering::SeqCst);
        self.ready.load(Ordering::SeqCst)
            && upstreams
            && self.pools.values().all(|p| p.any_up())
            && self.backplane_ready()
    }

    /// `/readyz` and the backplane: ready unless `backplane.required` and
    /// it is not connected (or could not even be set up).
    fn backplane_ready(&self) -> bool {
        match (self.backplane.get(), &self.state().config.fanout.backplane) {
            (Some(b), _) => b.ready(),
            (None, Some(c)) => !c.required,
            (None, None) => true,
        }
    }
}

/// One pool per upstream that a mux route uses.
fn mux_pools(
    config: &Config,
    metrics: &Arc<Metrics>,
    hub: &Arc<crate::fanout::Hub>,
) -> HashMap<String, Arc<Pool>> {
    let settings = Arc::new(config.mux.clone());
    let instance = crate::mux::instance_id();
    let mut pools = HashMap::new();
    for r in config.routes.iter().filter(|r| r.mode == RouteMode::Mux) {
        pools.entry(r.upstream.name.clone()).or_insert_with(|| {
            let upstream = Upstream::start(Arc::clone(&r.upstream), metrics, None);
            Pool::new(
                upstream,
                &config.runtime,
                Arc::clone(&settings),
                &instance,
                Arc::clone(metrics),
                Arc::clone(hub),
            )
        });
    }
    pools
}

/// A bound listener, as reported at start-up.
#[derive(Debug, Clone)]
pub struct Bound {
    /// `listeners[].name`.
    pub name: String,
    /// The address actually bound (a configured port 0 resolved).
    pub addr: SocketAddr,
    /// Serves TLS (`wss://`).
    pub tls: bool,
}

/// A started gateway.
pub struct Running {
    /// Every client listener, in configuration order.
    pub listeners: Vec<Bound>,
    /// The admin listener's bound address, if one is configured.
    pub admin: Option<SocketAddr>,
    /// The fan-out publish listener's bound address, if configured.
    pub publish: Option<SocketAddr>,
    pub gateway: Arc<Gateway>,
}

/// Bind everything and start serving. Must run inside a tokio runtime;
/// with `runtime.layout = "thread_per_core"` and more than one worker,
/// that runtime serves worker 0 and the other workers get threads of their
/// own (`workers.rs`).
pub async fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Metrics::new();
    let gateway = Gateway::new(config, metrics);
    let state = gateway.state();
    let sockets = workers::bind(&state.config, state.config.runtime.socket_sets())?;
    let admin = match state.config.admin {
        Some(addr) => Some(
            crate::admin::serve(
                addr,
                Arc::clone(&gateway),
                gateway.shutdown.stopped().clone(),
            )
            .await
            .map_err(|source| BindError {
                key: "admin.listen".into(),
                addr,
                source,
            })?,
        ),
        None => None,
    };
    if let Some(c) = &state.config.fanout.backplane {
        // Before the publish API and the listeners: no publish or
        // subscription may miss the hook.
        let stop = gateway.shutdown.stopped().clone();
        if let Some(b) =
            crate::fanout::backplane::attach(&gateway.hub, c, &gateway.metrics, stop).await
        {
            let _ = gateway.backplane.set(b);
        }
    }
    let mut publish_addr = None;
    if let Some(publish) = &state.config.fanout.publish {
        let bound = crate::fanout::publish_api::serve(
            publish,
            Arc::clone(&gateway.hub),
            gateway.shutdown.stopped().clone(),
        )
        .await
        .map_err(|source| BindError {
            key: "fanout.publish.listen".into(),
            addr: publish.addr,
            source,
        })?;
        publish_addr = Some(bound);
    }
    let bound = sockets.listeners.clone();
    let workers = sockets.serve(&gateway)?;
    for pool in gateway.pools.values() {
        pool.start(gateway.shutdown.stopped().clone(), &workers);
    }
    tokio::spawn(reload::watch_files(
        Arc::clone(&gateway),
        gateway.shutdown.stopped().clone(),
    ));
    tokio::spawn(probe::probe_upstreams(
        Arc::clone(&gateway),
        gateway.shutdown.stopped().clone(),
    ));
    gateway.ready.store(true, Ordering::SeqCst);
    Ok(Running {
        listeners: bound,
        admin,
        publish: publish_addr,
        gateway,
    })
}

impl Running {
    /// Begin draining (idempotent).
    pub fn shutdown(&self) {
        let g = &self.gateway;
        if g.shutdown.begin() {
            tracing::info!("draining: readiness off, accept stopped, closing sessions with 1001");
            g.ready.store(false, Ordering::SeqCst);
            g.metrics.draining.set(1);
            for pool in g.pools.values() {
                pool.wake_for_drain();
            }
        }
    }

    /// A token cancelled when draining begins (for tests and signal glue).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.gateway.shutdown.draining().clone()
    }

    /// Wait for drain to be requested and then to finish; then the admin
    /// listener, the mux pools and the watchers stop.
    pub async fn wait(self) -> Drained {
        let grace = self.gateway.state().config.drain.grace;
        self.gateway.shutdown.finish(grace).await
    }
}
