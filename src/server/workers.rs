//! Where the accept loops run (`[runtime]`, `crate::config::RuntimeConfig`).
//!
//! With one socket set (`work_stealing`, or a single worker) every listener
//! has one socket and its accept loop runs on the caller's runtime, as
//! before. With `thread_per_core` and N workers, each listener is bound N
//! times on the same address with `SO_REUSEPORT`; worker 0's sockets are
//! served by the caller's runtime (the main thread, which also runs the
//! admin endpoint, signals and reloads), workers 1..N each get a
//! current-thread runtime on a thread of their own. The kernel picks the
//! socket — and so the worker — of each new connection, and the
//! connection's tasks stay on that worker's thread for their whole life.
//! The mux pools' connections are dealt round the workers
//! (`mux::pool::Pool::start`), so a mux session finds one on its own
//! thread when `pool_size` is at least the worker count.
//!
//! What is per process stays shared through the [`Gateway`]: the
//! configuration snapshot (`ArcSwap`), metrics (atomic counters), the
//! connection cap and per-client limits, and the drain state — its signal
//! is a `CancellationToken` every worker's accept loops and sessions
//! select on, and its task tracker counts every worker's connections, so
//! the drain ends when the last one on any worker does. A worker thread
//! runs until the drain is over (`Shutdown::stopped`).

use super::{listener, Bound, Gateway};
use crate::config::Config;
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};

thread_local! {
    /// This thread's worker number: 0 on the caller's runtime (and on any
    /// thread that is not a worker), 1..N on the thread-per-core workers.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The worker whose thread runs the caller: what a new mux session
/// compares with its candidate connections' workers (`mux::pool`).
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// Binding failed: the address is in use, not local, not permitted…
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({key}): {source}")]
pub struct BindError {
    /// The configuration key of the address, e.g. `listeners[0].listen`.
    pub key: String,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The gateway could not start: nothing is served.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A worker's runtime or thread could not be created (out of memory
    /// or threads).
    #[error("cannot start worker {worker} (runtime.workers): {source}")]
    Worker {
        worker: usize,
        #[source]
        source: std::io::Error,
    },
}

/// One bound listening socket: (listener index, worker), name, socket.
type Socket = ((usize, usize), String, TcpListener);

/// Every listening socket, bound and registered with the runtime of the
/// worker that will accept on it; nothing accepts yet.
pub(super) struct Sockets {
    /// What `start` reports: one entry per configured listener.
    pub listeners: Vec<Bound>,
    /// Worker 0's sockets (served by the caller's runtime).
    first: Vec<Socket>,
    /// Workers 1.., each with its runtime and its sockets.
    others: Vec<(Worker, Vec<Socket>)>,
}

/// A worker's runtime before its thread runs it. Dropped unused (a later
/// bind failed) it is shut down in the background: dropping a runtime
/// inside the caller's async context would panic.
struct Worker(Option<Runtime>);

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Worker {
    fn runtime(&self) -> &Runtime {
        self.0
            .as_ref()
            .expect("a worker's runtime is taken only by serve")
    }
}

/// Bind `sets` sockets per listener (see the module docs): the first on
/// the configured address, which resolves a port 0, the others on the
/// address the first got.
pub(super) fn bind(config: &Config, sets: usize) -> Result<Sockets, StartError> {
    let mut others = Vec::with_capacity(sets.saturating_sub(1));
    for worker in 1..sets {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StartError::Worker { worker, source })?;
        others.push((Worker(Some(rt)), Vec::new()));
    }
    let reuseport = sets > 1;
    let mut listeners = Vec::new();
    let mut first = Vec::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let key = || format!("listeners[{i}].listen");
        let socket = listener::bind(l.addr, reuseport).map_err(|source| BindError {
            key: key(),
            addr: l.addr,
            source,
        })?;
        let addr = socket.local_addr().map_err(|source| BindError {
            key: key(),
            addr: l.addr,
            source,
        })?;
        for (w, (rt, sockets)) in others.iter_mut().enumerate() {
            // Registered with the worker's own I/O driver.
            let _entered = rt.runtime().enter();
            let socket = listener::bind(addr, true).map_err(|source| BindError {
                key: key(),
                addr,
                source,
            })?;
            sockets.push(((i, w + 1), l.name.clone(), socket));
        }
        listeners.push(Bound {
            name: l.name.clone(),
            addr,
            tls: l.tls.is_some(),
        });
        first.push(((i, 0), l.name.clone(), socket));
    }
    Ok(Sockets {
        listeners,
        first,
        others,
    })
}

impl Sockets {
    /// Start accepting: worker 0's loops on the caller's runtime, every
    /// other worker's on its own thread, which lives until the drain is
    /// over. Returns each worker's runtime, by worker number, for the
    /// tasks that belong on a worker of their own (the mux connections).
    pub(super) fn serve(self, gw: &Arc<Gateway>) -> Result<Vec<Handle>, StartError> {
        let mut handles = vec![Handle::current()];
        for (at, name, socket) in self.first {
            tokio::spawn(listener::accept_loop(Arc::clone(gw), at, name, socket));
        }
        for (w, (mut rt, sockets)) in self.others.into_iter().enumerate() {
            let worker = w + 1;
            for (at, name, socket) in sockets {
                let task = listener::accept_loop(Arc::clone(gw), at, name, socket);
                rt.runtime().spawn(task);
            }
            handles.push(rt.runtime().handle().clone());
            let stopped = gw.shutdown.stopped().clone();
            std::thread::Builder::new()
                .name(format!("tidegate-w{worker}"))
                // A current-thread runtime runs its tasks only while it is
                // driven: block on the end of the drain. (If the thread
                // cannot start, `rt` is dropped with the closure and shut
                // down in the background.)
                .spawn(move || {
                    WORKER.with(|w| w.set(worker));
                    if let Some(rt) = rt.0.take() {
                        rt.block_on(stopped.cancelled_owned());
                    }
                })
                .map_err(|source| StartError::Worker { worker, source })?;
        }
        Ok(handles)
    }
}
