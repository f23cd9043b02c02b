//! The operational sections as written: `[admin]`, `[log]`, `[reload]`,
//! `[readiness]`, `[drain]` and `[runtime]` — how the process is run and
//! watched, not how traffic is carried. Validated by `config::ops`,
//! `config::runtime` and `validate`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRuntime {
    /// `thread_per_core`: each worker is a single-threaded runtime on its
    /// own thread with its own `SO_REUSEPORT` listening sockets (no task
    /// migration); `work_stealing`: one tokio multi-thread runtime.
    pub layout: String,
    /// Worker threads; 0: one per available core. `--workers` overrides.
    pub workers: u64,
    /// Scheduler slice the gateway's threads request from Linux (EEVDF,
    /// 6.12+), in microseconds; 0: the kernel's default.
    /// `--scheduler-slice-us` overrides.
    pub scheduler_slice_us: u64,
}

impl Default for RawRuntime {
    fn default() -> Self {
        Self {
            layout: "thread_per_core".into(),
            workers: 0,
            scheduler_slice_us: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// `text` (one human-readable line per event) or `json` (one JSON
    /// object per line, for log shippers). Fixed at start.
    pub format: String,
    /// The access log: one line per session end, target `tidegate::access`.
    pub access: RawAccessLog,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
            access: RawAccessLog::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccessLog {
    /// Default for every route; `routes[].access_log` overrides it.
    pub enabled: bool,
    /// Fraction of sessions logged, 0.0..=1.0; `routes[].access_log_sample`
    /// overrides it.
    pub sample: f64,
}

impl Default for RawAccessLog {
    fn default() -> Self {
        Self {
            enabled: false,
            sample: 1.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReload {
    /// Reload when the configuration file changes on disk (a Kubernetes
    /// ConfigMap update included).
    pub watch_config: bool,
    /// How often the configuration and certificate files are checked.
    pub poll_interval: String,
}

impl Default for RawReload {
    fn default() -> Self {
        Self {
            watch_config: true,
            poll_interval: "2s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReadiness {
    /// `/readyz` answers 503 unless every passthrough upstream has an
    /// endpoint that accepts a TCP connection.
    pub require_upstream: bool,
    /// How often each passthrough endpoint is probed with a TCP connect.
    pub probe_interval: String,
}

impl Default for RawReadiness {
    fn default() -> Self {
        Self {
            require_upstream: false,
            probe_interval: "5s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Empty string disables the admin listener.
    pub listen: String,
    /// Bearer token required on every admin endpoint; empty: none (then
    /// `POST /reload` needs the `X-Tidegate-Admin` header instead).
    pub token: String,
    /// Host names (besides loopback and the listen address) the admin
    /// listener answers to; any other `Host` gets 421 (DNS rebinding).
    pub hosts: Vec<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9090".into(),
            token: String::new(),
            hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDrain {
    /// Longest time the process waits for connections after a signal.
    pub grace: String,
    /// Window over which clients are sent Close 1001, so they do not all
    /// reconnect in the same instant.
    pub spread: String,
}

impl Default for RawDrain {
    fn default() -> Self {
        Self {
            grace: "30s".into(),
            spread: "2s".into(),
        }
    }
}
