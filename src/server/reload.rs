//! Zero-downtime reload: SIGHUP, `POST /reload` on the admin listener, or a
//! certificate file changing on disk (Kubernetes Secret rotation) re-reads
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
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How often certificate and key files are checked for changes.
const CERT_POLL: Duration = Duration::from_secs(2);

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
        self.state
            .store(Arc::new(State::new(next, &self.metrics, &self.pools)));
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
    if mux_upstreams(old) != mux_upstreams(new) || old.mux.batch_bytes != new.mux.batch_bytes {
        problems.push(Problem {
            key: "routes[].mode".into(),
            message: "mux upstreams (which upstreams are mux, their endpoints, pool_size and mux_secret) and [mux] change only with a restart".into(),
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

/// Upstreams of mux routes with what their pools were built from.
fn mux_upstreams(c: &Config) -> Vec<(String, Vec<String>, usize, Option<String>)> {
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

/// (path, modified, length) of every certificate and key file in use.
fn fingerprint(state: &State) -> Vec<(String, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    for l in &state.config.raw.listeners {
        for c in l.tls.iter().flat_map(|t| &t.certificates) {
            for path in [&c.cert, &c.key] {
                // metadata() follows symlinks, as Kubernetes' ..data swap needs.
                let meta = std::fs::metadata(path).ok();
                out.push((
                    path.clone(),
                    meta.as_ref().and_then(|m| m.modified().ok()),
                    meta.map_or(0, |m| m.len()),
                ));
            }
        }
    }
    out
}

/// Reload when a certificate or key file changes; until `stop`.
pub(super) async fn watch_certificates(gw: Arc<Gateway>, stop: CancellationToken) {
    let mut last = fingerprint(&gw.state());
    if last.is_empty() {
        return;
    }
    loop {
        tokio::select! {
            // Process exit.
            _ = stop.cancelled() => return,
            // Next look at the files.
            _ = tokio::time::sleep(CERT_POLL) => {}
        }
        let now = fingerprint(&gw.state());
        if now != last {
            tracing::info!("certificate files changed on disk; reloading");
            // A half-written pair fails validation and is retried on the
            // next change; the old certificates keep serving meanwhile.
            let _ = gw.reload().await;
            last = fingerprint(&gw.state());
            if last != now {
                last = now;
            }
        }
    }
}
