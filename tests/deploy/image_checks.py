"""The Dockerfile, without a container engine: lint, the dependency
layer replayed, the image's ENV against a mounted config, and the start-up
path of the binary as the image would run it."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

from common import BIN, DEPLOY, REPO, http_get, ok, problem, section, start_gateway


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        cur += " " + s[:-1] if s.endswith("\\") else " " + s
        if not s.endswith("\\"):
            ins, _, arg = cur.strip().partition(" ")
            out.append((ins.upper(), arg.strip()))
            cur = ""
    return out


def check_dependency_layer(build: list[tuple[str, str]], tmp: Path) -> None:
    """The build stage fetches the crates in a layer that depends on the
    manifests only: a RUN with `cargo fetch` before the sources are copied.
    Replayed here: the files COPY'd before it, its commands up to the
    fetch, then cargo must load the workspace from them (offline, locked)."""
    copy_all = next((i for i, (k, a) in enumerate(build) if k == "COPY" and a.split()[:1] == ["."]), None)
    fetch = next((i for i, (k, a) in enumerate(build) if k == "RUN" and "cargo fetch" in a), None)
    if fetch is None or copy_all is None or fetch > copy_all:
        problem("Dockerfile: no `cargo fetch` layer before `COPY . .`: a source edit downloads every crate again")
        return
    work = tmp / "deps"
    work.mkdir(parents=True)
    for k, a in build[:fetch]:
        if k == "COPY":
            *srcs, dest = [x for x in a.split() if not x.startswith("--")]
            for src in srcs:
                target = work / dest / Path(src).name if dest.endswith("/") else work / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / src, target)
    prep = build[fetch][1].split("cargo fetch")[0].rstrip().removesuffix("&&")
    r = subprocess.run(["bash", "-euc", prep or "true"], cwd=work, capture_output=True, text=True, timeout=60)
    if r.returncode == 0:
        r = subprocess.run(["cargo", "metadata", "--locked", "--offline", "--format-version", "1"], cwd=work,
                           capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        problem(f"Dockerfile: the `cargo fetch` layer cannot load the workspace from what it copies: {r.stderr.strip()[-600:]}")
    else:
        n = len(json.loads(r.stdout)["workspace_members"])
        ok(f"Dockerfile: `cargo fetch` layer loads the {n}-member workspace from its manifests and Cargo.lock alone")


def check_strip() -> None:
    prof = tomllib.loads((REPO / "Cargo.toml").read_text()).get("profile", {})
    if prof.get("release", {}).get("strip") is not True or prof.get("profiling", {}).get("strip") is not False:
        problem("Cargo.toml: want strip = true in [profile.release] and strip = false in [profile.profiling] (perf symbols)")


def check_mounted_config_wins(env: dict, tmp: Path) -> None:
    """A mounted configuration is used as written: the image's ENV must not
    change its admin address (it once turned 127.0.0.1:9191 into
    0.0.0.0:9090)."""
    f = tmp / "mounted.toml"
    tmp.mkdir(parents=True, exist_ok=True)
    f.write_text('[admin]\nlisten = "127.0.0.1:9191"\n\n[[listeners]]\nname = "l"\nlisten = "127.0.0.1:8080"\n\n'
                 '[[routes]]\nname = "r"\nupstream = "u"\n\n[[upstreams]]\nname = "u"\nendpoints = ["ws://127.0.0.1:3000"]\n')
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    r = subprocess.run([str(BIN), "check-config", "-c", str(f)], env=base_env | env, capture_output=True, text=True, timeout=20)
    admin = tomllib.loads(r.stdout).get("admin", {}).get("listen") if r.returncode == 0 else None
    if admin != "127.0.0.1:9191":
        problem(f"Dockerfile: a mounted config's admin.listen 127.0.0.1:9191 is {admin!r} under the image's ENV "
                f"(exit {r.returncode}: {r.stderr.strip()[-300:]})")
    else:
        ok("a mounted config's admin.listen is used as written under the image's ENV")


def check_dockerfile(tmp: Path) -> None:
    section("Dockerfile (lint, then its start-up path without a container engine)")
    path = DEPLOY / "Dockerfile"
    text = path.read_text()
    ins = dockerfile_instructions(text)
    froms = [a for i, a in ins if i == "FROM"]
    if len(froms) < 2:
        problem("Dockerfile: not multi-stage")
    stages = set()
    for f in froms:
        parts = f.split()
        parts = [p for p in parts if not p.startswith("--")]
        image = parts[0]
        if len(parts) >= 3 and parts[1].upper() == "AS":
            stages.add(parts[2])
        if image in stages:
            continue
        tag = image.split("@")[0].rpartition(":")[2] if ":" in image.split("/")[-1] else ""
        if "@" not in image and (not tag or tag == "latest"):
            problem(f"Dockerfile: FROM {image}: pin a tag (not latest)")
    last = max(i for i, (k, _) in enumerate(ins) if k == "FROM")
    final = ins[last:]
    users = [a for k, a in final if k == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem("Dockerfile: the runtime stage must set a non-root USER")
    if not any(k == "COPY" and "--from=" in a for k, a in final):
        problem("Dockerfile: runtime stage copies nothing from the build stage")
    entry = [a for k, a in final if k == "ENTRYPOINT"]
    cmd = [a for k, a in final if k == "CMD"]
    try:
        entry_argv = json.loads(entry[-1]) if entry else None
        cmd_argv = json.loads(cmd[-1]) if cmd else None
    except json.JSONDecodeError:
        entry_argv = cmd_argv = None
    if not isinstance(entry_argv, list):
        problem("Dockerfile: ENTRYPOINT must be in exec form (a JSON array) so tidegate is PID 1 and gets SIGTERM")
        return
    if not isinstance(cmd_argv, list):
        problem("Dockerfile: no CMD in exec form (JSON array) after ENTRYPOINT")
        cmd_argv = []
    if entry_argv != ["tidegate"] or "run" not in cmd_argv:
        problem(f"Dockerfile: want ENTRYPOINT [\"tidegate\"] + CMD [\"run\", ...] (a Deployment then sets args only), "
                f"have {entry_argv} + {cmd_argv}")
    labels = set(re.findall(r"(org\.opencontainers\.image\.\w+)=", " ".join(a for k, a in final if k == "LABEL")))
    want_labels = {f"org.opencontainers.image.{k}" for k in ("title", "description", "source", "licenses")}
    if want_labels - labels:
        problem(f"Dockerfile: OCI labels missing: {sorted(want_labels - labels)}")
    if "distroless" not in froms[-1]:
        problem(f"Dockerfile: runtime FROM {froms[-1]}: not distroless")
    check_dependency_layer(ins[:max(i for i, (k, _) in enumerate(ins) if k == "FROM")], tmp)
    check_strip()
    for k, a in final:
        if k == "CMD" and not a.startswith("["):
            problem("Dockerfile: CMD must be in exec form")
        if k == "RUN" and "apt-get install" in a and ("--no-install-recommends" not in a or "/var/lib/apt/lists" not in a):
            problem("Dockerfile: apt-get install without --no-install-recommends / list cleanup")
    stopsig = [a for k, a in final if k == "STOPSIGNAL"]
    if stopsig and stopsig[-1] not in ("SIGTERM", "15"):
        problem(f"Dockerfile: STOPSIGNAL {stopsig[-1]}: the drain starts on SIGTERM")
    if not any(k == "HEALTHCHECK" for k, _ in final) and not re.search(r"^#\s*No HEALTHCHECK\b", text, re.M):
        problem("Dockerfile: no HEALTHCHECK and no '# No HEALTHCHECK: <reason>' comment")
    env = {}
    for k, a in final:
        if k == "ENV":
            for tok in shlex.split(a):
                key, _, val = tok.partition("=")
                env[key] = val
    for key in env:
        if key.startswith("TIDEGATE_") and "__" in key:
            problem(f"Dockerfile: ENV {key} overrides that key of every mounted configuration; set it in the image's file")
    copies = {}
    for k, a in final:
        if k == "COPY" and "--from=" not in a:
            parts = [p for p in a.split() if not p.startswith("--")]
            for src in parts[:-1]:
                if not (REPO / src).exists():
                    problem(f"Dockerfile: COPY {src}: not in the repository")
                copies[parts[-1]] = REPO / src
    expose = {int(p.split("/")[0]) for k, a in final if k == "EXPOSE" for p in a.split()}
    ok(f"Dockerfile: {len(froms)} stages, USER {users[-1] if users else '-'}, ENTRYPOINT {entry_argv}, ENV {sorted(env)}")

    check_mounted_config_wins(env, tmp)

    # --- the container's start-up, emulated
    entry_argv = entry_argv + cmd_argv
    cfg_in_image = entry_argv[entry_argv.index("--config") + 1] if "--config" in entry_argv else None
    src = copies.get(cfg_in_image)
    if src is None:
        problem(f"Dockerfile: the ENTRYPOINT's config {cfg_in_image} is not COPY'd into the image")
        return
    cfg = tomllib.loads(src.read_text())
    ports = {int(l["listen"].rpartition(":")[2]) for l in cfg.get("listeners", [])}
    admin = env.get("TIDEGATE_ADMIN__LISTEN") or cfg.get("admin", {}).get("listen", "")
    if admin:
        ports.add(int(admin.rpartition(":")[2]))
    if ports - expose:
        problem(f"Dockerfile: ports {sorted(ports - expose)} used by {src.name} + ENV are not EXPOSEd ({sorted(expose)})")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    r = subprocess.run([str(BIN), "check-config", "-c", str(src)], env=base_env | env, capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        problem(f"Dockerfile: check-config {src.relative_to(REPO)} with the image's ENV failed: {(r.stdout + r.stderr)[-800:]}")
    else:
        ok(f"check-config {src.relative_to(REPO)} with the image's ENV passes")

    root = tmp / "image"
    (root / "bin").mkdir(parents=True)
    for d in (tmp, root, root / "bin"):
        d.chmod(0o755)
    binary = root / "bin" / entry_argv[0]
    shutil.copy2(BIN, binary)
    binary.chmod(0o755)
    conf = root / "tidegate.toml"
    conf.write_text(re.sub(r'(listen\s*=\s*")[^"]*:\d+(")', r"\g<1>127.0.0.1:0\g<2>", src.read_text()))
    conf.chmod(0o644)
    argv = [str(binary)] + [str(conf) if a == cfg_in_image else a for a in entry_argv[1:]]
    run_env = base_env | env | {"PATH": f"{root / 'bin'}:{os.environ.get('PATH', '')}"}
    uid_gid = users[-1] if users else ""
    how = "as the current user"
    if os.geteuid() == 0 and re.fullmatch(r"\d+(:\d+)?", uid_gid) and shutil.which("setpriv"):
        uid, _, gid = uid_gid.partition(":")
        argv = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups"] + argv
        how = f"as uid:gid {uid}:{gid or uid} (setpriv)"
    elif os.geteuid() == 0:
        problem(f"Dockerfile: USER {uid_gid!r} is not numeric uid:gid (runAsNonRoot needs a numeric USER)")
    t0 = time.monotonic()
    proc, admin_addr = start_gateway(argv[1:], env=run_env, cwd="/", argv0=argv[0])
    try:
        if how.startswith("as uid"):
            st = Path(f"/proc/{proc.pid}/status").read_text()
            real = re.search(r"^Uid:\s+(\d+)", st, re.M).group(1)
            if real == "0":
                problem("start-up: the gateway runs as root")
        codes = {p: http_get(f"http://{admin_addr}{p}")[0] for p in ("/readyz", "/healthz")}
        if codes != {"/readyz": 200, "/healthz": 200}:
            problem(f"start-up: probes answered {codes}")
        started = time.monotonic() - t0
        proc.send_signal(signal.SIGTERM)
        t1 = time.monotonic()
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        dt = time.monotonic() - t1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    if rc != 0:
        problem(f"start-up: SIGTERM -> exit {rc} after {dt:.1f}s (want 0 within 10s); stderr: {err[-800:]}")
    else:
        ok(f"start-up {how} with {src.relative_to(REPO)} (ports -> 0) and the image's ENV: ready in {started:.2f}s, "
           f"/readyz /healthz 200, SIGTERM -> exit 0 in {dt:.2f}s")
