#!/usr/bin/env python3
"""Edge permessage-deflate (issue #16), per setting of routes[].deflate:
gateway CPU per 1 KiB JSON message, compression ratio, and RSS per idle
compressed connection. The gateway (`tidegate run`) compresses at the edge
in front of the plain `tidegate echo`; a Node `ws` client offers
permessage-deflate (client_max_window_bits). `off` is the same route
without the extension, for reference.

    .venv/bin/python benches/deflate_edge.py [--connections 8] [--messages 1500] [--idle 1000]

CPU: utime+stime of the gateway over the message run, per message relayed
(each crosses the gateway twice: inflated on the way up, compressed on the
way down). Ratio: compressed/plain bytes from tidegate_deflate_bytes_total.
Idle RSS: VmRSS with --idle connections open, each after one message each
way, minus VmRSS before they connected, divided by --idle.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))

import gateway as g  # noqa: E402

SETTINGS = {
    "off": None,
    "takeover, 15 bits": {},
    "takeover, 12 bits": {"server_max_window_bits": 12, "client_max_window_bits": 12},
    "takeover, 9 bits": {"server_max_window_bits": 9, "client_max_window_bits": 9},
    "no takeover (both)": {"server_no_context_takeover": True, "client_no_context_takeover": True},
    "no takeover, level 1": {"server_no_context_takeover": True, "client_no_context_takeover": True, "level": 1},
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def metric(admin: str, prefix: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=10).read().decode()
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(prefix))


def config(echo: str, levers: dict | None) -> str:
    lines = [
        "[admin]\nlisten = \"127.0.0.1:0\"",
        # Every idle connection handshakes from 127.0.0.1 at once.
        "[limits]\nmax_handshakes_per_ip = 100000",
        "[[listeners]]\nname = \"main\"\nlisten = \"127.0.0.1:0\"",
        f"[[upstreams]]\nname = \"echo\"\nendpoints = [\"ws://{echo}\"]",
        "[[routes]]\nname = \"r\"\nupstream = \"echo\"",
    ]
    if levers is None:
        lines.append("permessage_deflate = \"off\"")
    else:
        lines.append("permessage_deflate = \"edge\"")
        lines.append("[routes.deflate]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in levers.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--messages", type=int, default=1500, help="per connection")
    ap.add_argument("--idle", type=int, default=1000, help="idle connections for the RSS figure")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    node = shutil.which("node") or "node"
    client = str(REPO / "benches" / "deflate_client.mjs")
    with g.Stack() as stack:
        echo = stack.echo()
        for name, levers in SETTINGS.items():
            cfg = stack.dir / f"deflate-{len(name)}-{time.monotonic_ns()}.toml"
            cfg.write_text(config(echo, levers))
            p = stack.spawn("gw", [str(g.tidegate_bin()), "run", "--config", str(cfg), "--workers", str(args.workers)])
            (m,) = p.wait_for(r"tidegate listening .*addr=" + g.ADDR)
            (a,) = p.wait_for(r"tidegate admin addr=" + g.ADDR)
            url, admin, pid = f"ws://{m['addr']}/", a["addr"], p.popen.pid
            mode = "off" if levers is None else "on"
            before = cpu_seconds(pid)
            out = subprocess.run([node, client, url, str(args.connections), str(args.messages), mode],
                                 check=True, capture_output=True, text=True, timeout=900).stdout
            cpu = cpu_seconds(pid) - before
            r = json.loads(out)
            n = r["messages"] * 2
            comp = metric(admin, 'tidegate_deflate_bytes_total{direction="upstream_to_client",route="r",stage="compressed"}')
            plain = metric(admin, 'tidegate_deflate_bytes_total{direction="upstream_to_client",route="r",stage="plain"}')
            ratio = f"{comp / plain:.3f}" if plain else "-"
            rss0 = rss_kb(pid)
            hold = subprocess.Popen([node, client, url, str(args.idle), "1", mode, "hold"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            line = hold.stdout.readline().strip()
            time.sleep(1)
            rss1 = rss_kb(pid)
            hold.stdin.close()
            hold.wait(120)
            print(
                f"{name:22} ext={r['extension'] or '-':44.44} cpu/msg={cpu / n * 1e6:6.2f}us "
                f"ratio={ratio:6} idle={(rss1 - rss0) * 1024 / args.idle:8.0f} B/conn ({line or 'not ready'})",
                flush=True,
            )
            p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
