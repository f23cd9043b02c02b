#!/usr/bin/env python3
"""Autobahn TestSuite conformance of tidegate, driven by kosoku.

Sides tested (each its own kosoku report directory under --out):

  server-ws     kosoku fuzzingclient -> tidegate (ws)  -> tidegate echo
  server-wss    kosoku fuzzingclient -> socat (TCP->TLS) -> tidegate (wss) -> tidegate echo
  upstream      Node ws client (echoes what it gets) -> tidegate (ws)
                -> kosoku fuzzingserver (the upstream under which the gateway is the client)
  echo-direct   kosoku fuzzingclient -> tidegate echo (baseline without the gateway,
                to tell gateway findings from echo-upstream findings)
  client-direct Node ws client -> kosoku fuzzingserver (baseline of the
                upstream side: a case failing the same way here is the client's own
                verdict and does not fail the run; this side never fails the run)
  server-deflate kosoku fuzzingclient -> tidegate (ws) -> Node ws echo
                with permessage-deflate: compression negotiated end to end
                (routes[].permessage_deflate = "passthrough", the default)
  server-edge   kosoku fuzzingclient -> tidegate (ws, --permessage-deflate edge)
                -> tidegate echo (uncompressed): compression terminated at the gateway
  deflate-direct kosoku fuzzingclient -> Node ws echo (baseline of
                server-deflate and server-edge)

A run fails (exit 1) when any case's behavior is FAILED or ERROR, in any
section, on any side: sections 1-10 must be OK / NON-STRICT / INFORMATIONAL,
compression (12.*, 13.*) must be OK or NON-STRICT/INFORMATIONAL, or
UNIMPLEMENTED where the upstream does not compress (tidegate echo); on the
compressing sides (server-deflate, deflate-direct, upstream) they run compressed. Closing-handshake verdicts other than OK /
INFORMATIONAL are listed and fail the run too, unless --lenient-close.

  .venv/bin/python tests/conformance/run.py                 # quick: 9.* cut to one case per group
  .venv/bin/python tests/conformance/run.py --full          # every case, 9.* included
  .venv/bin/python tests/conformance/run.py --full --write-doc   # also regenerate docs/conformance.md
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))

import gateway as g  # noqa: E402

BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR"]
GOOD_CLOSE = {"OK", "INFORMATIONAL"}
SECTION_NAMES = {
    "1": "Framing (text, binary)",
    "2": "Pings/Pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "9": "Limits/Performance",
    "10": "Misc (auto-fragmentation)",
    "12": "WebSocket compression (different payloads)",
    "13": "WebSocket compression (different parameters)",
}
SIDES = {
    "server-ws": "client → **tidegate (ws)** → tidegate echo",
    "server-wss": "client → socat → **tidegate (wss)** → tidegate echo",
    "upstream": "Node ws client → **tidegate (ws)** → kosoku fuzzingserver (gateway is the client)",
    "echo-direct": "client → tidegate echo (baseline, no gateway)",
    "client-direct": "Node ws client → kosoku fuzzingserver (baseline, no gateway)",
    "server-deflate": "client → **tidegate (ws)** → Node ws echo, permessage-deflate end to end",
    "server-edge": "client → **tidegate (ws), permessage-deflate at the edge** → tidegate echo (plain)",
    "deflate-direct": "client → Node ws echo with permessage-deflate (baseline, no gateway)",
}
# Sides whose upstream compresses: there 12.* and 13.* must run, not be
# UNIMPLEMENTED.
COMPRESSING = {"server-deflate", "server-edge", "deflate-direct", "upstream", "client-direct"}
# Sides that are baselines of another: a case that fails on the side in the
# same way on its baseline is the endpoint's verdict, not the gateway's.
BASELINE_OF = {"upstream": "client-direct", "server-deflate": "deflate-direct", "server-edge": "deflate-direct"}
# Third-party baselines: their findings are reported, never fail the run.
NOT_GATING = {"client-direct", "deflate-direct"}
# The quick selection skips the 9.* bulk-throughput cases (large messages and
# many small frames), keeping one case of each 9.x group so the paths stay covered.
QUICK_EXCLUDE = ["9.*"]
QUICK_INCLUDE_BACK = ["9.1.1", "9.2.1", "9.3.1", "9.4.1", "9.5.1", "9.6.1", "9.7.1", "9.8.1"]


def kosoku_bin() -> str:
    exe = Path(sys.executable).parent / "kosoku"
    return str(exe) if exe.exists() else (shutil.which("kosoku") or "kosoku")


# Compressed 12.* / 13.* cases take minutes each side on a loaded 2-core
# machine (the Python runner compresses 1000 messages of up to 128 KiB per
# case), so a test run takes these by default (small and mid-size messages
# with every parameter set); --compression full runs all of them.
# The subset is one case of each 12.x payload group and each 13.x parameter
# set (smallest messages): every negotiation path through the gateway, in
# about 20 s a side instead of 3–4 minutes (the 99-case selection used
# first made the test command's conformance step exceed its 20 minutes).
COMPRESSION_SUBSET = [f"12.{g}.1" for g in range(1, 6)] + [f"13.{g}.1" for g in range(1, 8)]
COMPRESSION_SUBSET_TEXT = "12.1.1 … 12.5.1, 13.1.1 … 13.7.1"


def selection_args(full: bool, compression_full: bool = True) -> list[str]:
    if not compression_full:
        args = []
        for sec in SECTION_NAMES:
            if sec in ("12", "13") or (sec == "9" and not full):
                continue
            args += ["-i", f"{sec}.*"]
        for case in COMPRESSION_SUBSET + ([] if full else QUICK_INCLUDE_BACK):
            args += ["-i", case]
        return args
    if full:
        return []
    # kosoku applies -x after -i, so build the quick set as includes.
    args = []
    for sec in SECTION_NAMES:
        if sec != "9":
            args += ["-i", f"{sec}.*"]
    for case in QUICK_INCLUDE_BACK:
        args += ["-i", case]
    return args


def run_fuzzingclient(target: str, outdir: Path, full: bool, parallelism: int, log: Path, compression_full: bool = True) -> float:
    argv = [kosoku_bin(), "-m", "fuzzingclient", target, "-o", str(outdir), "-p", str(parallelism)]
    argv += selection_args(full, compression_full)
    t0 = time.monotonic()
    with open(log, "wb") as f:
        # exit status 1 means "some case did not pass" (UNIMPLEMENTED counts);
        # the verdicts are judged from index.json below.
        p = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=1500)
    if not (outdir / "index.json").exists():
        raise RuntimeError(f"kosoku wrote no report (exit {p.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    return time.monotonic() - t0


# -- upstream side ---------------------------------------------------------

AGENT = "tidegate"


SECONDS_FILE = "seconds.txt"
"""How long a side took, kept beside its report for `--reuse`."""

DRIVE_TIMEOUT = 3600
"""Bound of the Node driver of the upstream sides (all 517 cases, the
compression set included, take ~20 min on an idle 2-core machine)."""


def run_upstream_side(stack: g.Stack, outdir: Path, full: bool, through_gateway: bool = True, compression_full: bool = True) -> float:
    t0 = time.monotonic()
    argv = [kosoku_bin(), "-m", "fuzzingserver", "127.0.0.1:0", "-o", str(outdir)] + selection_args(full, compression_full)
    fz = stack.spawn("fuzzingserver", argv)
    (m,) = fz.wait_for(r"fuzzingserver listening on ws://" + g.ADDR)
    # The driving client is Node `ws` (tests/conformance/drive.mjs): Python
    # websockets answers a Close inside a fragmented message with 1002, which
    # Autobahn's 7.1.5 marks FAILED on the client regardless of the gateway.
    # Compression is offered on both; through tidegate it is negotiated end
    # to end with the fuzzingserver, so both run the same compressed cases.
    drive = [shutil.which("node") or "node", str(REPO / "tests" / "conformance" / "drive.mjs")]
    if through_gateway:
        gw = stack.proxy(f"ws://{m['addr']}")
        subprocess.run(drive + [gw.url(), "--deflate"], check=True, timeout=DRIVE_TIMEOUT)
    else:
        subprocess.run(drive + [f"ws://{m['addr']}/", "--deflate"], check=True, timeout=DRIVE_TIMEOUT)
    try:
        fz.popen.wait(120)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"fuzzingserver did not finish:\n{fz.log()[-3000:]}")
    if through_gateway:
        gw.stop()
    if not (outdir / "index.json").exists():
        raise RuntimeError(f"fuzzingserver wrote no report:\n{fz.log()[-3000:]}")
    return time.monotonic() - t0


def deflate_echo(stack: g.Stack) -> str:
    """Start the compressing echo (tests/conformance/deflate_echo.mjs, Node
    `ws`: Python websockets compresses too slowly for 12.2.* on a shared
    2-core machine); its host:port."""
    p = stack.spawn("deflate-echo", [shutil.which("node") or "node", str(HERE / "deflate_echo.mjs")])
    (m,) = p.wait_for(r"deflate echo listening addr=" + g.ADDR)
    return m["addr"]


# -- verdicts ----------------------------------------------------------------


def load(outdir: Path) -> dict[str, dict]:
    index = json.loads((outdir / "index.json").read_text())
    cases: dict[str, dict] = {}
    for agent_cases in index.values():
        cases.update(agent_cases)
    return cases


def case_key(case_id: str) -> tuple:
    return tuple(int(x) for x in case_id.split("."))


def summarize(cases: dict[str, dict]) -> dict[str, collections.Counter]:
    per = collections.defaultdict(collections.Counter)
    for cid, v in cases.items():
        sec = cid.split(".")[0]
        per[sec][v["behavior"]] += 1
        if v.get("behaviorClose") not in GOOD_CLOSE:
            per[sec]["bad close"] += 1
    return per


def is_bad(cid: str, v: dict, lenient_close: bool, compressing: bool = False) -> bool:
    sec = cid.split(".")[0]
    b, bc = v["behavior"], v.get("behaviorClose")
    if b in ("FAILED", "ERROR"):
        return True
    allowed = ("OK", "NON-STRICT", "INFORMATIONAL") + (() if compressing else ("UNIMPLEMENTED",))
    if sec in ("12", "13") and b not in allowed:
        return True
    return not lenient_close and bc not in GOOD_CLOSE and b != "UNIMPLEMENTED"


def _reason(reason) -> str:
    if isinstance(reason, str) and len(reason) > 40:
        return repr(reason[:20]) + f"… ({len(reason.encode())} bytes)"
    return repr(reason)


def describe(side: str, outdir: Path, cid: str, v: dict) -> str:
    detail = ""
    rf = outdir / v.get("reportfile", "")
    if rf.is_file():
        r = json.loads(rf.read_text())
        detail = (
            f" — {r.get('result', '')} | close: {r.get('resultClose', '')}"
            f" | remote close {r.get('remoteCloseCode')} {_reason(r.get('remoteCloseReason'))}"
            f" | expected {json.dumps(r.get('expected'))[:300]}"
            f" | received {json.dumps(r.get('received'))[:300]}"
            f" | report {rf.relative_to(outdir.parent)}"
        )
    return f"[{side}] {cid}: behavior={v['behavior']} behaviorClose={v.get('behaviorClose')}{detail}"


def short(line: str) -> str:
    """The doc form of a `describe` line: verdicts and what the peer sent,
    without the expected/received dumps and local report paths."""
    head, _, rest = line.partition(" — ")
    parts = [p for p in rest.split(" | ") if p.startswith(("close:", "remote close"))]
    return head + (" — " + "; ".join(parts) if parts else "")


def grouped(lines: list[str]) -> list[str]:
    """Doc bullets: cases of one side that fail the same way, on one line."""
    import re

    groups: dict[tuple, list[str]] = {}
    for line in lines:
        m = re.match(r"\[(?P<side>[^\]]+)\] (?P<cid>\S+): behavior=(?P<b>.*?) behaviorClose=(?P<rest>.*)", short(line))
        if not m:
            groups.setdefault((line,), [])
            continue
        key = (m["side"], m["rest"])
        groups.setdefault(key, []).append(f"{m['cid']}" + (f" ({m['b']})" if m["b"] != "OK" else ""))
    out = []
    for key, cids in groups.items():
        if len(key) == 1:
            out.append(key[0])
        else:
            out.append(f"`{key[0]}`: {', '.join(cids)} — closing handshake {key[1]}")
    return out


def problems(side: str, outdir: Path, cases: dict, lenient_close: bool, baseline: dict | None):
    """(failing, excused): excused are failures the baseline side shows too."""
    failing, excused = [], []
    for cid in sorted(cases, key=case_key):
        v = cases[cid]
        if not is_bad(cid, v, lenient_close, side in COMPRESSING):
            continue
        b = (baseline or {}).get(cid)
        if b and (b["behavior"], b.get("behaviorClose")) == (v["behavior"], v.get("behaviorClose")):
            excused.append(describe(side, outdir, cid, v))
        else:
            failing.append(describe(side, outdir, cid, v))
    return failing, excused


def table(per: dict[str, collections.Counter]) -> str:
    cols = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
    extra = [c for c in ("ERROR",) if any(per[s][c] for s in per)] + ["bad close"]
    head = ["section"] + cols + extra + ["total"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    totals = collections.Counter()
    for sec in sorted(per, key=int):
        c = per[sec]
        n = sum(c[b] for b in BEHAVIORS)
        totals.update(c)
        totals["total"] += n
        name = f"{sec}. {SECTION_NAMES.get(sec, '')}"
        lines.append("| " + " | ".join([name] + [str(c[k]) for k in cols + extra] + [str(n)]) + " |")
    lines.append("| **all** | " + " | ".join(f"**{totals[k]}**" for k in cols + extra + ["total"]) + " |")
    return "\n".join(lines)


def write_doc(path: Path, results: dict, timings: dict, full: bool, cmd: str, all_problems: list[str], excused: list[str], cfull: bool = True) -> None:
    kosoku_version = subprocess.run(
        [sys.executable, "-c", "import importlib.metadata as m; print(m.version('kosoku'))"],
        capture_output=True, text=True,
    ).stdout.strip()
    ws_pkg = REPO / "tests" / "node" / "node_modules" / "ws" / "package.json"
    ws_version = json.loads(ws_pkg.read_text()).get("version", "?") if ws_pkg.exists() else "?"
    lines = [
        "# Conformance (Autobahn TestSuite via kosoku)",
        "",
        "tidegate is run against the [Autobahn TestSuite](https://github.com/crossbario/autobahn-testsuite)",
        f"cases with [kosoku](https://pypi.org/project/kosoku/) {kosoku_version}, a Python 3 runner of the",
        "Autobahn case files, on both of its faces: as the **server** a client connects to, and as the",
        "**client** of an upstream (the gateway side that dials the application).",
        "",
        "Regenerated by:",
        "",
        "```sh",
        cmd,
        "```",
        "",
        f"Date: {datetime.date.today().isoformat()}. Selection: {'the full suite' if full else 'quick subset (9.* reduced to one case per group)'}"
        + ("." if cfull else f"; on the compressing sides 12.*/13.* only {COMPRESSION_SUBSET_TEXT} (`--compression full` runs all)."),
        "",
        "`bash scripts/test.sh` runs `tests/conformance/run.py` on every test run "
        "(the full suite; `TG_TEST_CONFORMANCE=quick` or `run.py` without `--full` skips the",
        "bulk 9.* cases). The run fails on any case whose behavior is FAILED or ERROR, and on any",
        "closing-handshake verdict other than OK/INFORMATIONAL. Compression cases (12.*, 13.*) must be",
        "OK (or NON-STRICT/INFORMATIONAL) on the sides where compression is negotiated (`upstream`,",
        "`client-direct`, `server-deflate`, `server-edge`, `deflate-direct`); behind `server-ws`/`server-wss`",
        "the upstream (`tidegate echo`) declines `permessage-deflate`, the passthrough route relays",
        "that answer, and those cases are UNIMPLEMENTED by design.",
        "",
        "Legend (Autobahn's): **OK** as the case requires; **NON-STRICT** diverges from a SHOULD",
        "(still conformant); **INFORMATIONAL** behaviour the RFC leaves open; **UNIMPLEMENTED**",
        "the feature (compression) is not offered; **FAILED** violates a MUST. **bad close** counts",
        "cases whose closing-handshake verdict is not OK/INFORMATIONAL (wrong close code, unclean",
        "close, closed by the wrong side), whatever their behavior column says.",
        "",
        "## Setups",
        "",
        "| side | path | run time |",
        "|---|---|---|",
    ]
    for side in results:
        lines.append(f"| `{side}` | {SIDES[side]} | {timings[side]:.0f} s |")
    lines += [
        "",
        "- `server-wss`: kosoku speaks plain TCP, so `socat TCP-LISTEN:P,fork OPENSSL:127.0.0.1:GW,verify=0`",
        "  carries it over TLS into tidegate's TLS listener (test certificate, ECDSA P-256).",
        f"- `upstream`: the client is Node `ws` {ws_version} (`tests/conformance/drive.mjs`), which echoes every message it",
        "  receives (the Autobahn client protocol: `/getCaseCount`, `/runCase?case=N&agent=A`,",
        "  `/updateReports`); every request and frame passes through tidegate. The verdict is on",
        "  the pair (tidegate + ws); `client-direct` runs the same client without the",
        "  gateway, and a case that fails the same way there is the client's own verdict.",
        "- `echo-direct`: `tidegate echo` without the gateway, as a baseline: a finding there and in",
        "  `server-*` belongs to the echo upstream, not to the proxy.",
        "- `server-deflate`: permessage-deflate negotiated end to end (the passthrough default): the",
        f"  upstream is Node `ws` {ws_version} with `perMessageDeflate` (`tests/conformance/deflate_echo.mjs`), and",
        "  the relay passes compressed frames as they are. `server-edge`: `tidegate proxy",
        "  --permessage-deflate edge` answers the offer itself in front of the plain `tidegate echo`",
        "  (route defaults: context takeover, 15-bit windows, level 6, `min_size` 0).",
        "  `deflate-direct` is the compressing echo without the gateway, the baseline of both.",
        "",
    ]
    for side, per in results.items():
        lines += [f"## {side}: {SIDES[side]}", "", table(per), ""]
    lines += [
        "## NON-STRICT and INFORMATIONAL cases, explained",
        "",
        "The same ids show on the baselines without the gateway, so none of them is introduced by",
        "tidegate:",
        "",
        "- **6.4.1–6.4.4 (NON-STRICT)**: a text message whose invalid UTF-8 arrives in a later",
        "  fragment or chunk. Autobahn prefers the connection failed at the first invalid byte",
        "  (\"fail fast\"). tidegate's relay does not look inside payloads (it forwards the bytes it",
        "  read, scanning only frame headers), so UTF-8 is checked by the endpoint: `tidegate echo`",
        "  checks whole messages (6.4.3/6.4.4 are NON-STRICT on `echo-direct` too) and Node `ws`",
        "  whole frames (6.4.1–6.4.4 are NON-STRICT on `client-direct` too). The connection is still",
        "  failed with 1007, only later than the case would like.",
        "- **7.1.6 (INFORMATIONAL)**: a large message followed by a Close; whether the peer echoes",
        "  the message before closing is left open by the RFC.",
        "- **7.13.1, 7.13.2 (INFORMATIONAL)**: Close codes outside the registry ranges; Autobahn",
        "  only records the answer (tidegate refuses codes outside 1000–1003, 1007–1014,",
        "  3000–4999 with 1002).",
        "",
    ]
    lines += ["## Findings", ""]
    if all_problems:
        lines += [
            f"{len(all_problems)} case(s) fail the run, grouped by side and failure (a case id with",
            "a behavior other than OK shows it in parentheses; details are in each case's JSON/HTML",
            "report under `.test-artifacts/conformance/SIDE/` after a run):",
            "",
        ] + [f"- {p}" for p in grouped(all_problems)] + [""]
    else:
        lines += ["None: no FAILED or ERROR case, no bad closing handshake, on any side.", ""]
    if excused:
        lines += [
            "Cases that do not pass on a side but fail the same way on its baseline (the endpoint's",
            "own verdict, not the gateway's; they do not fail the run):",
            "",
        ] + [f"- {p}" for p in grouped(excused)] + [""]
    path.write_text("\n".join(lines))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="run every case (9.* included)")
    ap.add_argument("--write-doc", action="store_true", help="regenerate docs/conformance.md")
    ap.add_argument("--sides", default=",".join(SIDES), help="comma list of: " + ", ".join(SIDES))
    ap.add_argument("--out", default=str(REPO / ".test-artifacts" / "conformance"), help="report directory")
    ap.add_argument("--parallelism", type=int, default=2, help="kosoku fuzzingclient parallelism")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep --out and take every side that already has a report there (e.g. sides run in parallel "
        "by separate invocations, linked into one directory) instead of running it again",
    )
    ap.add_argument("--lenient-close", action="store_true", help="do not fail on closing-handshake verdicts")
    ap.add_argument(
        "--compression",
        choices=["subset", "full"],
        default="subset",
        help="12.*/13.* on the compressing sides: " + COMPRESSION_SUBSET_TEXT + " (subset) or all",
    )
    args = ap.parse_args()

    sides = [s for s in args.sides.split(",") if s]
    for s in sides:
        if s not in SIDES:
            ap.error(f"unknown side {s}")
    out = Path(args.out)
    if out.exists() and not args.reuse:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    all_problems: list[str] = []
    all_cases: dict[str, dict] = {}
    cfull = args.compression == "full"
    with g.Stack(out / "processes") as stack:
        echo = stack.echo()
        for side in sides:
            outdir = out / side
            print(f"conformance: {side} ({SIDES[side]}) ...", flush=True)
            if args.reuse and (outdir / "index.json").exists():
                timings[side] = float((outdir / SECONDS_FILE).read_text())
            elif side == "server-ws":
                gw = stack.proxy(f"ws://{echo}")
                timings[side] = run_fuzzingclient(f"ws://{gw.addr}", outdir, args.full, args.parallelism, out / f"{side}.log")
            elif side == "server-wss":
                certs = g.make_certs(out / "certs")
                gw = stack.proxy(f"ws://{echo}", tls=(certs.cert, certs.key))
                plain = stack.socat_tls_front(gw.addr)
                timings[side] = run_fuzzingclient(f"ws://{plain}", outdir, args.full, args.parallelism, out / f"{side}.log")
            elif side == "echo-direct":
                timings[side] = run_fuzzingclient(f"ws://{echo}", outdir, args.full, args.parallelism, out / f"{side}.log")
            elif side == "upstream":
                timings[side] = run_upstream_side(stack, outdir, args.full, compression_full=cfull)
            elif side == "client-direct":
                timings[side] = run_upstream_side(stack, outdir, args.full, through_gateway=False, compression_full=cfull)
            elif side == "server-edge":
                gw = stack.proxy(f"ws://{echo}", deflate="edge")
                timings[side] = run_fuzzingclient(f"ws://{gw.addr}", outdir, args.full, args.parallelism, out / f"{side}.log", cfull)
            elif side in ("server-deflate", "deflate-direct"):
                upstream = deflate_echo(stack)
                if side == "server-deflate":
                    upstream = stack.proxy(f"ws://{upstream}").addr
                timings[side] = run_fuzzingclient(f"ws://{upstream}", outdir, args.full, args.parallelism, out / f"{side}.log", cfull)
            (outdir / SECONDS_FILE).write_text(f"{timings[side]:.1f}")
            all_cases[side] = load(outdir)
            results[side] = summarize(all_cases[side])
            n = len(all_cases[side])
            bad = sum(is_bad(c, v, args.lenient_close, side in COMPRESSING) for c, v in all_cases[side].items())
            print(f"conformance: {side}: {n} cases in {timings[side]:.1f}s, {bad} not passing", flush=True)

    all_excused: list[str] = []
    for side, cases in all_cases.items():
        failing, excused = problems(
            side, out / side, cases, args.lenient_close, all_cases.get(BASELINE_OF.get(side, ""))
        )
        if side in NOT_GATING:
            excused, failing = excused + failing, []
        all_problems += failing
        all_excused += excused

    print()
    for side, per in results.items():
        print(f"## {side}\n{table(per)}\n")
    if args.write_doc:
        cmd = ".venv/bin/python tests/conformance/run.py" + (" --full" if args.full else "") + (" --compression full" if cfull else "") + " --write-doc"
        if sides != list(SIDES):
            cmd += f" --sides {','.join(sides)}"
        write_doc(REPO / "docs" / "conformance.md", results, timings, args.full, cmd, all_problems, all_excused, cfull)
        print("wrote docs/conformance.md")
    for p in all_excused:
        print("  same on the baseline (not failing the run): " + p)
    if all_problems:
        print(f"{len(all_problems)} conformance case(s) fail:")
        for p in all_problems:
            print("  " + p)
        return 1
    print("conformance: no FAILED cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
