"""Kubernetes manifests: rendered with kubectl kustomize, validated
against the Kubernetes and operator schemas, then the rules a schema
cannot express (selectors, probes, drain timing, NetworkPolicy, spreading)."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
import yaml

from common import BIN, DEPLOY, K8S, K8S_VERSIONS, REPO, duration_s, labels_match, make_cert, ok, problem, section, tool
from metrics_checks import check_monitoring
from image_checks import dockerfile_instructions


def kustomize(d: Path) -> list[dict]:
    """Render a kustomization with the real kustomize (kubectl kustomize)."""
    r = subprocess.run([tool("kubectl"), "kustomize", str(d)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-800:])
    return [o for o in yaml.safe_load_all(r.stdout) if o]


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
