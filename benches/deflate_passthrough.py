#!/usr/bin/env python3
"""Passthrough permessage-deflate: the gateway's CPU per message with the
extension negotiated end to end vs without (issue #16). Same route, same
upstream (Node `ws` echo that accepts permessage-deflate when offered), same
1 KiB JSON messages; only the client's offer differs. CPU is the gateway
process's utime+stime from /proc/PID/stat over the run; the relay moves
bytes either way, compressed or not.

    .venv/bin/python benches/deflate_passthrough.py [--connections 8] [--messages 2500] [--rounds 3] [--pace-ms N]

With --pace-ms each connection waits N ms after each echo, so both modes
run at the same message rate and get the same number of wake-ups per
message (unpaced, the slower compressing endpoints leave fewer messages per
read in the negotiated runs).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))

import gateway as g  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based) of the whole line.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def payload_bytes(admin: str) -> int:
    import urllib.request

    text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=10).read().decode()
    return int(sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("tidegate_payload_bytes_total{")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--messages", type=int, default=2500, help="per connection")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pace-ms", type=int, default=0, help="wait after each echo, per connection")
    args = ap.parse_args()
    node = shutil.which("node") or "node"
    with g.Stack() as stack:
        p = stack.spawn("deflate-echo", [node, str(REPO / "tests" / "conformance" / "deflate_echo.mjs")])
        (m,) = p.wait_for(r"deflate echo listening addr=" + g.ADDR)
        for rnd in range(args.rounds):
            for mode in ("off", "on"):
                gw = stack.proxy(f"ws://{m['addr']}", admin=True)
                pid = gw.proc.popen.pid
                before = cpu_seconds(pid)
                out = subprocess.run(
                    [node, str(REPO / "benches" / "deflate_client.mjs"), gw.url(),
                     str(args.connections), str(args.messages), mode],
                    check=True, capture_output=True, text=True, timeout=600,
                    env={**os.environ, "PACE_MS": str(args.pace_ms)},
                ).stdout
                cpu = cpu_seconds(pid) - before
                r = json.loads(out)
                wire = payload_bytes(gw.admin)
                n = r["messages"] * 2  # each message crosses the gateway twice
                print(
                    f"round {rnd} deflate={mode:3} extension={r['extension'] or '-':20.20} "
                    f"relayed={n} cpu={cpu:.2f}s cpu/msg={cpu / n * 1e6:.2f}us "
                    f"payload/msg={wire / n:.0f}B wall={r['seconds']:.1f}s",
                    flush=True,
                )
                gw.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
