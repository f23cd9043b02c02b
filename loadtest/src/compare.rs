//! `compare`: one scenario against several named targets, run in
//! alternation (A B C A B C ...) so that drift over time — thermal state,
//! other load, page cache — falls on every target alike. Each target's
//! figure is the median over its rounds, and its ratio is to the first
//! target's median. With a pid, the process's CPU time over the measured
//! windows is divided by the units it served: the cost per message (or per
//! connection) that decides how many cores a deployment needs.

use std::time::Duration;

use serde::Serialize;

use crate::result::RunResult;
use crate::scenario::{Ctx, Spec};
use crate::stats::{median, ratio};
use crate::target::NamedTarget;

/// One target's line in the comparison table.
#[derive(Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub url: String,
    pub pid: Option<u32>,
    /// Median of the per-round rates.
    pub median_rate: f64,
    /// Median of the per-round p99 latencies, in microseconds.
    pub median_p99_us: f64,
    /// Median of the per-round maximum latencies, in microseconds (a
    /// stall that happens in every round shows; one outlier does not).
    pub median_max_us: f64,
    /// `median_rate` over the first target's.
    pub ratio: Option<f64>,
    /// Target CPU per unit over all rounds, in microseconds.
    pub cpu_us_per_unit: Option<f64>,
    /// Median generator CPU use, in percent of one core.
    pub generator_cpu_pct: Option<f64>,
    /// Generator CPU per unit over all rounds, in microseconds: the
    /// generator has headroom while this is well below `cpu_us_per_unit`.
    pub generator_cpu_us_per_unit: Option<f64>,
    /// Every round's full result.
    pub runs: Vec<RunResult>,
}

/// The whole comparison.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub scenario: &'static str,
    pub unit: &'static str,
    pub rounds: usize,
    pub rows: Vec<Row>,
}

/// Runs `spec` `rounds` times over `targets`; `ctx_for` builds each
/// target's context (connector, pid).
pub async fn run(
    targets: &[NamedTarget],
    rounds: usize,
    pause: Duration,
    spec: &Spec,
    ctx_for: impl Fn(&NamedTarget) -> anyhow::Result<Ctx>,
) -> anyhow::Result<Comparison> {
    let ctxs = targets
        .iter()
        .map(&ctx_for)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut runs: Vec<Vec<RunResult>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds.max(1) {
        for (i, (t, ctx)) in targets.iter().zip(&ctxs).enumerate() {
            if ctx.progress {
                eprintln!("round {}/{} — {}", round + 1, rounds.max(1), t.name);
            }
            let r = spec
                .run(ctx)
                .await
                .map_err(|e| e.context(format!("target {} round {}", t.name, round + 1)))?;
            runs[i].push(r);
            tokio::time::sleep(pause).await;
        }
    }
    let mut rows: Vec<Row> = targets
        .iter()
        .zip(runs)
        .map(|(t, runs)| summarize(t, runs))
        .collect();
    let base = rows.first().map(|r| r.median_rate).unwrap_or(0.0);
    for r in &mut rows {
        r.ratio = ratio(r.median_rate, base);
    }
    let first = &rows[0].runs[0];
    Ok(Comparison {
        scenario: first.scenario,
        unit: first.unit,
        rounds: rounds.max(1),
        rows,
    })
}

/// Folds one target's rounds into its row (ratio filled in later).
pub fn summarize(t: &NamedTarget, runs: Vec<RunResult>) -> Row {
    let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
    let p99s: Vec<f64> = runs.iter().map(|r| r.latency.p99_us).collect();
    let maxes: Vec<f64> = runs.iter().map(|r| r.latency.max_us).collect();
    let gen: Vec<f64> = runs.iter().filter_map(|r| r.generator_cpu_pct).collect();
    let units: u64 = runs.iter().map(|r| r.completed).sum();
    let cpu: Option<f64> = runs.iter().map(|r| r.target_cpu_secs).sum();
    let gen_cpu: Option<f64> = runs
        .iter()
        .map(|r| r.generator_cpu_pct.map(|p| p / 100.0 * r.measured_secs))
        .sum();
    Row {
        name: t.name.clone(),
        url: t.target.to_string(),
        pid: t.pid,
        median_rate: median(&rates).unwrap_or(0.0),
        median_p99_us: median(&p99s).unwrap_or(0.0),
        median_max_us: median(&maxes).unwrap_or(0.0),
        ratio: None,
        cpu_us_per_unit: cpu.filter(|_| units > 0).map(|c| c * 1e6 / units as f64),
        generator_cpu_pct: median(&gen),
        generator_cpu_us_per_unit: gen_cpu
            .filter(|_| units > 0)
            .map(|c| c * 1e6 / units as f64),
        runs,
    }
}
