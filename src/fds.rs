//! The process's file-descriptor budget (issue #22).
//!
//! Every client holds descriptors — two when it is relayed to an upstream
//! connection of its own, one in mux mode — and so do the listeners, the
//! mux pools, the admin endpoint, auth requests and DNS lookups. When the
//! table is full, `accept` fails with EMFILE and a client waits in the
//! listen backlog with no answer at all. So, as HAProxy does with
//! `ulimit-n`, the connection cap is derived at start from `RLIMIT_NOFILE`:
//! a client over it gets a clean 503 from the accept loop instead.
//!
//! The table can still fill from outside the client count (upstream
//! connects, auth, DNS, admin scrapes). For that case one spare descriptor
//! is kept: on EMFILE the accept loop gives it back, accepts one waiting
//! client with it, answers and closes that client, and takes the spare
//! again — so queued clients are answered rather than left hanging, and
//! the loop never spins on a listener that stays readable.

use crate::config::{Config, RouteMode};
use std::fs::File;
use std::sync::Mutex;

mod extra;
pub use extra::{Extra, EXTRA};

/// Descriptors the process holds besides clients, listeners and pools:
/// stdio, the runtime (epoll, eventfd, signal pipe), the spare below,
/// config and certificate reads on reload, DNS lookups and a few admin
/// scrapes at once. An idle gateway uses 13 (measured with
/// `ls /proc/PID/fd`); the rest is headroom.
pub const BASE_RESERVE: u64 = 32;

/// Extra headroom when a route authenticates: JWKS fetches and forward-auth
/// requests open connections of their own while handshakes are under way.
pub const AUTH_RESERVE: u64 = 16;

/// What the configuration asks of the descriptor table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Descriptors per client connection: 2 if any route relays clients
    /// to their own upstream connection (passthrough), 1 if every route is
    /// mux (clients share the pooled connections).
    pub per_client: u64,
    /// Descriptors held besides clients: the base reserve, one per
    /// listener, the mux pools' connections, auth headroom.
    pub reserve: u64,
}

impl Demand {
    pub fn of(config: &Config) -> Demand {
        let passthrough = config
            .routes
            .iter()
            .any(|r| r.mode == RouteMode::Passthrough);
        let mut pooled: Vec<&str> = Vec::new();
        let mut pool_conns = 0u64;
        for r in config.routes.iter().filter(|r| r.mode == RouteMode::Mux) {
            // One pool per upstream, however many routes use it.
            if !pooled.contains(&r.upstream.name.as_str()) {
                pooled.push(&r.upstream.name);
                let slots = r.upstream.slots_per_endpoint(&config.runtime);
                pool_conns += (slots * r.upstream.endpoints.len()) as u64;
            }
        }
        let auth = if config.routes.iter().any(|r| r.auth.is_some()) {
            AUTH_RESERVE
        } else {
            0
        };
        Demand {
            per_client: if passthrough || config.routes.is_empty() {
                2
            } else {
                1
            },
            reserve: BASE_RESERVE
                + config.listeners.len() as u64
                + config.runtime.extra_descriptors(config.listeners.len())
                + pool_conns
                + auth,
        }
    }

    /// Descriptors `clients` connections need, reserve included.
    pub fn needed(&self, clients: u64) -> u64 {
        self.reserve
            .saturating_add(clients.saturating_mul(self.per_client))
    }
}

/// The connection cap in force and how it was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Client connections held at once: `limits.max_connections`, lowered
    /// to what the descriptor limit fits. At least 1.
    pub connections: usize,
    /// Connections the descriptor limit fits.
    pub fits: u64,
    /// The configured cap did not fit and was lowered.
    pub lowered: bool,
}

/// The cap for a descriptor limit `nofile` (the soft `RLIMIT_NOFILE`).
/// Pure, so it is table-tested; [`connection_cap`] feeds it the real limit.
pub fn derive(nofile: u64, configured: usize, demand: Demand) -> Cap {
    let fits = nofile.saturating_sub(demand.reserve) / demand.per_client.max(1);
    let lowered = (configured as u64) > fits;
    // Never 0: a gateway that refuses everyone is worse than one that
    // meets EMFILE now and then (the spare still answers those clients).
    let connections = if lowered {
        usize::try_from(fits.max(1)).unwrap_or(usize::MAX)
    } else {
        configured
    };
    Cap {
        connections,
        fits,
        lowered,
    }
}

/// The cap for this process: reads `RLIMIT_NOFILE` (raised to the hard
/// limit at start, see `main`), logs the outcome — a warning when
/// `limits.max_connections` does not fit — and keeps the spare descriptor.
pub fn connection_cap(config: &Config) -> Cap {
    keep_spare();
    let configured = config.limits.max_connections;
    let demand = Demand::of(config);
    let (soft, hard) = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read RLIMIT_NOFILE; connection cap not derived");
            return Cap {
                connections: configured,
                fits: u64::MAX,
                lowered: false,
            };
        }
    };
    let cap = derive(soft, configured, demand);
    let room = soft.saturating_sub(demand.needed(cap.connections as u64));
    EXTRA.reset(room);
    tracing::info!(
        descriptors = room,
        "left over by the connection cap for fan-out's direct delivery (one per subscribed plain-TCP session)"
    );
    // The built-in default is not an operator's promise: lowering it to the
    // descriptor limit is expected (a stock 20,000 `nofile` fits 9,983
    // passthrough clients), so say so without a warning at every start.
    let default = configured as u64 == crate::config::raw::DEFAULT_MAX_CONNECTIONS;
    if cap.lowered && default {
        tracing::info!(
            cap = cap.connections,
            nofile = soft,
            "the default limits.max_connections is lowered to what the open-file limit fits"
        );
    } else if cap.lowered {
        tracing::warn!(
            configured,
            cap = cap.connections,
            nofile = soft,
            nofile_hard = hard,
            needed = demand.needed(configured as u64),
            per_client = demand.per_client,
            reserve = demand.reserve,
            "limits.max_connections does not fit the open-file limit; \
             clients over the lower cap get 503 (raise LimitNOFILE / ulimit -n)"
        );
    } else {
        tracing::info!(
            max_connections = configured,
            nofile = soft,
            fits = cap.fits,
            "connection cap within the open-file limit"
        );
    }
    cap
}

/// The spare descriptor (see the module docs). Process-wide like the
/// descriptor table it guards; only touched at start and on EMFILE.
static SPARE: Mutex<Option<File>> = Mutex::new(None);

/// Hold the spare descriptor, if not held already and one can be had.
pub fn keep_spare() {
    let mut spare = SPARE.lock().unwrap_or_else(|p| p.into_inner());
    if spare.is_none() {
        *spare = File::open("/dev/null").ok();
    }
}

/// Close the spare so the next `accept` can succeed. False if there was
/// none to give back (it could not be taken again since the last time).
pub fn release_spare() -> bool {
    let mut spare = SPARE.lock().unwrap_or_else(|p| p.into_inner());
    spare.take().is_some()
}

/// EMFILE (process table full) or ENFILE (system table full).
pub fn table_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

#[cfg(test)]
mod tests;
