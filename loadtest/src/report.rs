//! Output of a run: the human summary on stdout, the `--json` object, and
//! the `--report DIR` directory (report.md plus SVG plots).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::compare::Comparison;
use crate::plot;
use crate::result::RunResult;
use crate::stats::{new_histogram, percentile_curve};

/// What a command produced.
pub enum Outcome {
    Single(Box<RunResult>),
    Compare(Comparison),
}

/// Prints `--json` output: exactly one JSON object on stdout.
pub fn print_json(o: &Outcome) -> Result<()> {
    let v = match o {
        Outcome::Single(r) => serde_json::to_string_pretty(r)?,
        Outcome::Compare(c) => serde_json::to_string_pretty(c)?,
    };
    println!("{v}");
    Ok(())
}

/// Prints the human summary.
pub fn print_human(o: &Outcome) {
    match o {
        Outcome::Single(r) => print!("{}", single_text(r)),
        Outcome::Compare(c) => print!("{}", compare_table(c)),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The plain-text summary of one run.
pub fn single_text(r: &RunResult) -> String {
    let mut s = String::new();
    let params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let (noun, what) = match r.unit {
        "msgs/s" => ("round trips", "message"),
        "reqs/s" => ("requests", "request"),
        "streams/s" => ("streams", "stream"),
        "deliveries/s" => ("deliveries", "delivery"),
        _ => ("connections", "connection"),
    };
    let _ = writeln!(s, "{} {}  ({})", r.scenario, r.target, params.join(" "));
    let _ = writeln!(
        s,
        "  {:.0} {}   ({} {noun} in {:.2} s)",
        r.rate, r.unit, r.completed, r.measured_secs
    );
    let l = &r.latency;
    let _ = writeln!(
        s,
        "  latency µs  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (mean {:.1}, n={})",
        l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us, l.count
    );
    let _ = writeln!(
        s,
        "  generator CPU {}% of one core, {} µs per {what}   target CPU {} µs per {what}",
        opt(r.generator_cpu_pct, 0),
        opt(r.generator_cpu_us_per_unit, 2),
        opt(r.target_cpu_us_per_unit, 2),
    );
    if r.errors.is_empty() {
        let _ = writeln!(s, "  errors: none");
    } else {
        let e: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "  errors: {}", e.join(" "));
        for (k, v) in &r.error_examples {
            let _ = writeln!(s, "    first {k}: {v}");
        }
    }
    for (k, v) in &r.extra {
        let _ = writeln!(s, "  {k}: {v}");
    }
    s
}

/// The comparison table (markdown, which also reads well as plain text).
pub fn compare_table(c: &Comparison) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} — {} rounds, median per target, ratio to {}\n",
        c.scenario,
        c.rounds,
        c.rows.first().map_or("-", |r| r.name.as_str())
    );
    let per = match c.unit {
        "msgs/s" => "msg",
        "reqs/s" => "req",
        _ => "conn",
    };
    let _ = writeln!(
        s,
        "| target | {} | p99 µs | max µs | ratio | target CPU µs/{per} | generator CPU µs/{per} | generator CPU % | errors |",
        c.unit
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &c.rows {
        let errors: u64 = r.runs.iter().flat_map(|x| x.errors.values()).sum();
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.1} | {:.0} | {} | {} | {} | {} | {} |",
            r.name,
            r.median_rate,
            r.median_p99_us,
            r.median_max_us,
            opt(r.ratio, 3),
            opt(r.cpu_us_per_unit, 2),
            opt(r.generator_cpu_us_per_unit, 2),
            opt(r.generator_cpu_pct, 0),
            errors
        );
    }
    s
}

/// Writes DIR/report.md, DIR/latency.svg and DIR/throughput.svg.
pub fn write_dir(dir: &Path, o: &Outcome, command_line: &str) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut md = String::new();
    let _ = writeln!(md, "# tidegate-loadtest report\n");
    let _ = writeln!(md, "Command:\n\n```\n{command_line}\n```\n");
    let (curves, series, unit, title) = match o {
        Outcome::Single(r) => {
            let _ = writeln!(md, "## Parameters\n");
            for (k, v) in &r.params {
                let _ = writeln!(md, "- {k}: {v}");
            }
            let _ = writeln!(md, "\n## Summary\n\n```\n{}```\n", single_text(r));
            let _ = writeln!(md, "## Percentiles\n");
            md.push_str(&percentile_table(
                std::slice::from_ref(r.as_ref()),
                std::slice::from_ref(&r.target),
            ));
            (
                vec![(r.target.clone(), percentile_curve(&r.histogram))],
                vec![(r.target.clone(), r.per_second.clone())],
                r.unit,
                format!("{} {}", r.scenario, r.target),
            )
        }
        Outcome::Compare(c) => {
            let _ = writeln!(md, "## Summary\n\n{}", compare_table(c));
            if let Some(first) = c.rows.first().and_then(|r| r.runs.first()) {
                let _ = writeln!(md, "## Parameters\n");
                for (k, v) in &first.params {
                    let _ = writeln!(md, "- {k}: {v}");
                }
                md.push('\n');
            }
            let _ = writeln!(md, "## Percentiles per run\n");
            let runs: Vec<RunResult> = c.rows.iter().flat_map(|r| r.runs.iter().cloned()).collect();
            let names: Vec<String> = c
                .rows
                .iter()
                .flat_map(|r| (1..=r.runs.len()).map(move |i| format!("{} #{i}", r.name)))
                .collect();
            md.push_str(&percentile_table(&runs, &names));
            let curves = c
                .rows
                .iter()
                .map(|r| {
                    let mut h = new_histogram();
                    for run in &r.runs {
                        let _ = h.add(&run.histogram);
                    }
                    (r.name.clone(), percentile_curve(&h))
                })
                .collect();
            let series = c
                .rows
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        r.runs
                            .iter()
                            .flat_map(|x| x.per_second.iter().copied())
                            .collect(),
                    )
                })
                .collect();
            (curves, series, c.unit, format!("compare: {}", c.scenario))
        }
    };
    let _ = writeln!(
        md,
        "\n## Plots\n\n![latency](latency.svg)\n\n![throughput](throughput.svg)"
    );
    plot::latency_curve(
        &dir.join("latency.svg"),
        &format!("{title}: latency"),
        &curves,
    )?;
    plot::throughput(
        &dir.join("throughput.svg"),
        &format!("{title}: {unit} per second"),
        unit,
        &series,
    )?;
    fs::write(dir.join("report.md"), md)
        .with_context(|| format!("writing {}/report.md", dir.display()))?;
    Ok(())
}

fn percentile_table(runs: &[RunResult], names: &[String]) -> String {
    let mut s = String::from("| run | rate | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (r, name) in runs.iter().zip(names) {
        let l = &r.latency;
        let _ = writeln!(
            s,
            "| {name} | {:.0} {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.rate, r.unit, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
        );
    }
    s
}
