#!/usr/bin/env python3
"""Re-run chosen Autobahn cases on the `upstream` side (Node ws client ->
tidegate -> kosoku fuzzingserver) and on its baseline `client-direct`, e.g.
cases a full run on a loaded machine lost to the driver's 120 s per-case
bound:

    .venv/bin/python tests/conformance/rerun_upstream.py 12.2.14 12.2.15 12.2.16

Prints one line per case and side (behavior, close behavior, duration).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests" / "python"))
sys.path.insert(0, str(HERE))

import gateway as g  # noqa: E402
from run import DRIVE_TIMEOUT, kosoku_bin  # noqa: E402


def main(cases: list[str]) -> int:
    if not cases:
        print(__doc__, file=sys.stderr)
        return 64
    node = shutil.which("node") or "node"
    failed = 0
    with tempfile.TemporaryDirectory() as tmp, g.Stack(Path(tmp) / "processes") as stack:
        for side, through in (("upstream", True), ("client-direct", False)):
            out = Path(tmp) / side
            argv = [kosoku_bin(), "-m", "fuzzingserver", "127.0.0.1:0", "-o", str(out)]
            for c in cases:
                argv += ["-i", c]
            fz = stack.spawn("fuzzingserver-" + side, argv)
            (m,) = fz.wait_for(r"fuzzingserver listening on ws://" + g.ADDR)
            url = stack.proxy(f"ws://{m['addr']}").url() if through else f"ws://{m['addr']}/"
            t0 = time.monotonic()
            subprocess.run([node, str(HERE / "drive.mjs"), url, "--deflate"], check=True, timeout=DRIVE_TIMEOUT)
            fz.popen.wait(120)
            for cs in json.loads((out / "index.json").read_text()).values():
                for case, v in sorted(cs.items()):
                    failed += v["behavior"] in ("FAILED", "ERROR")
                    print(f"{side} {case}: {v['behavior']} / close {v['behaviorClose']} in {v['duration'] / 1000:.1f} s")
            print(f"{side}: {time.monotonic() - t0:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
