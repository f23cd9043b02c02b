//! The once-a-second observer of a run: per-second throughput for the plot,
//! the live progress line on stderr, and CPU time of the generator and of
//! the process under test over exactly the measured window, plus the CPU,
//! memory and sockets of any other watched process (an application behind
//! the proxy) over the same window.
//!
//! It only reads shared counters and drains interval histograms, so it adds
//! nothing to the connections' hot loops.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::oncpu::OnCpu;
use crate::procfs;
use crate::stats::{Percentiles, Shared};

/// What the monitor saw over the measured window.
#[derive(Debug, Default)]
pub struct Window {
    /// Completed units in each whole second of the window.
    pub per_second: Vec<f64>,
    /// Wall time from the start of measurement to `finish`.
    pub wall: Duration,
    /// CPU seconds the generator used in the window.
    pub generator_cpu: Option<f64>,
    /// CPU seconds the observed process used in the window.
    pub target_cpu: Option<f64>,
    /// Seconds the observed process was on a CPU in the window (`oncpu`).
    pub target_oncpu: Option<f64>,
    /// One entry per watched process: CPU over the window, memory and
    /// sockets at their highest once-a-second reading inside it.
    pub processes: Vec<ProcessSample>,
}

/// A watched process over the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessSample {
    pub pid: u32,
    /// CPU seconds (user + system) used in the window, from the process's
    /// CPU-time clock.
    pub cpu_secs: Option<f64>,
    /// Seconds its threads were on a CPU in the window, from perf
    /// `task-clock` counters (`oncpu`): unlike `cpu_secs`, never charged
    /// with another task's time. `None` without permission to count.
    pub oncpu_secs: Option<f64>,
    /// Highest resident memory seen in the window.
    pub rss_bytes: Option<u64>,
    /// Open sockets (listeners included), counted once as the warm-up
    /// begins, when the run's connections are open. Not on every tick:
    /// the count reads every link in `/proc/PID/fd` (about 20 µs per
    /// descriptor here), which took a tenth of the generator's core per
    /// 5,000 descriptors and stalled its sends for tens of milliseconds
    /// once a second.
    pub socket_fds: Option<u64>,
}

impl ProcessSample {
    /// Folds the process's current memory into the peak.
    fn sample_memory(&mut self) {
        self.rss_bytes = self.rss_bytes.max(procfs::rss_bytes(self.pid).ok());
    }
}

/// Counts the sockets of every watched process on a blocking thread, so
/// the scan never holds up the runtime's connections.
async fn count_sockets(pids: Vec<u32>) -> Vec<Option<u64>> {
    let n = pids.len();
    tokio::task::spawn_blocking(move || {
        pids.iter()
            .map(|&pid| procfs::socket_fds(pid).ok())
            .collect()
    })
    .await
    .unwrap_or_else(|_| vec![None; n])
}

/// A running monitor; call [`Monitor::finish`] at the end of the window.
pub struct Monitor {
    stop: watch::Sender<bool>,
    handle: JoinHandle<Window>,
}

/// How the live line is labelled and whose CPU to watch.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Draw the progress line (off for `--quiet` or a non-TTY stderr).
    pub show: bool,
    /// "msgs/s" or "connects/s".
    pub unit: &'static str,
    /// Process to charge CPU time to.
    pub pid: Option<u32>,
    /// Further processes to sample over the window (CPU, RSS, sockets).
    pub watch: Vec<u32>,
}

impl Monitor {
    /// Starts observing; the measured window opens at `measure_from`.
    pub fn spawn(shared: Arc<Shared>, measure_from: Instant, opts: MonitorOptions) -> Self {
        let (stop, rx) = watch::channel(false);
        let handle = tokio::spawn(run(shared, measure_from, opts, rx));
        Self { stop, handle }
    }

    /// Closes the window and returns what was seen.
    pub async fn finish(self) -> Window {
        let _ = self.stop.send(true);
        self.handle.await.unwrap_or_default()
    }
}

fn progress_bar(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .expect("constant progress template is valid"),
    );
    pb
}

async fn run(
    shared: Arc<Shared>,
    measure_from: Instant,
    opts: MonitorOptions,
    mut stop: watch::Receiver<bool>,
) -> Window {
    let pb = progress_bar(opts.show);
    let show = |msg: String| {
        pb.set_message(msg);
        pb.tick();
    };
    let sockets = count_sockets(opts.watch.clone()).await;
    // Warm-up: keep the line alive, measure nothing.
    let mut warm = tokio::time::interval(Duration::from_millis(500));
    while Instant::now() < measure_from {
        tokio::select! {
            // The window may be closed before it opened (an aborted run).
            _ = stop.changed() => { pb.finish_and_clear(); return Window::default(); }
            _ = tokio::time::sleep_until(measure_from.into()) => {}
            _ = warm.tick() => show(format!("warming up, {} connections open", shared.open.load(Ordering::Relaxed))),
        }
    }
    let cpu0 = procfs::self_cpu_seconds().ok();
    let target0 = opts.pid.and_then(|p| procfs::cpu_seconds(p).ok());
    let mut target_oncpu = opts.pid.and_then(OnCpu::open);
    let target_oncpu0 = target_oncpu.as_mut().and_then(OnCpu::seconds);
    let mut processes: Vec<ProcessSample> = opts
        .watch
        .iter()
        .zip(sockets)
        .map(|(&pid, socket_fds)| ProcessSample {
            pid,
            cpu_secs: procfs::cpu_seconds(pid).ok(),
            oncpu_secs: None,
            rss_bytes: None,
            socket_fds,
        })
        .collect();
    let mut oncpu: Vec<Option<OnCpu>> = opts.watch.iter().map(|&pid| OnCpu::open(pid)).collect();
    let oncpu0: Vec<Option<f64>> = oncpu
        .iter_mut()
        .map(|c| c.as_mut().and_then(OnCpu::seconds))
        .collect();
    let window_start = Instant::now();
    let mut last_count = shared.completed.load(Ordering::Relaxed);
    let mut last_tick = window_start;
    let mut per_second = Vec::new();
    let mut ticker = tokio::time::interval_at(
        (window_start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            // End of the measured window, signalled by the scenario.
            _ = stop.changed() => break,
            // One-second boundary: sample the counters.
            _ = ticker.tick() => {
                let now = Instant::now();
                let count = shared.completed.load(Ordering::Relaxed);
                let rate = (count - last_count) as f64 / now.duration_since(last_tick).as_secs_f64();
                per_second.push(rate);
                processes.iter_mut().for_each(ProcessSample::sample_memory);
                last_count = count;
                last_tick = now;
                let p99 = Percentiles::from_histogram(&shared.take_interval()).p99_us;
                show(format!(
                    "conns {} | {:.0} {} | p99 {:.0} µs | errors {}",
                    shared.open.load(Ordering::Relaxed),
                    rate,
                    opts.unit,
                    p99,
                    shared.errors().values().sum::<u64>(),
                ));
            }
        }
    }
    // A last partial second counts if it is long enough to mean something.
    let tail = last_tick.elapsed();
    if tail >= Duration::from_millis(500) {
        let count = shared.completed.load(Ordering::Relaxed);
        per_second.push((count - last_count) as f64 / tail.as_secs_f64());
    }
    pb.finish_and_clear();
    let cpu1 = procfs::self_cpu_seconds().ok();
    let target1 = opts.pid.and_then(|p| procfs::cpu_seconds(p).ok());
    let target_oncpu1 = target_oncpu.as_mut().and_then(OnCpu::seconds);
    for ((p, c), c0) in processes.iter_mut().zip(&mut oncpu).zip(oncpu0) {
        p.oncpu_secs = c0
            .zip(c.as_mut().and_then(OnCpu::seconds))
            .map(|(a, b)| b - a);
        // Until here `cpu_secs` held the reading at the window's start.
        p.cpu_secs = p
            .cpu_secs
            .zip(procfs::cpu_seconds(p.pid).ok())
            .map(|(a, b)| b - a);
        // A window shorter than one tick gets its only reading now.
        if p.rss_bytes.is_none() {
            p.sample_memory();
        }
    }
    Window {
        per_second,
        wall: window_start.elapsed(),
        generator_cpu: cpu0.zip(cpu1).map(|(a, b)| b - a),
        target_cpu: target0.zip(target1).map(|(a, b)| b - a),
        target_oncpu: target_oncpu0.zip(target_oncpu1).map(|(a, b)| b - a),
        processes,
    }
}
