#!/usr/bin/env bash
# Validates the Kubernetes manifests in deploy/:
#   1. every manifest against the Kubernetes OpenAPI schemas, strictly (unknown fields are
#      errors), with kubernetes-validate (PyPI; its schemas ship in the package, so this runs
#      offline), for each Kubernetes version in KUBE_VERSIONS;
#   2. deploy/check_manifests.py: what a schema cannot see (selectors match the pod labels,
#      Service and probe ports exist, the config file parses as TOML and its keys are relay
#      flags, mounts and names agree).
# Needs: python3 >= 3.11 (tomllib) and
#   python3 -m pip install kubernetes-validate==1.37.0
set -euo pipefail
cd "$(dirname "$0")"

KUBE_VERSIONS=${KUBE_VERSIONS:-"1.30.0 1.37.0"}
manifests=(serviceaccount.yaml configmap.yaml deployment.yaml service.yaml poddisruptionbudget.yaml)

if ! command -v kubernetes-validate >/dev/null; then
  echo "deploy/validate.sh: kubernetes-validate not found; install it with" >&2
  echo "  python3 -m pip install kubernetes-validate==1.37.0" >&2
  exit 1
fi

for version in $KUBE_VERSIONS; do
  echo "kubernetes-validate --strict -k $version: ${manifests[*]}"
  kubernetes-validate --strict --quiet -k "$version" "${manifests[@]}"
done

python3 check_manifests.py "${manifests[@]}"
