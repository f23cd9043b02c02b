"""The systemd unit and the notify protocol, against the binary."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from common import BIN, DEPLOY, REPO, http_get, ok, problem, section, start_gateway, stop


def check_systemd(tmp: Path) -> None:
    """The unit is Type=notify, and the binary speaks the notify protocol:
    READY=1 after its listeners are bound, RELOADING=1 + MONOTONIC_USEC then
    READY=1 around a SIGHUP, STOPPING=1 when the drain starts; a bad
    configuration exits 64 without READY=1 (so `systemctl start` fails)."""
    import socket

    section("systemd (deploy/systemd/tidegate.service, the notify protocol against the binary)")
    unit = (DEPLOY / "systemd" / "tidegate.service").read_text()
    keys = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    if keys.get("Type") != "notify":
        problem(f"tidegate.service: Type={keys.get('Type')}, want notify")
    doc = keys.get("Documentation", "")
    m = re.fullmatch(r"man:(\w+)\((\d)\)", doc)
    if not m or not (REPO / "docs" / f"{m.group(1)}.{m.group(2)}").is_file():
        problem(f"tidegate.service: Documentation={doc!r} is not a man page shipped in docs/")
    sock_path = tmp / "notify.sock"
    tmp.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")} | {"NOTIFY_SOCKET": str(sock_path)}

    def recv() -> str:
        try:
            return sock.recv(4096).decode().strip()
        except TimeoutError:
            return "(nothing within 10 s)"

    try:
        bad = tmp / "bad.toml"
        bad.write_text('[[listeners]]\nname = "l"\nlisten = "not an address"\n')
        r = subprocess.run([str(BIN), "run", "--config", str(bad)], env=env, capture_output=True, timeout=20)
        sock.settimeout(0.5)
        early = recv()
        sock.settimeout(10)
        if r.returncode != 64 or "READY=1" in early:
            problem(f"systemd: bad config -> exit {r.returncode}, notification {early!r} (want 64, none)")
        conf = tmp / "notify.toml"
        conf.write_text('[admin]\nlisten = "127.0.0.1:0"\n\n[[listeners]]\nname = "l"\nlisten = "127.0.0.1:0"\n\n'
                        '[[routes]]\nname = "r"\nupstream = "u"\n\n[[upstreams]]\nname = "u"\nendpoints = ["ws://127.0.0.1:9"]\n')
        proc, admin = start_gateway(["run", "--config", str(conf)], env=env)
        try:
            got = [recv()]
            ready_after_bind = http_get(f"http://{admin}/readyz")[0] == 200
            proc.send_signal(signal.SIGHUP)
            got += [recv(), recv()]
            proc.send_signal(signal.SIGTERM)
            got.append(recv())
        finally:
            rc = stop(proc)
    finally:
        sock.close()
    want_ok = (got[0] == "READY=1" and got[1].startswith("RELOADING=1\nMONOTONIC_USEC=") and got[2] == "READY=1"
               and got[3] == "STOPPING=1" and rc == 0 and ready_after_bind)
    if not want_ok:
        problem(f"systemd: notifications {got}, exit {rc} (want READY=1, RELOADING=1+MONOTONIC_USEC, READY=1, STOPPING=1, 0)")
    else:
        ok("systemd: Type=notify; bad config -> exit 64 without READY=1; READY=1 after bind, "
           "RELOADING=1/READY=1 around SIGHUP, STOPPING=1 on SIGTERM, exit 0")
