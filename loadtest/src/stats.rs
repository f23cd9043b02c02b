//! Counting and latency recording, shaped so that recording costs the hot
//! loop almost nothing.
//!
//! Each connection appends raw samples to its own small buffer and hands them
//! to one of a few mutex-guarded histogram shards only every
//! [`FLUSH_SAMPLES`] samples or [`FLUSH_EVERY`]: one lock per thousand
//! messages, and no per-connection histogram (which at ~200 KB each would
//! cost more memory than thousands of connections do). Each shard keeps the
//! whole-run histogram and an interval histogram the live progress line
//! drains once a second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Samples buffered per connection before they go to a shard.
pub const FLUSH_SAMPLES: usize = 1024;
/// Longest a sample waits in a connection's buffer (keeps the live p99 live).
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
const SHARDS: usize = 8;
/// Highest latency the histograms hold, in nanoseconds (larger is clamped).
const MAX_NANOS: u64 = 120_000_000_000;

/// A latency histogram in nanoseconds, 3 significant figures.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NANOS, 3).expect("constant histogram bounds are valid")
}

struct Shard {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

/// State shared by all connections of one run.
pub struct Shared {
    /// Completed units (round trips or connections) inside the measured window.
    pub completed: AtomicU64,
    /// Connections currently open.
    pub open: AtomicUsize,
    /// Failures by bounded label, with the first message seen for each
    /// (one example is what a user needs to fix a storm of the same error).
    errors: Mutex<BTreeMap<&'static str, (u64, String)>>,
    shards: Vec<Mutex<Shard>>,
    next_shard: AtomicUsize,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    total: new_histogram(),
                    interval: new_histogram(),
                })
            })
            .collect();
        Arc::new(Self {
            completed: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            errors: Mutex::new(BTreeMap::new()),
            shards,
            next_shard: AtomicUsize::new(0),
        })
    }

    /// Counts one failure under `label`; `detail` is kept for the first.
    pub fn error(&self, label: &'static str, detail: impl std::fmt::Display) {
        let mut e = self.errors.lock().expect("errors lock not poisoned");
        e.entry(label).or_insert_with(|| (0, detail.to_string())).0 += 1;
    }

    /// Failure tally so far.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        let e = self.errors.lock().expect("errors lock not poisoned");
        e.iter().map(|(k, v)| (k.to_string(), v.0)).collect()
    }

    /// The first message seen for each failure label.
    pub fn error_examples(&self) -> BTreeMap<String, String> {
        let e = self.errors.lock().expect("errors lock not poisoned");
        e.iter()
            .map(|(k, v)| (k.to_string(), v.1.clone()))
            .collect()
    }

    /// Drains the interval histograms (for the live p99).
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for s in &self.shards {
            let mut s = s.lock().expect("shard lock not poisoned");
            out.add(&s.interval).expect("same bounds");
            s.interval.reset();
        }
        out
    }

    /// The whole-run histogram.
    pub fn total(&self) -> Histogram<u64> {
        let mut out = new_histogram();
        for s in &self.shards {
            out.add(&s.lock().expect("shard lock not poisoned").total)
                .expect("same bounds");
        }
        out
    }

    /// A recorder for one connection; samples completed before
    /// `measure_from` (the warm-up) are dropped.
    pub fn recorder(self: &Arc<Self>, measure_from: Instant) -> Recorder {
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS;
        Recorder {
            shared: self.clone(),
            shard,
            samples: Vec::with_capacity(FLUSH_SAMPLES),
            unflushed: 0,
            last_flush: Instant::now(),
            measure_from,
        }
    }
}

/// Per-connection latency buffer; flushes on drop.
pub struct Recorder {
    shared: Arc<Shared>,
    shard: usize,
    /// Nanosecond samples not yet in a shard.
    samples: Vec<u64>,
    /// Completions not yet added to `Shared::completed`.
    unflushed: u64,
    last_flush: Instant,
    measure_from: Instant,
}

impl Recorder {
    /// Records one unit completed at `now` that started (or was meant to
    /// start) at `since`.
    #[inline]
    pub fn record(&mut self, since: Instant, now: Instant) {
        if now < self.measure_from {
            return;
        }
        self.samples
            .push(now.saturating_duration_since(since).as_nanos() as u64);
        self.unflushed += 1;
        if self.samples.len() >= FLUSH_SAMPLES {
            self.flush(now);
        }
    }

    /// Flushes if the buffer has waited long enough; call once per batch.
    #[inline]
    pub fn tick(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_flush) >= FLUSH_EVERY {
            self.flush(now);
        }
    }

    /// Hands buffered samples to the shared shard.
    pub fn flush(&mut self, now: Instant) {
        self.last_flush = now;
        if self.unflushed > 0 {
            self.shared
                .completed
                .fetch_add(self.unflushed, Ordering::Relaxed);
            self.unflushed = 0;
        }
        if self.samples.is_empty() {
            return;
        }
        let mut s = self.shared.shards[self.shard]
            .lock()
            .expect("shard lock not poisoned");
        for &v in &self.samples {
            let v = v.clamp(1, MAX_NANOS);
            // Within bounds after the clamp, so recording cannot fail.
            let _ = s.total.record(v);
            let _ = s.interval.record(v);
        }
        drop(s);
        self.samples.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush(Instant::now());
    }
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Percentiles {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// The percentile curve for plots: (percentile, microseconds) at points
/// spaced evenly on the "nines" scale, up to the max.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut pts = Vec::new();
    let mut nines = 0.0f64;
    while nines <= 5.0 {
        let q = 1.0 - 10f64.powf(-nines);
        pts.push((q * 100.0, h.value_at_quantile(q) as f64 / 1000.0));
        nines += 0.05;
    }
    pts.push((100.0, h.max() as f64 / 1000.0));
    pts
}

/// Median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// `value / baseline`, or `None` when the baseline is zero.
pub fn ratio(value: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0).then(|| value / baseline)
}

/// Units per second over `elapsed`, zero for an empty window.
pub fn per_second(units: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    if s > 0.0 {
        units as f64 / s
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_ratio() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(ratio(50.0, 100.0), Some(0.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(per_second(500, Duration::from_millis(250)), 2000.0);
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn percentiles_of_uniform_samples() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let p = Percentiles::from_histogram(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_us - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99_us - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max_us - 1000.0).abs() < 1.0, "{p:?}");
        let curve = percentile_curve(&h);
        assert!(curve
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn recorder_drops_warmup_and_flushes_on_drop() {
        let shared = Shared::new();
        let t0 = Instant::now();
        let from = t0 + Duration::from_secs(1);
        {
            let mut r = shared.recorder(from);
            r.record(t0, t0 + Duration::from_millis(10)); // warm-up: dropped
            r.record(t0, from + Duration::from_micros(5));
            r.record(from, from + Duration::from_micros(7));
        }
        assert_eq!(shared.completed.load(Ordering::Relaxed), 2);
        let total = shared.total();
        assert_eq!(total.len(), 2);
        assert_eq!(shared.take_interval().len(), 2);
        assert_eq!(shared.take_interval().len(), 0, "interval drained");
    }
}
