//! The operational sections of the configuration — log format and access
//! log, reload by file watch, readiness — validated from their raw form.
//! Kept apart from `validate` so that the data-path settings read on their
//! own.

use super::raw::{RawConfig, RawRoute};
use super::validate::{duration, Problems};
use std::time::Duration;

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default formatter).
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: applied once at start.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// `[reload]`.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// Reload when the configuration file changes on disk.
    pub watch_config: bool,
    /// Look at the configuration and certificate files this often.
    pub poll_interval: Duration,
}

/// `[readiness]`.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// `/readyz` needs every passthrough upstream reachable.
    pub require_upstream: bool,
    pub probe_interval: Duration,
}

/// The three sections together.
pub(super) struct Ops {
    pub log: LogConfig,
    pub reload: ReloadConfig,
    pub readiness: Readiness,
}

pub(super) fn ops(p: &mut Problems, raw: &RawConfig) -> Ops {
    let format = match raw.log.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            p.push(
                "log.format",
                format!("{other:?} is not a log format: use \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    sample(p, "log.access.sample", raw.log.access.sample);
    Ops {
        log: LogConfig { format },
        reload: ReloadConfig {
            watch_config: raw.reload.watch_config,
            poll_interval: duration(p, "reload.poll_interval", &raw.reload.poll_interval, false),
        },
        readiness: Readiness {
            require_upstream: raw.readiness.require_upstream,
            probe_interval: duration(
                p,
                "readiness.probe_interval",
                &raw.readiness.probe_interval,
                false,
            ),
        },
    }
}

/// A route's access-log sampling rate: 0.0 (off) ..= 1.0 (every session).
pub(super) fn route_access_sample(
    p: &mut Problems,
    key: &str,
    r: &RawRoute,
    raw: &RawConfig,
) -> f64 {
    let enabled = r.access_log.unwrap_or(raw.log.access.enabled);
    let rate = match r.access_log_sample {
        Some(s) => sample(p, &format!("{key}.access_log_sample"), s),
        // `log.access.sample` is checked (and reported) once, in `ops`.
        None => raw.log.access.sample.clamp(0.0, 1.0),
    };
    if enabled {
        rate
    } else {
        0.0
    }
}

fn sample(p: &mut Problems, key: &str, value: f64) -> f64 {
    if (0.0..=1.0).contains(&value) {
        value
    } else {
        p.push(
            key,
            format!("{value} is not a fraction between 0.0 and 1.0"),
        );
        0.0
    }
}
