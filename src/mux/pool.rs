//! The pool of mux connections to one upstream: `pool_size` slots per
//! endpoint, each kept connected by its own supervisor task (reconnect with
//! doubling backoff and ±50 % jitter), and the choice of a connection for a
//! new or resumed session.

use super::conn::Conn;
use super::metrics::EndpointMetrics;
use crate::config::balance::Policy;
use crate::config::{MuxConfig, RuntimeConfig, UpstreamConfig};
use crate::metrics::Metrics;
use crate::upstream::{Affinity, Upstream};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

mod supervise;

/// How often a session waiting for a connection looks again.
const WAIT_STEP: Duration = Duration::from_millis(20);

/// How long resuming sessions keep to their fair share of the pool while
/// not every slot is up yet (after a restart the slots reconnect one by
/// one; the first one back must not collect every session). After this
/// they take any connection: a slot whose endpoint stays down must not
/// hold sessions back for the whole resume grace.
const RESUME_SPREAD: Duration = Duration::from_secs(2);

static NEXT_SESSION: AtomicU32 = AtomicU32::new(1);

/// A session id unique in this process (docs/mux-protocol.md §3) and not
/// guessable from outside: a counter mapped through a random bijection of
/// `u32` (multiply by a random odd number, add a random offset), so ids
/// repeat only after 2^32 sessions yet do not count 1, 2, 3. It is a
/// second line of defence: the application's check of the gateway secret
/// is what stops a stranger's RESUMED OPEN.
pub fn next_session_id() -> u32 {
    static MAP: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    let (mul, add) = *MAP.get_or_init(|| (rand::random::<u32>() | 1, rand::random::<u32>()));
    loop {
        let n = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
        let id = n.wrapping_mul(mul).wrapping_add(add);
        if id != 0 {
            return id;
        }
    }
}

struct Slot {
    endpoint: usize,
    index: usize,
    /// The worker whose runtime runs this slot's connection: the slots
    /// are dealt round the workers in order (an endpoint's slots are
    /// consecutive), so with `pool_size` ≥ workers every worker has a
    /// connection to every endpoint on its own thread.
    worker: usize,
    conn: Mutex<Option<Arc<Conn>>>,
}

pub struct Pool {
    pub name: String,
    /// Balancing, health and connects of the pooled endpoints.
    pub upstream: Arc<Upstream>,
    config: Arc<UpstreamConfig>,
    settings: Arc<MuxConfig>,
    slots: Vec<Slot>,
    /// `X-Tidegate-Instance`: random per process.
    instance: String,
    endpoint_metrics: Vec<EndpointMetrics>,
    metrics: Arc<Metrics>,
    /// Per endpoint: a slot of it connected. Its siblings waiting out a
    /// backoff retry at once, so after an application restart the pool
    /// comes back together and resumed sessions spread over all of it.
    endpoint_up: Vec<Notify>,
    /// Resuming sessions that have no connection yet (see [`Waiting`]).
    waiting: AtomicUsize,
    /// Fan-out registry, handed to connections that negotiated `fanout`.
    hub: Arc<crate::fanout::Hub>,
    /// Sessions placed on a connection of another worker.
    cross_worker: prometheus::IntCounter,
}

/// A resuming session not yet offered to a connection; counted so the
/// pool knows the fair share of each connection (dropping it uncounts).
pub struct Waiting(Arc<Pool>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    /// A pool of `upstream`'s connections, laid out for `runtime`'s
    /// workers (`UpstreamConfig::slots_per_endpoint` per endpoint).
    pub fn new(
        upstream: Arc<Upstream>,
        runtime: &RuntimeConfig,
        settings: Arc<MuxConfig>,
        instance: &str,
        metrics: Arc<Metrics>,
        hub: Arc<crate::fanout::Hub>,
    ) -> Arc<Pool> {
        let config = Arc::clone(&upstream.config);
        let per_endpoint = config.slots_per_endpoint(runtime);
        let workers = runtime.socket_sets();
        let slots = (0..config.endpoints.len())
            .flat_map(|e| (0..per_endpoint).map(move |i| (e, i)))
            .enumerate()
            .map(|(slot, (endpoint, index))| Slot {
                endpoint,
                index,
                worker: slot % workers,
                conn: Mutex::new(None),
            })
            .collect();
        let endpoint_metrics = config
            .endpoints
            .iter()
            .map(|ep| metrics.mux.endpoint(&config.name, &ep.url))
            .collect();
        let endpoint_up = config.endpoints.iter().map(|_| Notify::new()).collect();
        metrics.mux.upstream(&config.name);
        let cross_worker = metrics.mux.cross_worker(&config.name);
        Arc::new(Pool {
            cross_worker,
            name: config.name.clone(),
            upstream,
            config,
            settings,
            slots,
            instance: instance.to_string(),
            endpoint_metrics,
            metrics,
            hub,
            endpoint_up,
            waiting: AtomicUsize::new(0),
        })
    }

    /// Start one supervisor per slot on the runtime of the worker it
    /// belongs to (`Slot::worker`), so a session on that worker never waits
    /// for a wake-up from another thread (`pick_for`); they stop when
    /// `stop` is cancelled. `workers` holds each worker's runtime (one
    /// entry with a single worker or `work_stealing`).
    pub fn start(self: &Arc<Self>, stop: CancellationToken, workers: &[Handle]) {
        for slot in 0..self.slots.len() {
            let pool = Arc::clone(self);
            let stop = stop.clone();
            let task = async move { pool.supervise(slot, stop).await };
            match workers.get(self.slots[slot].worker) {
                Some(rt) => drop(rt.spawn(task)),
                None => drop(tokio::spawn(task)),
            }
        }
    }

    fn current(&self, slot: usize) -> Option<Arc<Conn>> {
        self.slots[slot]
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, slot: usize, conn: Option<Arc<Conn>>) {
        *self.slots[slot]
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = conn;
    }

    /// Drain: wake every session carried by this pool.
    pub fn wake_for_drain(&self) {
        for slot in 0..self.slots.len() {
            if let Some(c) = self.current(slot) {
                c.wake_for_drain();
            }
        }
    }

    /// True when at least one connection is open (for `/readyz`).
    pub fn any_up(&self) -> bool {
        (0..self.slots.len()).any(|s| self.current(s).is_some_and(|c| c.usable()))
    }

    /// The connection a new session goes to: the first of the upstream's
    /// candidate endpoints (its policy, health, affinity cookie) that has
    /// an open connection, and there one of the caller's worker if it can
    /// (see [`choose`]).
    /// With `least_connections` the endpoints are ordered by the sessions
    /// their connections carry. Returns the endpoint index too.
    pub fn pick_for(&self, affinity: &Affinity<'_>) -> Option<(usize, Arc<Conn>)> {
        let here = crate::server::workers::current();
        let mut order = self.upstream.candidates(affinity);
        if self.config.balance.policy == Policy::LeastConnections {
            order.sort_by_key(|&e| {
                self.endpoint_conns(e)
                    .map(|c| c.session_count())
                    .sum::<usize>()
            });
        }
        let (e, (away, conn)) = order.into_iter().find_map(|e| {
            let conns = self.endpoint_slots(e).map(|(w, c)| (w != here, c));
            choose(conns).map(|c| (e, c))
        })?;
        if away {
            self.cross_worker.inc();
        }
        Some((e, conn))
    }

    /// The usable connections to endpoint `e`.
    fn endpoint_conns(&self, e: usize) -> impl Iterator<Item = Arc<Conn>> + '_ {
        self.endpoint_slots(e).map(|(_, c)| c)
    }

    /// The usable connections to endpoint `e`, each with its worker.
    fn endpoint_slots(&self, e: usize) -> impl Iterator<Item = (usize, Arc<Conn>)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(move |(_, slot)| slot.endpoint == e)
            .filter_map(|(s, slot)| Some((slot.worker, self.current(s)?)))
            .filter(|(_, c)| c.usable())
    }

    /// Count a resuming session as waiting for a connection.
    pub fn waiting(self: &Arc<Self>) -> Waiting {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(Arc::clone(self))
    }

    /// A connection for a session resuming since `since`: the least
    /// loaded on a healthy endpoint (or one of the caller's worker, as in
    /// `pick_for`), but while some slots are reconnecting (no connection at
    /// all; a draining one is going away, not coming) and for at most
    /// `RESUME_SPREAD`, only one below its fair share of every session
    /// placed or waiting — the rest wait a moment for the other slots.
    /// The moment counts from the later of `since` and the first
    /// connection's return: an application that takes longer than
    /// `RESUME_SPREAD` to restart still gets its sessions spread.
    pub fn pick_for_resume(&self, since: Instant) -> Option<Arc<Conn>> {
        let here = crate::server::workers::current();
        let mut up: Vec<(bool, Arc<Conn>)> = Vec::new();
        let mut unhealthy: Vec<(bool, Arc<Conn>)> = Vec::new();
        let mut coming = 0;
        for (slot, s) in self.slots.iter().enumerate() {
            // Health as for new sessions: an endpoint that failed its
            // checks or was ejected takes no resumed sessions either.
            let healthy = self.upstream.state[s.endpoint].usable();
            let away = s.worker != here;
            match self.current(slot) {
                Some(c) if c.usable() && healthy => up.push((away, c)),
                Some(c) if c.usable() => unhealthy.push((away, c)),
                Some(_) => {}
                None => coming += 1,
            }
        }
        if up.is_empty() {
            // Fail open, as `candidates` does: a session resumed on an
            // endpoint of doubtful health beats a session closed.
            up = unhealthy;
        }
        let back = up.iter().map(|(_, c)| c.opened).min().unwrap_or(since);
        let share = if coming == 0 || since.max(back).elapsed() >= RESUME_SPREAD {
            usize::MAX
        } else {
            let placed: usize = up.iter().map(|(_, c)| c.session_count()).sum();
            let total = placed + self.waiting.load(Ordering::Relaxed);
            total.div_ceil(up.len() + coming)
        };
        let (away, conn) = choose(up.into_iter().filter(|(_, c)| c.session_count() < share))?;
        if away {
            self.cross_worker.inc();
        }
        Some(conn)
    }

    /// `pick_for`, waiting until `deadline` for a connection to come up.
    pub async fn pick_until(
        &self,
        affinity: &Affinity<'_>,
        deadline: Instant,
    ) -> Option<(usize, Arc<Conn>)> {
        loop {
            if let Some(c) = self.pick_for(affinity) {
                return Some(c);
            }
            if Instant::now() + WAIT_STEP > deadline {
                return None;
            }
            sleep(WAIT_STEP).await;
        }
    }
}

/// How much more a connection of the session's own worker may carry than
/// the least-loaded one and still be preferred: a quarter of that load,
/// plus one.
const LOCAL_SLACK_DIVISOR: usize = 4;

/// Of `conns` (each with "run by another worker"), the one a session
/// takes: the least-loaded connection of its own worker, unless that
/// carries more than `1 + min / LOCAL_SLACK_DIVISOR` sessions over the
/// least-loaded of all (`min`), which it then takes. Locality saves a
/// cross-thread wake-up per message, but the kernel's hash spreads
/// clients evenly over the workers only when there are many of them, and
/// the application may run one process per connection: the imbalance a
/// session's worker can cause is bounded, not free.
fn choose(conns: impl Iterator<Item = (bool, Arc<Conn>)>) -> Option<(bool, Arc<Conn>)> {
    choose_by(conns, |c| c.session_count())
}

/// `choose` over anything that has a session count: unit-testable
/// without connections.
fn choose_by<C: Clone>(
    conns: impl Iterator<Item = (bool, C)>,
    sessions: impl Fn(&C) -> usize,
) -> Option<(bool, C)> {
    let mut least: Option<(bool, C, usize)> = None;
    let mut local: Option<(C, usize)> = None;
    for (away, c) in conns {
        let n = sessions(&c);
        if !away && local.as_ref().is_none_or(|(_, m)| n < *m) {
            local = Some((c.clone(), n));
        }
        if least.as_ref().is_none_or(|(_, _, m)| n < *m) {
            least = Some((away, c, n));
        }
    }
    let (away, c, min) = least?;
    match local {
        Some((l, n)) if n <= min + 1 + min / LOCAL_SLACK_DIVISOR => Some((false, l)),
        _ => Some((away, c)),
    }
}

#[cfg(test)]
mod tests {
    use super::choose_by;

    /// (away, name, sessions) → the pick's (away, name).
    fn pick(conns: &[(bool, &'static str, usize)]) -> Option<(bool, &'static str)> {
        let load = |name: &&'static str| conns.iter().find(|c| c.1 == *name).unwrap().2;
        choose_by(conns.iter().map(|c| (c.0, c.1)), load)
    }

    #[test]
    fn a_session_takes_its_own_workers_least_loaded_connection() {
        let conns = [
            (true, "a", 3),
            (false, "b", 9),
            (false, "c", 4),
            (true, "d", 5),
        ];
        assert_eq!(pick(&conns), Some((false, "c")), "4 is within 3 + 1 + 0");
    }

    #[test]
    fn a_local_connection_too_far_over_the_least_gives_way() {
        // 8 sessions over the least's 4: more than 4 + 1 + 4/4 = 6.
        let conns = [(true, "a", 4), (false, "b", 8)];
        assert_eq!(pick(&conns), Some((true, "a")));
        // The bound itself is still local: 100 + 1 + 25.
        let conns = [(true, "a", 100), (false, "b", 126)];
        assert_eq!(pick(&conns), Some((false, "b")));
        let conns = [(true, "a", 100), (false, "b", 127)];
        assert_eq!(pick(&conns), Some((true, "a")));
    }

    #[test]
    fn without_a_local_connection_the_least_loaded_of_all() {
        let conns = [(true, "a", 7), (true, "b", 2), (true, "c", 5)];
        assert_eq!(pick(&conns), Some((true, "b")));
        assert_eq!(pick(&[]), None);
    }

    /// Ids do not count up: a stranger cannot name live sessions by
    /// counting from one it saw (docs/mux-protocol.md §1.1). The odd
    /// multiplier keeps them distinct.
    #[test]
    fn session_ids_are_distinct_and_not_sequential() {
        let ids: Vec<u32> = (0..1000).map(|_| super::next_session_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "ids are unique");
        let steps_of_one = ids
            .windows(2)
            .filter(|w| w[1] == w[0].wrapping_add(1))
            .count();
        assert!(
            steps_of_one < 10,
            "{steps_of_one} of 999 ids followed their predecessor"
        );
    }
}
