// Validates custom resources against the schemas of their operators' CRDs,
// as packaged by @kubernetes-models (generated from the operators' Go API
// types: field types, enums and required fields; unknown fields are
// checked by validate.py, which knows the keys these files use).
//
//   node tests/deploy/crds.mjs < objects.json    (a JSON array of objects)
//
// Prints one line per object, "ok <kind>/<name>" or "FAIL <kind>/<name>:
// <path> <message>", and exits 1 if any failed or has a kind it does not
// know.
import { readFileSync } from "node:fs";
import { PodMonitor, PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { Certificate, Issuer, ClusterIssuer } from "@kubernetes-models/cert-manager/cert-manager.io/v1";

const models = {
  "monitoring.coreos.com/v1": { PodMonitor, PrometheusRule, ServiceMonitor },
  "cert-manager.io/v1": { Certificate, Issuer, ClusterIssuer },
};

let failed = 0;
for (const obj of JSON.parse(readFileSync(0, "utf8"))) {
  const id = `${obj.kind}/${obj.metadata?.name}`;
  const Model = models[obj.apiVersion]?.[obj.kind];
  if (!Model) {
    console.log(`FAIL ${id}: no schema for ${obj.apiVersion} ${obj.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`ok ${id}`);
  } catch (e) {
    const details = (e.errors ?? []).map((x) => `${x.instancePath || "/"} ${x.message}`).join("; ");
    console.log(`FAIL ${id}: ${details || e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
