//! The outcome of one run, as printed, serialised and plotted.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

use crate::monitor::Window;
use crate::stats::{per_second, Percentiles};

/// One scenario run against one target.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// "echo", "rate", "connect" or "idle".
    pub scenario: &'static str,
    /// The URL that was loaded.
    pub target: String,
    /// The scenario's parameters, for the report.
    pub params: BTreeMap<String, Value>,
    /// Connections opened (or attempted, for `connect`).
    pub connections: u64,
    /// "msgs/s" or "connects/s".
    pub unit: &'static str,
    /// Units completed in the measured window.
    pub completed: u64,
    /// Length of the measured window.
    pub measured_secs: f64,
    /// `completed / measured_secs`.
    pub rate: f64,
    /// Round-trip (or handshake) latency.
    pub latency: Percentiles,
    /// Failures by label.
    pub errors: BTreeMap<String, u64>,
    /// The first message seen for each failure label.
    pub error_examples: BTreeMap<String, String>,
    /// Units completed in each second of the window.
    pub per_second: Vec<f64>,
    /// Generator CPU use over the window, in percent of one core.
    pub generator_cpu_pct: Option<f64>,
    /// Generator CPU per completed unit, in microseconds: its headroom is
    /// this figure against the target's.
    pub generator_cpu_us_per_unit: Option<f64>,
    /// CPU seconds the `--pid` process used in the window.
    pub target_cpu_secs: Option<f64>,
    /// `target_cpu_secs` per completed unit, in microseconds.
    pub target_cpu_us_per_unit: Option<f64>,
    /// Seconds the `--pid` process was on a CPU in the window (perf
    /// `task-clock`, `oncpu`); `None` without permission to count.
    pub target_oncpu_secs: Option<f64>,
    /// `target_oncpu_secs` per completed unit, in microseconds.
    pub target_oncpu_us_per_unit: Option<f64>,
    /// Scenario-specific figures (send lag, unanswered, resumed, RSS...).
    pub extra: BTreeMap<String, Value>,
    /// The full latency histogram, for the percentile plot.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

impl RunResult {
    /// Assembles a result from the monitor's window and the final histogram.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: &'static str,
        target: String,
        params: BTreeMap<String, Value>,
        connections: u64,
        unit: &'static str,
        completed: u64,
        window: Window,
        histogram: Histogram<u64>,
        shared: &crate::stats::Shared,
    ) -> Self {
        let secs = window.wall.as_secs_f64();
        let target_cpu_us_per_unit = window
            .target_cpu
            .filter(|_| completed > 0)
            .map(|cpu| cpu * 1e6 / completed as f64);
        Self {
            scenario,
            target,
            params,
            connections,
            unit,
            completed,
            measured_secs: secs,
            rate: per_second(completed, window.wall),
            latency: Percentiles::from_histogram(&histogram),
            errors: shared.errors(),
            error_examples: shared.error_examples(),
            per_second: window.per_second,
            generator_cpu_pct: window
                .generator_cpu
                .filter(|_| secs > 0.0)
                .map(|c| c * 100.0 / secs),
            generator_cpu_us_per_unit: window
                .generator_cpu
                .filter(|_| completed > 0)
                .map(|cpu| cpu * 1e6 / completed as f64),
            target_cpu_secs: window.target_cpu,
            target_cpu_us_per_unit,
            target_oncpu_secs: window.target_oncpu,
            target_oncpu_us_per_unit: window
                .target_oncpu
                .filter(|_| completed > 0)
                .map(|cpu| cpu * 1e6 / completed as f64),
            extra: BTreeMap::new(),
            histogram,
        }
    }
}

/// Builds a parameter map from `name => value` pairs.
#[macro_export]
macro_rules! params {
    ($($k:literal => $v:expr),* $(,)?) => {{
        let mut m = std::collections::BTreeMap::new();
        $( m.insert($k.to_string(), serde_json::json!($v)); )*
        m
    }};
}
