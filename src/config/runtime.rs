//! `[runtime]`: how many worker threads serve clients and how connections
//! are spread over them. Read once at start (a change needs a restart).
//!
//! The two layouts, measured against each other in docs/performance.md
//! (issue #20):
//!
//! - `thread_per_core` (default): each worker is a current-thread tokio
//!   runtime on a thread of its own, accepting on its own `SO_REUSEPORT`
//!   listening socket for every listener; a connection lives and dies on
//!   the worker whose socket the kernel handed it to. No task migrates, so
//!   no wake-up crosses threads on the relay path and no task can wait in a
//!   queue of a worker that the OS has descheduled.
//! - `work_stealing`: one tokio multi-thread runtime with `workers`
//!   threads and a single listening socket per listener.
//!
//! With one worker both are the same: everything on the main thread.

use super::raw::RawRuntime;
use super::validate::Problems;

/// Most worker threads a configuration may ask for: far above any core
/// count this runs on, low enough that a typo (`workers = 10000`) is an
/// error rather than ten thousand threads.
pub const MAX_WORKERS: u64 = 1024;

/// `runtime.layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One single-threaded runtime per worker, each with its own
    /// `SO_REUSEPORT` listeners.
    ThreadPerCore,
    /// One multi-thread (work-stealing) runtime.
    WorkStealing,
}

/// `[runtime]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub layout: Layout,
    /// `None`: one per available core (resolved by [`RuntimeConfig::workers`]).
    pub workers: Option<usize>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            layout: Layout::ThreadPerCore,
            workers: None,
        }
    }
}

impl RuntimeConfig {
    /// The worker count in force: the configured one, else the cores this
    /// process may run on (its CPU affinity mask, so `taskset -c 0` gives 1).
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

impl RuntimeConfig {
    /// Threads with a runtime and listening sockets of their own: the
    /// worker count with `thread_per_core`, else 1 (the work-stealing
    /// runtime shares one socket per listener).
    pub fn socket_sets(&self) -> usize {
        match self.layout {
            Layout::ThreadPerCore => self.workers(),
            Layout::WorkStealing => 1,
        }
    }

    /// A mux upstream's `pool_size` when it is not set: two connections
    /// per endpoint (one can be replaced while the other carries on), or
    /// one per thread-per-core worker where there are more, so that each
    /// worker has a connection of its own (`mux::pool::Pool::start`); at
    /// most 64, the most `pool_size` may be set to.
    pub fn default_pool_size(&self) -> usize {
        self.socket_sets().clamp(2, 64)
    }

    /// Descriptors this layout holds besides the first set of listening
    /// sockets and runtime (which `fds::BASE_RESERVE` counts): every
    /// further thread-per-core worker has a socket per listener, an epoll
    /// and a waker descriptor.
    pub fn extra_descriptors(&self, listeners: usize) -> u64 {
        (self.socket_sets() as u64 - 1) * (listeners as u64 + 2)
    }
}

pub(super) fn runtime(p: &mut Problems, raw: &RawRuntime) -> RuntimeConfig {
    let layout = match raw.layout.as_str() {
        "thread_per_core" => Layout::ThreadPerCore,
        "work_stealing" => Layout::WorkStealing,
        other => {
            p.push(
                "runtime.layout",
                format!("{other:?} is not a layout: use \"thread_per_core\" or \"work_stealing\""),
            );
            Layout::ThreadPerCore
        }
    };
    let workers = match raw.workers {
        0 => None,
        n if n <= MAX_WORKERS => Some(n as usize),
        n => {
            p.push(
                "runtime.workers",
                format!("{n} is more than {MAX_WORKERS}; use 0 for one per core"),
            );
            None
        }
    };
    RuntimeConfig { layout, workers }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(layout: &str, workers: u64) -> (RuntimeConfig, Vec<String>) {
        let mut p = Problems::default();
        let raw = RawRuntime {
            layout: layout.into(),
            workers,
        };
        let c = runtime(&mut p, &raw);
        (c, p.0.into_iter().map(|x| x.key).collect())
    }

    #[test]
    fn defaults_to_thread_per_core_on_every_core() {
        let (c, problems) = check(&RawRuntime::default().layout, 0);
        assert!(problems.is_empty());
        assert_eq!(c, RuntimeConfig::default());
        assert!(c.workers() >= 1);
    }

    #[test]
    fn reads_both_layouts_and_a_worker_count() {
        let (c, _) = check("work_stealing", 3);
        assert_eq!(c.layout, Layout::WorkStealing);
        assert_eq!(c.workers(), 3);
    }

    #[test]
    fn reports_an_unknown_layout_and_too_many_workers_together() {
        let (_, problems) = check("fibers", MAX_WORKERS + 1);
        assert_eq!(problems, ["runtime.layout", "runtime.workers"]);
    }
}
