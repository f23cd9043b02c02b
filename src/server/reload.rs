//! Zero-downtime reload: SIGHUP, `POST /reload` on the admin listener, or
//! the configuration file or a certificate file changing on disk
//! (Kubernetes ConfigMap update or Secret rotation) re-reads
//! the configuration, validates it whole, and swaps it in atomically.
//! Connections already relaying keep the settings they started with; new
//! ones get the new configuration. An invalid configuration is rejected
//! whole and the old one keeps serving.
//!
//! What cannot change without a restart — the listening sockets, the admin
//! address and the connection cap — is refused with a clear error rather
//! than half-applied.

use super::{Gateway, State};
use crate::config::{self, Config, ConfigError, Problem};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(#[from] ConfigError),
}

impl Gateway {
    /// Re-read the configuration (its file, if it came from one; else the
    /// same settings, which re-reads certificate files) and swap it in.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let _one = self.reload_lock.lock().await;
        let result = self.try_reload();
        let label = if result.is_ok() { "ok" } else { "rejected" };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        match &result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => {
                tracing::error!("configuration reload rejected, the previous one stays:\n{e}")
            }
        }
        result
    }

    fn try_reload(&self) -> Result<(), ReloadError> {
        let current = self.state();
        let source = current.config.source.clone();
        let raw = match &source {
            Some(path) => config::load_raw(Some(path))?,
            None => current.config.raw.clone(),
        };
        let mut next = Config::from_raw(raw)?;
        next.source = source;
        fixed_at_start(&current.config, &next)?;
        let policies = |c: &'_ Config| -> Vec<Arc<crate::auth::AuthPolicy>> {
            c.routes.iter().filter_map(|r| r.auth.clone()).collect()
        };
        let (old, new) = (policies(&current.config), policies(&next));
        crate::auth::keep_jwks_caches(old.iter().map(|p| &**p), new.iter().map(|p| &**p));
        let state = State::new(next, &self.metrics, &self.pools, Some(&current));
        self.state.store(Arc::new(state));
        Ok(())
    }
}

/// Settings bound to sockets or sized at start-up.
fn fixed_at_start(old: &Config, new: &Config) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    let same_listeners = old.listeners.len() == new.listeners.len()
        && old.listeners.iter().zip(&new.listeners).all(|(a, b)| {
            a.name == b.name && a.addr == b.addr && a.tls.is_some() == b.tls.is_some()
        });
    if !same_listeners {
        problems.push(Problem {
            key: "listeners".into(),
            message: "names, addresses and TLS on/off of listeners change only with a restart"
                .into(),
        });
    }
    if old.admin != new.admin {
        problems.push(Problem {
            key: "admin.listen".into(),
            message: "changes only with a restart".into(),
        });
    }
    if mux_upstreams(old) != mux_upstreams(new)
        || old.mux.batch_bytes != new.mux.batch_bytes
        || old.mux.write_delay != new.mux.write_delay
    {
        problems.push(Problem {
            key: "routes[].mode".into(),
            message: "mux upstreams (which upstreams are mux, their endpoints, pool_size and mux_secret) and [mux] change only with a restart".into(),
        });
    }
    if old.raw.fanout != new.raw.fanout {
        problems.push(Problem {
            key: "fanout".into(),
            message:
                "[fanout] (limits, publish listener and its token) changes only with a restart"
                    .into(),
        });
    }
    if old.log.format != new.log.format {
        problems.push(Problem {
            key: "log.format".into(),
            message: "changes only with a restart".into(),
        });
    }
    if old.runtime != new.runtime {
        problems.push(Problem {
            key: "runtime".into(),
            message: "changes only with a restart".into(),
        });
    }
    if old.limits.max_connections != new.limits.max_connections {
        problems.push(Problem {
            key: "limits.max_connections".into(),
            message: "changes only with a restart".into(),
        });
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

/// What a mux pool is built from: upstream name, endpoint URLs, the
/// configured `pool_size`, the mux secret.
type PoolSource = (String, Vec<String>, Option<usize>, Option<String>);

/// Upstreams of mux routes with what their pools were built from.
fn mux_upstreams(c: &Config) -> Vec<PoolSource> {
    let mut v: Vec<_> = c
        .routes
        .iter()
        .filter(|r| r.mode == crate::config::RouteMode::Mux)
        .map(|r| {
            let u = &r.upstream;
            let eps = u.endpoints.iter().map(|e| e.url.clone()).collect();
            (u.name.clone(), eps, u.pool_size, u.mux_secret.clone())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// What identifies one version of a watched file: the path it resolves to
/// (Kubernetes swaps a `..data` symlink to a new directory), the inode
/// behind it, its modification time and length. `None`: unreadable now.
type FileStamp = (
    String,
    Option<(std::path::PathBuf, u64, u64, Option<SystemTime>, u64)>,
);

fn stamp(path: &str) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    // canonicalize() and metadata() follow every symlink of the path, so a
    // ConfigMap or Secret update (an atomic rename of `..data`) changes the
    // resolved path and the inode even when the new file has the old
    // file's length and modification time.
    let seen = std::fs::canonicalize(path).ok().and_then(|real| {
        let m = std::fs::metadata(&real).ok()?;
        Some((real, m.dev(), m.ino(), m.modified().ok(), m.len()))
    });
    (path.to_string(), seen)
}

/// The stamps of every watched file: the configuration file (when
/// `reload.watch_config` is on) and every certificate and key in use.
fn fingerprint(state: &State) -> Vec<FileStamp> {
    let mut out = Vec::new();
    if let Some(source) = state
        .config
        .source
        .as_ref()
        .filter(|_| state.config.reload.watch_config)
    {
        out.push(stamp(&source.to_string_lossy()));
    }
    for l in &state.config.raw.listeners {
        for c in l.tls.iter().flat_map(|t| &t.certificates) {
            for path in [&c.cert, &c.key] {
                out.push(stamp(path));
            }
        }
    }
    out
}

/// Reload when the configuration file or a certificate or key file
/// changes on disk (`reload.poll_interval`); until `stop`.
pub(super) async fn watch_files(gw: Arc<Gateway>, stop: CancellationToken) {
    let mut last = fingerprint(&gw.state());
    loop {
        let interval = gw.state().config.reload.poll_interval;
        tokio::select! {
            // Process exit.
            _ = stop.cancelled() => return,
            // Next look at the files.
            _ = tokio::time::sleep(interval) => {}
        }
        let now = fingerprint(&gw.state());
        if now != last {
            tracing::info!("configuration or certificate files changed on disk; reloading");
            // A half-written file fails validation, is logged and counted
            // as rejected, and is retried on its next change; the old
            // configuration keeps serving meanwhile.
            let _ = gw.reload().await;
            // What the (possibly new) configuration watches, as it is now.
            last = fingerprint(&gw.state());
        }
    }
}
