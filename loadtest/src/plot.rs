//! SVG plots for `--report`: the latency percentile curve (on a "nines"
//! axis, where tail latency is visible) and throughput per second.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Tick labels of the percentile axis: x = number of nines.
fn nines_label(x: &f64) -> String {
    match x.round() as i32 {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        3 => "99.9%".into(),
        4 => "99.99%".into(),
        _ => "99.999%".into(),
    }
}

/// Latency (µs, log scale) against percentile, one line per series; each
/// series is (percentile, µs) pairs as from `stats::percentile_curve`.
pub fn latency_curve(path: &Path, title: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let pts: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, curve)| {
            let xy = curve
                .iter()
                .filter(|(p, _)| *p < 100.0)
                .map(|&(p, us)| (-(1.0 - p / 100.0).max(1e-5).log10(), us.max(0.001)))
                .collect();
            (name.clone(), xy)
        })
        .collect();
    let max_y = pts
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let min_y = pts
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .fold(max_y, f64::min);
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..5f64,
            ((min_y * 0.8).max(0.001)..max_y * 1.2).log_scale(),
        )
        .map_err(|e| anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_labels(6)
        .x_label_formatter(&nines_label)
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    lines(&mut chart, pts)?;
    root.present().map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}

/// One line per named series, each in its own colour, and the legend.
fn lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    series: impl IntoIterator<Item = (String, Vec<(f64, f64)>)>,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, (name, xy)) in series.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(xy, color.stroke_width(2)))
            .map_err(|e| anyhow!("plot: {e}"))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}

/// Units per second over time, one line per series.
pub fn throughput(
    path: &Path,
    title: &str,
    unit: &str,
    series: &[(String, Vec<f64>)],
) -> Result<()> {
    let max_x = series
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_y = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.0, f64::max);
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max_x, 0f64..max_y * 1.1)
        .map_err(|e| anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds into the measured window")
        .y_desc(unit)
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    let pts = series.iter().map(|(name, v)| {
        let xy = v.iter().enumerate().map(|(s, &r)| (s as f64 + 1.0, r));
        (name.clone(), xy.collect())
    });
    lines(&mut chart, pts)?;
    root.present().map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}

/// One bar per `(name, value)`, each labelled with its value: for figures
/// that are one number per target, such as bench.sh's idle RSS per
/// connection.
pub fn bars(path: &Path, title: &str, unit: &str, bars: &[(String, f64)]) -> Result<()> {
    let max_y = bars.iter().map(|(_, v)| *v).fold(1.0, f64::max);
    let n = bars.len() as i32;
    let root = SVGBackend::new(path, (700, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        // `into_segmented` makes one segment per value of the range,
        // both ends included: 0..n-1 gives exactly n bars.
        .build_cartesian_2d((0..(n - 1).max(0)).into_segmented(), 0f64..max_y * 1.15)
        .map_err(|e| anyhow!("plot: {e}"))?;
    let name_of = |x: &SegmentValue<i32>| match x {
        SegmentValue::CenterOf(i) => bars
            .get(*i as usize)
            .map(|(name, _)| name.clone())
            .unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&name_of)
        .y_desc(unit)
        .draw()
        .map_err(|e| anyhow!("plot: {e}"))?;
    let label_style =
        TextStyle::from(("sans-serif", 16).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (i, (_, v)) in bars.iter().enumerate() {
        let i = i as i32;
        let color = Palette99::pick(i as usize).to_rgba();
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), *v),
            ],
            color.filled(),
        );
        bar.set_margin(0, 0, 25, 25);
        chart
            .draw_series(std::iter::once(bar))
            .map_err(|e| anyhow!("plot: {e}"))?;
        let label = Text::new(
            format!("{v:.0} {unit}"),
            (SegmentValue::CenterOf(i), v + max_y * 0.02),
            label_style.clone(),
        );
        chart
            .draw_series(std::iter::once(label))
            .map_err(|e| anyhow!("plot: {e}"))?;
    }
    root.present().map_err(|e| anyhow!("plot: {e}"))?;
    Ok(())
}
