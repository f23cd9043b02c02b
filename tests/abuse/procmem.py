"""What a process holds, read from /proc: resident memory now (VmRSS) and
at its peak (VmHWM), and whether it has stopped using CPU (so a test knows
the gateway has digested a flood before it reads the peak)."""

from __future__ import annotations

import time

MB = 1024 * 1024


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def rss(pid: int) -> int:
    """Resident set size now, in bytes."""
    return _status_kb(pid, "VmRSS") * 1024


def peak_rss(pid: int) -> int:
    """Highest resident set size so far, in bytes."""
    return _status_kb(pid, "VmHWM") * 1024


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of the process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces; fields follow its ')'.
        rest = f.read().rpartition(")")[2].split()
    return int(rest[11]) + int(rest[12])


def settle(pid: int, timeout: float = 60.0, quiet: float = 0.5) -> None:
    """Wait until `pid` used no CPU for `quiet` seconds (bounded by
    `timeout`; reaching it is not an error — the peak is read either way)."""
    deadline = time.monotonic() + timeout
    last = cpu_ticks(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_ticks(pid)
        if now == last:
            return
        last = now


class Growth:
    """Peak resident memory growth of a process from the moment this is
    made: `Growth(pid)` before a flood, `.settled()` after it."""

    def __init__(self, pid: int):
        self.pid = pid
        self.before = rss(pid)

    def settled(self, timeout: float = 60.0) -> int:
        """Bytes the peak RSS rose above the RSS at the start, once the
        process is quiet."""
        settle(self.pid, timeout)
        return max(peak_rss(self.pid) - self.before, 0)


def describe(name: str, growth: int, bound: int) -> str:
    return f"{name}: peak RSS grew {growth / MB:.1f} MB (bound {bound / MB:.0f} MB)"
