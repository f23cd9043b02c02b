//! The scheduler time slice the gateway's threads ask Linux for
//! (`[runtime] scheduler_slice_us`, `--scheduler-slice-us`).
//!
//! Linux 6.6+ schedules ordinary threads with EEVDF, and since 6.12 a
//! thread may request its own slice (`sched_setattr`'s `sched_runtime`,
//! 100 µs to 100 ms; no privilege needed). The slice sets how soon a thread
//! that wakes gets the CPU: with the default (~0.7–3 ms) a worker woken by
//! a client's frame may wait for a CPU-bound neighbour — a build, a batch
//! job, another pod on the node — to finish its slice; with a short one it
//! preempts that neighbour at once. Fairness is unchanged (the share of CPU
//! still follows the nice value); the cost is more, shorter turns when the
//! CPU is contended. docs/performance.md, "A short scheduler slice".
//!
//! Requested once, on the main thread before any other thread starts: every
//! thread created later (the workers, the NATS backplane's thread, tokio's
//! blocking pool) inherits it.

use std::io;

/// `struct sched_attr` of `sched_setattr(2)` (the 48-byte version 1).
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Keep the thread's scheduling policy (`SCHED_FLAG_KEEP_POLICY`).
const KEEP_POLICY: u64 = 0x08;

/// Ask for a slice of `us` microseconds for the calling thread (and so for
/// the threads it starts afterwards). Its policy and nice value stay as they
/// are. A kernel before 6.12 accepts the call and keeps its own slice; one
/// that refuses it returns the error, which the caller logs.
pub fn request_slice(us: u64) -> io::Result<()> {
    // getpriority(2) returns -1 both as a value and as an error: clear
    // errno first to tell them apart.
    // SAFETY: errno is a thread-local the C library owns; writing 0 to it
    // is what getpriority(2)'s manual asks for.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: no pointers; `0` is the calling thread.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if nice == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(0) {
            return Err(e);
        }
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: 0,
        flags: KEEP_POLICY,
        nice,
        priority: 0,
        runtime: us.saturating_mul(1000),
        deadline: 0,
        period: 0,
    };
    // SAFETY: `attr` is a valid, initialised sched_attr of the size it
    // states, alive for the call; pid 0 is the calling thread; flags 0.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's slice in nanoseconds, where the kernel shows it
    /// (`se.slice` in /proc, Linux 6.6+).
    fn own_slice_ns() -> Option<u64> {
        let tid = unsafe { libc::gettid() };
        let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/sched")).ok()?;
        let line = text.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    #[test]
    fn a_thread_gets_the_slice_and_its_children_inherit_it() {
        std::thread::spawn(|| {
            if own_slice_ns().is_none() {
                eprintln!("no se.slice in /proc on this kernel: nothing to check");
                return;
            }
            request_slice(250).expect("sched_setattr");
            assert_eq!(own_slice_ns(), Some(250_000));
            let child = std::thread::spawn(own_slice_ns).join().expect("thread");
            assert_eq!(
                child,
                Some(250_000),
                "a thread started afterwards inherits it"
            );
        })
        .join()
        .expect("test thread");
    }
}
