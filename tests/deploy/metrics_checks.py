"""Metric names, PromQL and the Prometheus Operator objects: alerts
(promtool check rules + the gateway's metric catalogue), the PodMonitor, and
the Grafana dashboard."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
import yaml

from common import DEPLOY, REPO, http_get, labels_match, ok, problem, section, start_gateway, stop, tool


def documented_families() -> dict[str, dict]:
    fams = {}
    for line in (REPO / "docs" / "metrics.md").read_text().splitlines():
        m = re.match(r"^\| `((?:tidegate|process)_[a-z_]+)` \| (\w+) \| ([^|]*) \|", line)
        if m:
            labels = set(re.findall(r"`([a-z_]+)`", m.group(3).split("(")[0]))
            fams[m.group(1)] = {"type": m.group(2), "labels": labels}
    return fams


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
