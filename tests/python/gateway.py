"""Start and stop tidegate (and test upstreams) for the real-client tests.

Shared by the pytest suite (tests/python), the Node and browser tests (which
run this module's `harness` command as a child process) and the conformance
runner (tests/conformance/run.py).

Every process started here:
  * binds port 0 and is found by parsing the address line it prints;
  * writes stdout/stderr to a log file (never a pipe that could fill up);
  * gets PR_SET_PDEATHSIG=SIGKILL, so it dies with the Python process that
    started it even if that process is killed hard;
  * is terminated (SIGTERM, then SIGKILL) by `stop()`.

CLI:
  python gateway.py make-certs DIR
  python gateway.py harness [--tls] [--upstream echo|python] [--allow-origin O]...
      prints one JSON line with the addresses, runs until stdin closes or
      SIGTERM/SIGINT, then stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# How long a process gets to print its address line. Generous: a cold
# machine under a parallel cargo build can be slow to exec a release binary.
START_TIMEOUT = 30.0


# --------------------------------------------------------------------------
# locating the binary


def tidegate_bin() -> Path:
    """The tidegate binary: $TG_TEST_BIN, else the release build in
    $CARGO_TARGET_DIR (default ~/.cache/tidegate/target, as scripts/test.sh
    uses), else ./target/release."""
    env = os.environ.get("TG_TEST_BIN")
    if env:
        return Path(env)
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "tidegate")
    candidates.append(Path.home() / ".cache" / "tidegate" / "target" / "release" / "tidegate")
    candidates.append(REPO / "target" / "release" / "tidegate")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise FileNotFoundError(
        "tidegate binary not found (build it with `cargo build --release --bin tidegate` "
        "or set TG_TEST_BIN); looked in: " + ", ".join(map(str, candidates))
    )


# --------------------------------------------------------------------------
# processes


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGKILL the child when we die."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def free_port() -> int:
    """A port that was free a moment ago (for tools that cannot bind port 0
    and report it, like socat)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env() -> dict[str, str]:
    """The environment for a child: ours without TIDEGATE_* (tidegate reads
    those as configuration overrides, and the test runner's own
    TG_TEST_BIN etc. must not leak into the gateway's config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    env.setdefault("RUST_LOG", "info")
    return env


@dataclass
class Proc:
    """A child process whose output goes to a log file."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None
    _log: object = None

    def start(self) -> "Proc":
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            env=_child_env(),
        )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, pattern: str, count: int = 1, timeout: float = START_TIMEOUT) -> list[re.Match]:
        """Wait until `count` lines of the log match `pattern`."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            matches = list(rx.finditer(self.log()))
            if len(matches) >= count:
                return matches[:count]
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode} before printing "
                    f"{pattern!r}; argv={self.argv}\n--- log ---\n{self.log()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} did not print {pattern!r} within {timeout}s; "
                    f"argv={self.argv}\n--- log ---\n{self.log()[-4000:]}"
                )
            time.sleep(0.02)

    def signal(self, sig: int) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL. Returns the exit code."""
        if not self.popen:
            return None
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self._log:
            self._log.close()
            self._log = None
        return self.popen.returncode


ADDR = r"(?P<addr>[0-9.]+:\d+|\[[0-9a-fA-F:]+\]:\d+)"


@dataclass
class Gateway:
    """A running `tidegate proxy` or `tidegate run`."""

    proc: Proc
    listeners: dict[str, dict] = field(default_factory=dict)
    admin: str | None = None

    @property
    def addr(self) -> str:
        """host:port of the first (default) listener."""
        return next(iter(self.listeners.values()))["addr"]

    @property
    def tls(self) -> bool:
        return next(iter(self.listeners.values()))["tls"]

    def url(self, path: str = "/") -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.addr}{path}"

    def stop(self) -> int | None:
        return self.proc.stop()


class Stack:
    """Owns every process and temp dir of one test setup; `close()` stops them
    in reverse order."""

    def __init__(self, workdir: Path | None = None):
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tidegate-test-")
            workdir = Path(self._tmp.name)
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self._closers: list = []
        self._n = 0

    def _proc(self, name: str, argv: list[str]) -> Proc:
        self._n += 1
        p = Proc(name, [str(a) for a in argv], self.dir / f"{self._n:02d}-{name}.log")
        self.procs.append(p)
        return p.start()

    def on_close(self, fn) -> None:
        self._closers.append(fn)

    # -- tidegate ----------------------------------------------------------

    def echo(self) -> str:
        """Start `tidegate echo`; returns its host:port."""
        p = self._proc("echo", [tidegate_bin(), "echo", "--listen", "127.0.0.1:0"])
        (m,) = p.wait_for(r"tidegate echo listening addr=" + ADDR)
        return m["addr"]

    def proxy(
        self,
        upstream: str,
        *,
        tls: tuple[Path, Path] | None = None,
        allow_origins: list[str] = (),
        admin: bool = False,
        workers: int | None = None,
        extra: list[str] = (),
    ) -> Gateway:
        """Start `tidegate proxy` in front of `upstream` (ws://host:port)."""
        argv = [tidegate_bin(), "proxy", "--listen", "127.0.0.1:0", "--upstream", upstream]
        if tls:
            argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        for o in allow_origins:
            argv += ["--allow-origin", o]
        if admin:
            argv += ["--admin", "127.0.0.1:0"]
        if workers:
            argv += ["--workers", str(workers)]
        argv += list(extra)
        p = self._proc("proxy", argv)
        return self._gateway(p, listeners=1, admin=admin)

    def run_config(
        self,
        config_text: str,
        *,
        listeners: int = 1,
        admin: bool = False,
        prefix: list[str] = (),
    ) -> Gateway:
        """Start `tidegate run --config FILE` with the given TOML. `prefix`:
        a command that execs the gateway (e.g. `prlimit --nofile=200:200`),
        so the process's pid is still the gateway's."""
        self._n += 1
        cfg = self.dir / f"{self._n:02d}-tidegate.toml"
        cfg.write_text(config_text)
        p = self._proc("run", [*prefix, tidegate_bin(), "run", "--config", cfg])
        return self._gateway(p, listeners=listeners, admin=admin)

    def _gateway(self, p: Proc, *, listeners: int, admin: bool) -> Gateway:
        gw = Gateway(p)
        for m in p.wait_for(
            r"tidegate listening name=(?P<name>\S+) addr=" + ADDR + r" tls=(?P<tls>true|false)",
            count=listeners,
        ):
            gw.listeners[m["name"]] = {"addr": m["addr"], "tls": m["tls"] == "true"}
        if admin:
            (m,) = p.wait_for(r"tidegate admin addr=" + ADDR)
            gw.admin = m["addr"]
        return gw

    # -- other processes ---------------------------------------------------

    def socat_tls_front(self, tls_addr: str) -> str:
        """Plain TCP -> TLS bridge (for clients that cannot speak TLS, e.g.
        kosoku). Returns the plain host:port."""
        port = free_port()
        host, _, gwport = tls_addr.rpartition(":")
        p = self._proc(
            "socat",
            [
                "socat",
                f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                f"OPENSSL:{host}:{gwport},verify=0",
            ],
        )
        wait_tcp("127.0.0.1", port, proc=p)
        return f"127.0.0.1:{port}"

    def spawn(self, name: str, argv: list[str]) -> Proc:
        return self._proc(name, argv)

    def close(self) -> None:
        for fn in reversed(self._closers):
            try:
                fn()
            except Exception as e:  # teardown must go on
                print(f"teardown error: {e!r}", file=sys.stderr)
        for p in reversed(self.procs):
            p.stop()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_tcp(host: str, port: int, timeout: float = START_TIMEOUT, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if proc and proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited early:\n{proc.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port}")
            time.sleep(0.05)


# --------------------------------------------------------------------------
# TLS test certificates


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(directory: Path) -> Certs:
    """A test CA and a server certificate for localhost / 127.0.0.1 / ::1,
    both ECDSA P-256. Reuses files already in `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if out.ca.exists() and out.cert.exists() and out.key.exists():
        return out

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tidegate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    out.ca.write_bytes(ca.public_bytes(pem))
    out.cert.write_bytes(leaf.public_bytes(pem))
    out.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out


def client_ssl_context(certs: Certs):
    import ssl

    ctx = ssl.create_default_context(cafile=str(certs.ca))
    return ctx


# --------------------------------------------------------------------------
# a Python `websockets` upstream, run in a thread with its own event loop

MAGIC_HELP = """Messages the Python upstream understands (anything else is echoed):
  close:CODE[:REASON]   close the connection with CODE and REASON
  whoami                reply with JSON {path, headers, extensions}
"""


async def _pyupstream_handler(ws) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("close:"):
                _, code, *reason = msg.split(":", 2)
                await ws.close(int(code), reason[0] if reason else "")
                return
            if msg == "whoami":
                await ws.send(
                    json.dumps(
                        {
                            "path": ws.request.path,
                            "headers": {k.lower(): v for k, v in ws.request.headers.raw_items()},
                            "extensions": [type(e).__name__ for e in ws.protocol.extensions],
                        }
                    )
                )
                continue
            await ws.send(msg)
    except ConnectionClosed:
        pass


class PyUpstream:
    """`websockets.serve` echo with magic messages, on 127.0.0.1:0, in a
    background thread. Use as a context manager or start()/stop()."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.port: int | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"ws://{self.addr}"

    def start(self) -> "PyUpstream":
        self.thread = threading.Thread(target=self._run, name="pyupstream", daemon=True)
        self.thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._error:
            raise RuntimeError(f"python upstream failed to start: {self._error!r}")
        return self

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:  # surfaced through start()
            self._error = e
            self._ready.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        # max_size=None: limits are the gateway's business in these tests.
        async with serve(_pyupstream_handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self.loop and self._stop and self.thread and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(10)

    def __enter__(self) -> "PyUpstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------
# CLI


def _harness(args: argparse.Namespace) -> int:
    """Start an upstream and a gateway, print their addresses as one JSON
    line, and run until stdin closes or we are signalled."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    with Stack() as stack:
        info: dict = {"dir": str(stack.dir)}
        if args.upstream_url or args.config:
            # The caller runs its own application (e.g. a Socket.IO server).
            upstream = args.upstream_url
        elif args.upstream == "python":
            up = PyUpstream().start()
            stack.on_close(up.stop)
            upstream = up.url
        else:
            upstream = "ws://" + stack.echo()
        info["upstream"] = upstream
        tls = None
        if args.tls:
            certs = make_certs(stack.dir / "certs")
            tls = (certs.cert, certs.key)
            info["ca"] = str(certs.ca)
        if args.config:
            # `tidegate run` with the caller's config (its first listener is
            # the one reported); the upstream flags are not used.
            gw = stack.run_config(Path(args.config).read_text())
        else:
            gw = stack.proxy(upstream, tls=tls, allow_origins=args.allow_origin)
        info["gateway"] = gw.addr
        info["url"] = gw.url()
        print(json.dumps(info), flush=True)

        # Parent gone (stdin EOF) or a signal: stop.
        def watch_stdin() -> None:
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except (OSError, ValueError):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
        while not stop.wait(0.2):
            for p in stack.procs:
                if p.popen.poll() is not None:
                    print(f"{p.name} exited with {p.popen.returncode}:\n{p.log()[-2000:]}", file=sys.stderr)
                    return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mc = sub.add_parser("make-certs", help="write ca.pem, server.pem, server.key into DIR")
    mc.add_argument("dir")
    h = sub.add_parser("harness", help="upstream + gateway; prints a JSON line with addresses")
    h.add_argument("--tls", action="store_true")
    h.add_argument("--upstream", choices=["echo", "python"], default="echo", help=MAGIC_HELP)
    h.add_argument("--allow-origin", action="append", default=[])
    h.add_argument(
        "--upstream-url",
        help="an upstream the caller already runs (ws://host:port); overrides --upstream, nothing is started",
    )
    h.add_argument("--config", help="run `tidegate run --config FILE` instead of `tidegate proxy`")
    args = ap.parse_args(argv)
    if args.cmd == "make-certs":
        c = make_certs(Path(args.dir))
        print(json.dumps({"ca": str(c.ca), "cert": str(c.cert), "key": str(c.key)}))
        return 0
    return _harness(args)


if __name__ == "__main__":
    sys.exit(main())
