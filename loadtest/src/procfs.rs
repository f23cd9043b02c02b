//! What the harness reads about processes from `/proc`, and the file
//! descriptor limit it raises for itself.
//!
//! CPU time comes from the process's CPU-time clock
//! (`clock_getcpuclockid`): the scheduler's own account in nanoseconds,
//! every thread included, live or exited — the sum of the first field of
//! `/proc/PID/task/*/schedstat`. `/proc/PID/stat` (utime + stime, in clock
//! ticks of `sysconf(_SC_CLK_TCK)`, 10 ms here) is the fallback: at that
//! resolution an application using 0.1 s in a 10 s window is measured to
//! ±10 % (issue #17's application-side figure). Memory from the `VmRSS` line of
//! `/proc/PID/status`; open sockets from the `socket:[INODE]` links in
//! `/proc/PID/fd`.

use std::fs;

use anyhow::{bail, Context, Result};

/// Clock ticks per second used by `/proc/PID/stat`.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on error.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Parses utime + stime (in ticks) out of a `/proc/PID/stat` line.
///
/// The command name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted after the *last* `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After the name: state(3) ppid pgrp session tty_nr tpgid flags minflt
    // cminflt majflt cmajflt utime(14) stime(15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds (user + system) that process `pid` and its live children
/// have used so far. The children count so that a proxy with worker
/// processes — nginx with `master_process on` and `worker_processes 2` in
/// bench.sh's all-cores setup — is charged for its workers; a
/// single-process proxy has none.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let mut secs = one_cpu_seconds(pid)?;
    for child in children(pid) {
        // A child that exited in between has nothing left to read.
        secs += one_cpu_seconds(child).unwrap_or(0.0);
    }
    Ok(secs)
}

/// CPU seconds of process `pid` alone: its CPU-time clock (nanoseconds),
/// else its `/proc/PID/stat` ticks.
fn one_cpu_seconds(pid: u32) -> Result<f64> {
    match cpu_clock_ns(pid) {
        Some(ns) => Ok(ns as f64 / 1e9),
        None => Ok(stat_ticks(pid)? as f64 / clock_ticks() as f64),
    }
}

/// The CPU-time clock of process `pid` (all its threads), in nanoseconds;
/// `None` if the process is gone or the clock cannot be read.
pub fn cpu_clock_ns(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a valid out-pointer; the call only computes the
    // clock id of `pid` (failing if there is no such process).
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the duration of the call.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(u64::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec).ok()?)
}

fn stat_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu_ticks(&stat).with_context(|| format!("parsing {path}"))
}

/// Direct children of `pid`, from `/proc/PID/task/*/children` (each
/// thread lists the children it forked).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// CPU seconds this process has used so far.
pub fn self_cpu_seconds() -> Result<f64> {
    cpu_seconds(std::process::id())
}

/// Parses the `VmRSS:` line of `/proc/PID/status` into bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next()? {
        "kB" => Some(value * 1024),
        _ => None,
    }
}

/// Resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS line in {path}"))
}

/// Open socket file descriptors of process `pid` (listeners included): how
/// many connections an application holds, whatever kind they are.
pub fn socket_fds(pid: u32) -> Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    let mut n = 0;
    for entry in fs::read_dir(&dir).with_context(|| format!("listing {dir}"))? {
        // An fd closed between the listing and the readlink is not counted.
        let Ok(entry) = entry else { continue };
        if fs::read_link(entry.path())
            .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
        {
            n += 1;
        }
    }
    Ok(n)
}

/// Pids whose `/proc/PID/comm` is exactly `name` (the kernel truncates comm
/// to 15 bytes, so the name is truncated the same way).
pub fn pids_by_name(name: &str) -> Result<Vec<u32>> {
    let wanted = &name.as_bytes()[..name.len().min(15)];
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(comm) = fs::read(entry.path().join("comm")) {
            if comm.strip_suffix(b"\n").unwrap_or(&comm) == wanted {
                pids.push(pid);
            }
        }
    }
    if pids.is_empty() {
        bail!("no process named {name:?} found in /proc");
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new limit.
pub fn raise_nofile_limit() -> Result<u64> {
    // Asking for more than the hard limit gets the hard limit.
    rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")
}

/// File descriptors the harness itself needs besides one per connection.
pub const FD_RESERVE: u64 = 64;

/// Checks that `connections` sockets fit under the descriptor `limit`.
pub fn check_fd_budget(connections: u64, limit: u64) -> Result<()> {
    if connections + FD_RESERVE > limit {
        bail!(
            "{connections} connections need about {} file descriptors, but RLIMIT_NOFILE \
             allows {limit} per process (soft already raised to the hard limit). Lower \
             --connections to at most {}, or raise the hard limit (ulimit -Hn, as root). \
             Remember the server under test needs its own descriptors too: a proxy holds \
             two per client.",
            connections + FD_RESERVE,
            limit.saturating_sub(FD_RESERVE)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_name() {
        let line = "1234 (we ird) (name)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 100";
        assert_eq!(parse_stat_cpu_ticks(line), Some(300));
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_own_process() {
        assert!(clock_ticks() > 0);
        let before = self_cpu_seconds().unwrap();
        // Burn a little CPU so the counter can move; it must never go back.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(self_cpu_seconds().unwrap() >= before);
        let rss = rss_bytes(std::process::id()).unwrap();
        assert!(rss > 100 * 1024, "rss {rss}");
    }

    #[test]
    fn reads_cpu_clocks_in_nanoseconds() {
        // Another process's clock can be read (the harness watches the
        // gateway and the applications, which are not its children).
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(cpu_clock_ns(child.id()).is_some());
        let _ = child.kill();
        let _ = child.wait();
        // Its own: a little work moves it by less than one 10 ms tick.
        let before = cpu_clock_ns(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..100_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = cpu_clock_ns(std::process::id()).unwrap();
        assert!(after > before, "{before} → {after}");
    }

    #[test]
    fn counts_own_sockets() {
        let before = socket_fds(std::process::id()).unwrap();
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Other tests of this binary may open or close sockets meanwhile,
        // so only the floor is certain.
        assert!(socket_fds(std::process::id()).unwrap() >= 2, "{before}");
        drop((a, b));
    }

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tx\nVmPeak:\t  10 kB\nVmRSS:\t    2048 kB\nThreads: 1\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn fd_budget() {
        assert!(check_fd_budget(1000, 20_000).is_ok());
        let err = check_fd_budget(19_990, 20_000).unwrap_err().to_string();
        assert!(err.contains("at most 19936"), "{err}");
    }
}
