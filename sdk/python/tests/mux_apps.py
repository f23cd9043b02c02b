"""Example applications as subprocesses, found by the address line they
print. For tests of this SDK and, later, tests through the real gateway
(point a mux route at ``EchoApp.addr``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

START_TIMEOUT = 30.0
LINE = re.compile(r"^tidegate-mux (\w+) listening addr=(\S+):(\d+)$")


def rust_example(name: str) -> Path:
    """The Rust SDK's example binary (``cargo build --release --examples``,
    which scripts/test.sh runs before the tests)."""
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache" / "tidegate" / "target")
    path = Path(target) / "release" / "examples" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `cargo build --release --examples -p tidegate-mux`")
    return path


class ExampleApp:
    """``python -m tidegate_mux.examples.NAME --listen 127.0.0.1:0``, or with
    ``rust=True`` the Rust SDK's example of that name."""

    def __init__(
        self, name: str = "echo", *args: str, host: str = "127.0.0.1", port: int = 0, rust: bool = False
    ) -> None:
        self.name = name
        program = [str(rust_example(name))] if rust else [sys.executable, "-m", f"tidegate_mux.examples.{name}"]
        self.proc = subprocess.Popen(
            [*program, "--listen", f"{host}:{port}", *args],
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.line = self._read_line()
        m = LINE.match(self.line)
        if not m or m.group(1) != name:
            self.stop()
            raise RuntimeError(f"unexpected first line from {name}: {self.line!r}")
        self.host = m.group(2).strip("[]")
        self.port = int(m.group(3))
        self.addr = f"{m.group(2)}:{self.port}"

    def _read_line(self) -> str:
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        t.start()
        t.join(START_TIMEOUT)
        if not out:
            self.proc.kill()
            raise RuntimeError(f"{self.name} printed no address line within {START_TIMEOUT}s")
        return out[0].rstrip("\n")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ExampleApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_echo(*args: str, port: int = 0, rust: bool = False) -> ExampleApp:
    return ExampleApp("echo", *args, port=port, rust=rust)
