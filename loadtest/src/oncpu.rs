//! A watched process's time on a CPU, counted by the kernel's perf
//! `task-clock` event: the second CPU figure of a watched process, beside
//! its CPU-time clock (`procfs`).
//!
//! Why a second figure: the CPU-time clock (`sum_exec_runtime`) can charge
//! a process for time another task spent on the CPU. When a task is woken
//! and its wake-up asks the running task to give up the CPU, the scheduler
//! skips the next update of the run queue's clock (`rq_clock_skip_update`,
//! on the assumption that the switch follows at once); on a kernel without
//! full preemption the running task may go on for milliseconds — the
//! gateway inside one `io_uring_enter` of 256 sends — and the woken task's
//! account then starts at the stale clock: it is charged those
//! milliseconds, and the task that ran them is not. Measured on this VM
//! during `bench-fanout.sh` (3 s of `sched:sched_switch` /
//! `sched_stat_runtime` on core 0, 2026-12-06): the publishing application
//! was on the CPU 6.5 ms and charged 40.8 ms; the two idle applications
//! beside it, 2.7 ms and charged 44 and 59 ms (docs/performance.md,
//! "Where the publishing application's CPU went").
//!
//! `task-clock` is read from the clock at each switch in and out, so it is
//! the time the process's threads were actually on a CPU (interrupts taken
//! meanwhile included, as in any account of CPU time; the few µs of the
//! switch itself, between perf's switch-out and switch-in hooks, are
//! nobody's). One counter per thread alive when the window opens, with
//! `inherit` so threads they start later are counted too (a read sums the
//! inherited counters). Needs permission to watch the process (root, or
//! `perf_event_paranoid` ≤ 2 for one's own processes); without
//! it the figure is absent and the CPU-time clock remains.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::FromRawFd;

/// `perf_event_attr` up to `config3` (`PERF_ATTR_SIZE_VER8`, 136 bytes):
/// the fields this module sets, then zeros.
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bit field: bit 1 `inherit`.
    flags: u64,
    rest: [u64; 11],
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
const FLAG_INHERIT: u64 = 1 << 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// Task-clock counters on every thread of one process.
pub struct OnCpu {
    counters: Vec<File>,
}

impl OnCpu {
    /// Counters on the threads of `pid` now; `None` if the process is
    /// gone or no counter could be opened (no permission).
    pub fn open(pid: u32) -> Option<OnCpu> {
        let counters: Vec<File> = fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .flatten()
            .filter_map(|t| t.file_name().to_str()?.parse::<libc::pid_t>().ok())
            .filter_map(open_task_clock)
            .collect();
        (!counters.is_empty()).then_some(OnCpu { counters })
    }

    /// Seconds on a CPU since the counters were opened, all threads; `None`
    /// if a counter cannot be read.
    pub fn seconds(&mut self) -> Option<f64> {
        let mut ns = 0u64;
        for c in &mut self.counters {
            let mut buf = [0u8; 8];
            c.read_exact(&mut buf).ok()?;
            ns += u64::from_ne_bytes(buf);
        }
        Some(ns as f64 / 1e9)
    }
}

/// One counting (not sampling) task-clock event on thread `tid`, any CPU.
fn open_task_clock(tid: libc::pid_t) -> Option<File> {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_TASK_CLOCK,
        sample_period: 0,
        sample_type: 0,
        read_format: 0,
        flags: FLAG_INHERIT,
        rest: [0; 11],
    };
    // SAFETY: `attr` is a valid, fully initialised perf_event_attr of the
    // size it declares, alive for the call; the other arguments are plain
    // integers (cpu -1 = any, group -1 = none).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            tid,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Some(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_has_the_kernels_ver8_size() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 136);
    }

    /// This process's own threads: counted time grows with work done. On
    /// a machine that forbids perf events the counter is absent, which is
    /// the documented fallback, not a failure.
    #[test]
    fn counts_own_cpu_time_when_permitted() {
        let Some(mut c) = OnCpu::open(std::process::id()) else {
            eprintln!("perf events not permitted here; skipped");
            return;
        };
        let a = c.seconds().expect("readable counter");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let b = c.seconds().expect("readable counter");
        assert!(b > a, "task-clock did not advance: {a} → {b}");
    }
}
