#!/usr/bin/env python3
"""Offline validation of deploy/: Kubernetes manifests, Prometheus Operator
objects, the Grafana dashboard and the Dockerfile.

    .venv/bin/python tests/deploy/validate.py      (run by scripts/test.sh)

Exits non-zero on any problem. No kubectl, kustomize, container engine or
network is needed:

1. Renders every kustomization under deploy/k8s with a small Python
   implementation of the kustomize features the overlays use (resources,
   configMapGenerator, patches: strategic merge and JSON 6902, labels /
   commonLabels, namePrefix / nameSuffix, images, replicas, namespace) and
   validates each rendered object against the Kubernetes JSON schema
   (kubernetes-validate, schemas shipped in the wheel, strict mode). Then
   checks what the schema cannot: selectors match pod labels, Service and
   probe ports name real container ports, probes on /readyz and /healthz on
   the admin port, terminationGracePeriodSeconds > preStop + drain.grace,
   the HPA target exists, and every rendered tidegate.toml passes
   `tidegate check-config`.
2. PodMonitor / PrometheusRule (no schema available): required fields by
   hand; every PromQL expression only uses metric names that the gateway
   exports and label names those families have.
3. The Grafana dashboard: JSON model, datasource variable, unique panel ids,
   metric names exported by a real gateway (the /metrics of a running
   `tidegate proxy`, plus the families documented in docs/metrics.md for
   labelled families that only appear after traffic).
4. The Dockerfile: simple lint (multi-stage, pinned tags, non-root USER,
   exec-form ENTRYPOINT, STOPSIGNAL, HEALTHCHECK or a documented reason),
   then its start-up path without a container engine: the config it copies
   passes check-config with the image's ENV; the binary starts as the
   image's uid:gid with that config and ENV (ports moved to 0), /readyz
   answers 200, SIGTERM makes it exit 0 within 10 s.
"""

from __future__ import annotations

import copy
import hashlib
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
K8S_VERSION = "1.30.0"  # oldest Kubernetes the manifests target (native sidecars, HPA v2, PDB v1)

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


# ----------------------------------------------------------------- kustomize

INTERNAL = "__kz"  # bookkeeping key on rendered objects, removed at the end


def load_yaml_docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def obj_id(o: dict) -> tuple[str, str]:
    return o["kind"], o[INTERNAL]["orig"]


def matches(o: dict, kind: str | None, name: str | None) -> bool:
    if kind and o.get("kind") != kind:
        return False
    if name and name not in (o["metadata"].get("name"), o[INTERNAL]["orig"]):
        return False
    return True


def strategic_merge(base, patch, key: str = ""):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        mk = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "imagePullSecrets": "name"}.get(key)
        if key == "ports" and all(isinstance(i, dict) for i in base + patch):
            mk = "containerPort" if any("containerPort" in i for i in base + patch) else "port"
        if mk is None:
            return copy.deepcopy(patch)
        out = [copy.deepcopy(i) for i in base]
        for item in patch:
            for i, cur in enumerate(out):
                if isinstance(cur, dict) and cur.get(mk) == item.get(mk):
                    out[i] = strategic_merge(cur, item, key)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def json_patch(doc, ops: list[dict], where: str):
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        try:
            for p in parts[:-1]:
                parent = parent[int(p)] if isinstance(parent, list) else parent[p]
            last = parts[-1]
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(idx, copy.deepcopy(op["value"]))
                elif op["op"] == "replace":
                    parent[idx] = copy.deepcopy(op["value"])
                elif op["op"] == "remove":
                    del parent[idx]
                else:
                    raise ValueError(f"op {op['op']} not supported")
            else:
                if op["op"] in ("replace", "remove") and last not in parent:
                    raise KeyError(last)
                if op["op"] in ("add", "replace"):
                    parent[last] = copy.deepcopy(op["value"])
                elif op["op"] == "remove":
                    del parent[last]
                else:
                    raise ValueError(f"op {op['op']} not supported")
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise RuntimeError(f"{where}: JSON patch {op} does not apply: {e!r}")
    return doc


def pod_specs(o: dict):
    spec = o.get("spec", {})
    if o["kind"] == "Pod":
        yield spec
    elif "template" in spec:
        yield spec["template"].setdefault("spec", {})


KNOWN_KUSTOMIZE_KEYS = {"apiVersion", "kind", "resources", "configMapGenerator", "patches",
                        "patchesStrategicMerge", "labels", "commonLabels", "namePrefix",
                        "nameSuffix", "images", "replicas", "namespace", "generatorOptions"}


def kbuild(d: Path, top: bool = True) -> list[dict]:
    kfile = d / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    unknown = set(k) - KNOWN_KUSTOMIZE_KEYS
    if unknown:
        raise RuntimeError(f"{kfile}: kustomize fields not implemented by validate.py: {sorted(unknown)}")
    objs: list[dict] = []
    for r in k.get("resources", []):
        p = (d / r).resolve()
        if p.is_dir():
            objs += kbuild(p, top=False)
        else:
            for o in load_yaml_docs(p):
                o[INTERNAL] = {"orig": o["metadata"]["name"], "generated": False}
                objs.append(o)
    # configMapGenerator
    opts = k.get("generatorOptions", {})
    for g in k.get("configMapGenerator", []):
        data = {}
        for f in g.get("files", []):
            key, _, path = f.partition("=") if "=" in f else (Path(f).name, "", f)
            data[key] = (d / path).read_text()
        for lit in g.get("literals", []):
            key, _, val = lit.partition("=")
            data[key] = val
        behavior = g.get("behavior", "create")
        existing = [o for o in objs if o["kind"] == "ConfigMap" and o[INTERNAL]["orig"] == g["name"]]
        if behavior == "create":
            if existing:
                raise RuntimeError(f"{kfile}: ConfigMap {g['name']} already exists (use behavior: replace/merge)")
            objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]}, "data": data,
                         INTERNAL: {"orig": g["name"], "generated": not opts.get("disableNameSuffixHash", False)}})
        else:
            if not existing:
                raise RuntimeError(f"{kfile}: ConfigMap {g['name']} to {behavior} does not exist")
            cm = existing[0]
            cm["data"] = data if behavior == "replace" else {**cm.get("data", {}), **data}
    # patches
    patches = [{"path": p} for p in k.get("patchesStrategicMerge", [])] + list(k.get("patches", []))
    for p in patches:
        text = (d / p["path"]).read_text() if "path" in p else p["patch"]
        docs = [x for x in yaml.safe_load_all(text) if x is not None]
        where = f"{kfile}: patch {p.get('path') or p.get('target')}"
        if docs and isinstance(docs[0], list):  # JSON 6902
            t = p.get("target") or {}
            hit = [o for o in objs if matches(o, t.get("kind"), t.get("name"))]
            if not hit:
                raise RuntimeError(f"{where}: no object matches target {t}")
            for o in hit:
                json_patch(o, docs[0], where)
        else:
            for pd in docs:
                t = p.get("target") or {}
                kind, name = t.get("kind") or pd.get("kind"), t.get("name") or pd["metadata"]["name"]
                hit = [o for o in objs if matches(o, kind, name)]
                if not hit:
                    raise RuntimeError(f"{where}: no object {kind}/{name} to patch")
                for o in hit:
                    internal = o.pop(INTERNAL)
                    merged = strategic_merge(o, {kk: vv for kk, vv in pd.items() if kk not in ("apiVersion", "kind", "metadata")} | {"metadata": {kk: vv for kk, vv in pd["metadata"].items() if kk != "name"}})
                    o.clear()
                    o.update(merged)
                    o[INTERNAL] = internal
    # names
    for o in objs:
        o["metadata"]["name"] = k.get("namePrefix", "") + o["metadata"]["name"] + k.get("nameSuffix", "")
        if "namespace" in k:
            o["metadata"]["namespace"] = k["namespace"]
    # labels
    label_sets = [(l.get("pairs", {}), l.get("includeSelectors", False), l.get("includeTemplates", False))
                  for l in k.get("labels", [])]
    if k.get("commonLabels"):
        label_sets.append((k["commonLabels"], True, True))
    for pairs, sel, tmpl in label_sets:
        for o in objs:
            o["metadata"].setdefault("labels", {}).update(pairs)
            spec = o.get("spec", {})
            if (sel or tmpl) and "template" in spec:
                spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            if not sel:
                continue
            if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
                spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
            elif o["kind"] == "Service":
                spec.setdefault("selector", {}).update(pairs)
            elif o["kind"] == "PodDisruptionBudget" and "matchLabels" in spec.get("selector", {}):
                spec["selector"]["matchLabels"].update(pairs)
    # images
    for im in k.get("images", []):
        for o in objs:
            for ps in pod_specs(o):
                for c in ps.get("containers", []) + ps.get("initContainers", []):
                    img = c.get("image", "")
                    if img == im["name"] or img.startswith(im["name"] + ":") or img.startswith(im["name"] + "@"):
                        base = im.get("newName", im["name"])
                        if "digest" in im:
                            c["image"] = f"{base}@{im['digest']}"
                        else:
                            tag = im.get("newTag", img.partition(":")[2] if ":" in img else "")
                            c["image"] = f"{base}:{tag}" if tag else base
    # replicas
    for r in k.get("replicas", []):
        hit = [o for o in objs if matches(o, None, r["name"]) and "replicas" in o.get("spec", {}) or
               (matches(o, "Deployment", r["name"]))]
        if not hit:
            raise RuntimeError(f"{kfile}: replicas: no workload {r['name']}")
        for o in hit:
            o["spec"]["replicas"] = r["count"]
    if top:
        finalize(objs)
    return objs


def finalize(objs: list[dict]) -> None:
    for o in objs:
        if o[INTERNAL]["generated"]:
            h = hashlib.sha256(json.dumps(o.get("data", {}), sort_keys=True).encode()).hexdigest()[:10]
            o["metadata"]["name"] += "-" + h
    final = {obj_id(o): o["metadata"]["name"] for o in objs}

    def ref(kind: str, name: str) -> str:
        return final.get((kind, name), name)

    for o in objs:
        for ps in pod_specs(o):
            for v in ps.get("volumes", []):
                if "configMap" in v:
                    v["configMap"]["name"] = ref("ConfigMap", v["configMap"]["name"])
                if "secret" in v:
                    v["secret"]["secretName"] = ref("Secret", v["secret"]["secretName"])
            for c in ps.get("containers", []) + ps.get("initContainers", []):
                for e in c.get("env", []):
                    r = e.get("valueFrom", {}).get("configMapKeyRef")
                    if r:
                        r["name"] = ref("ConfigMap", r["name"])
                for e in c.get("envFrom", []):
                    if "configMapRef" in e:
                        e["configMapRef"]["name"] = ref("ConfigMap", e["configMapRef"]["name"])
        if o["kind"] == "HorizontalPodAutoscaler":
            t = o["spec"]["scaleTargetRef"]
            t["name"] = ref(t["kind"], t["name"])
    for o in objs:
        o.pop(INTERNAL)


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


def check_rendered(name: str, objs: list[dict], tmp: Path) -> list[dict]:
    """Semantic checks on one rendered kustomization. Returns its pod templates' label sets."""
    by_kind: dict[str, list[dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    cms = {o["metadata"]["name"]: o for o in by_kind.get("ConfigMap", [])}
    pods = []
    hpa_targets = {(h["spec"]["scaleTargetRef"]["kind"], h["spec"]["scaleTargetRef"]["name"])
                   for h in by_kind.get("HorizontalPodAutoscaler", [])}
    for d in by_kind.get("Deployment", []):
        dn = f"{name}: Deployment/{d['metadata']['name']}"
        spec = d["spec"]
        tlabels = spec["template"].get("metadata", {}).get("labels", {})
        pods.append({"labels": tlabels, "deployment": d})
        if not labels_match(spec.get("selector", {}).get("matchLabels", {}), tlabels):
            problem(f"{dn}: selector {spec.get('selector')} does not match template labels {tlabels}")
        if ("Deployment", d["metadata"]["name"]) in hpa_targets:
            if "replicas" in spec:
                problem(f"{dn}: has spec.replicas although an HPA scales it (apply would reset the HPA's count)")
            else:
                ok(f"{dn}: replicas left to the HPA")
        ps = spec["template"]["spec"]
        vols = {v["name"]: v for v in ps.get("volumes", [])}
        for v in vols.values():
            if "configMap" in v and v["configMap"]["name"] not in cms:
                problem(f"{dn}: volume {v['name']} refers to ConfigMap {v['configMap']['name']} that is not rendered")
        tg = [c for c in ps["containers"] if c["name"] == "tidegate"]
        if not tg:
            problem(f"{dn}: no container named tidegate")
            continue
        c = tg[0]
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        argv = c.get("command", []) + c.get("args", [])
        cfg_path = argv[argv.index("--config") + 1] if "--config" in argv else None
        toml_text = None
        for vm in c.get("volumeMounts", []):
            v = vols.get(vm["name"])
            if v and "configMap" in v and cfg_path and cfg_path.startswith(vm["mountPath"].rstrip("/") + "/"):
                key = cfg_path[len(vm["mountPath"].rstrip("/")) + 1:]
                toml_text = cms.get(v["configMap"]["name"], {}).get("data", {}).get(key)
        if toml_text is None:
            problem(f"{dn}: --config {cfg_path} is not a key of a mounted ConfigMap")
            continue
        cfg = tomllib.loads(toml_text)
        # probes
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
        for l in cfg.get("listeners", []):
            lp = int(l["listen"].rpartition(":")[2])
            if lp not in ports.values():
                problem(f"{dn}: listener {l['name']} port {lp} is not a container port ({ports})")
        # drain timing
        pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_s = float(pre[1]) if len(pre) == 2 and pre[0] == "sleep" else None
        if pre_s is None:
            problem(f"{dn}: no preStop sleep (endpoints must be removed before the drain starts)")
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
            ok(f"{dn}: probes, preStop {pre_s:g}s, grace period {tgps}s > {pre_s:g} + drain.grace {grace:g}")
        res = c.get("resources", {})
        if "cpu" not in res.get("requests", {}) or "memory" not in res.get("requests", {}):
            problem(f"{dn}: tidegate container needs cpu and memory requests")
        check_toml_with_binary(toml_text, f"{dn}: rendered tidegate.toml", tmp)
    for s in by_kind.get("Service", []):
        sn = f"{name}: Service/{s['metadata']['name']}"
        sel = s["spec"].get("selector", {})
        hit = [p for p in pods if labels_match(sel, p["labels"])]
        if not hit:
            problem(f"{sn}: selector {sel} matches no rendered pod template")
        for p in s["spec"].get("ports", []):
            tp = p.get("targetPort", p["port"])
            for h in hit:
                cps = [cp for c in h["deployment"]["spec"]["template"]["spec"]["containers"] for cp in c.get("ports", [])]
                if not any(tp in (cp.get("name"), cp["containerPort"]) for cp in cps):
                    problem(f"{sn}: targetPort {tp} is not a container port")
                if tp == "admin" or tp == 9090:
                    problem(f"{sn}: exposes the unauthenticated admin port")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"].get("selector", {}).get("matchLabels", {})
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
    return pods


def check_k8s(exported: dict, documented: dict, tmp: Path) -> None:
    import kubernetes_validate.utils as kv

    section(f"Kubernetes manifests (kustomize subset in Python, schema {K8S_VERSION} strict)")
    all_pods = []
    kdirs = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
    if not kdirs:
        problem("no kustomization.yaml under deploy/k8s")
    monitoring = []
    for kd in kdirs:
        name = str(kd.relative_to(REPO))
        try:
            objs = kbuild(kd)
        except Exception as e:  # noqa: BLE001
            problem(f"{name}: render failed: {e}")
            continue
        ok(f"{name}: rendered {len(objs)} objects: " + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objs))
        for o in objs:
            if o["apiVersion"].startswith("monitoring.coreos.com/"):
                monitoring.append((name, o))
                continue
            try:
                kv.validate(o, K8S_VERSION, strict=True)
            except kv.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                problem(f"{name}: {o['kind']}/{o['metadata']['name']}: schema: {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                problem(f"{name}: {e.message}")
        if kd.parent.name == "overlays":
            all_pods += check_rendered(name, objs, tmp)
    check_monitoring(monitoring, all_pods, exported, documented)


def check_monitoring(objs, pods, exported, documented) -> None:
    section("Prometheus Operator objects (deploy/k8s/monitoring; required fields by hand)")
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
            "tidegate_config_reloads_total", "tidegate_auth_results_total"}
    if want - used:
        problem(f"PrometheusRule: no alert on {sorted(want - used)}")
    else:
        ok("alerts cover rejections, upstream failures, ping timeouts, drain, reloads, auth")


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
            used |= check_promql(expr, pn, exported, documented)
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            used |= check_promql(a["expr"], f"dashboard annotation {a.get('name')}", exported, documented)
    want = {"tidegate_connections_active", "tidegate_connections_total", "tidegate_handshake_rejections_total",
            "tidegate_messages_total", "tidegate_payload_bytes_total", "tidegate_closes_total",
            "tidegate_handshake_duration_seconds", "tidegate_upstream_connect_duration_seconds",
            "tidegate_upstream_connect_failures_total", "tidegate_ping_timeouts_total", "tidegate_auth_results_total",
            "tidegate_config_reloads_total", "process_resident_memory_bytes", "process_cpu_seconds_total",
            "process_open_fds"}
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
    try:
        entry_argv = json.loads(entry[-1]) if entry else None
    except json.JSONDecodeError:
        entry_argv = None
    if not isinstance(entry_argv, list):
        problem("Dockerfile: ENTRYPOINT must be in exec form (JSON array) so tidegate is PID 1 and gets SIGTERM")
        return
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

    # --- the container's start-up, emulated
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
    run_env = base_env | env | {"TIDEGATE_ADMIN__LISTEN": "127.0.0.1:0", "PATH": f"{root / 'bin'}:{os.environ.get('PATH', '')}"}
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
    print(f"\nvalidate.py: {len(PROBLEMS)} problem(s) in {time.monotonic() - T0:.1f}s")
    for p in PROBLEMS:
        print(f"  - {p}")
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
