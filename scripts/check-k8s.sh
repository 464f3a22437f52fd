#!/usr/bin/env bash
# Validates the Kubernetes manifests of deploy/k8s/ with kubeconform (installed as a Go module)
# against Kubernetes 1.37's JSON schemas, strictly (an unknown field is an error), offline: the
# schemas come from PyPI's kubernetes-validate wheel (kubeconform would fetch them from GitHub),
# rewritten so that each refers to the definitions file beside it. Then checks that the
# validator does catch a mistake (a Deployment with `replicas: "three"` must fail).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="$HOME/.cache/pipeline-k8s"
k8s=1.37.0
kubeconform="$cache/bin/kubeconform"
[ -x "$kubeconform" ] || GOBIN="$cache/bin" go install github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0
[ -d "$cache/kv/kubernetes_validate" ] || python3 -m pip install --quiet --disable-pip-version-check \
  --no-deps --target "$cache/kv" kubernetes-validate==1.37.0
schemas="$cache/schemas"
if [ ! -f "$schemas/v$k8s-standalone-strict/deployment-apps-v1.json" ]; then
  python3 - "$cache/kv/kubernetes_validate/kubernetes-json-schema" "$schemas" "$k8s" <<'PY'
import json, pathlib, sys
base, out, version = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
for suffix in ("-strict", ""):
    dst = out / f"v{version}-standalone{suffix}"
    dst.mkdir(parents=True, exist_ok=True)
    for f in (base / f"v{version}-local{suffix}").glob("*.json"):
        text = f.read_text()
        if f.name != "_definitions.json":
            # Each schema names https://kubernetes.io/api/... as its id and refers to the
            # definitions from there: refer to the file beside it instead.
            schema = json.loads(text.replace('"/api/_definitions.json#', '"_definitions.json#'))
            schema.pop("$id", None)
            text = json.dumps(schema)
        (dst / f.name).write_text(text)
PY
fi
validate() {
  "$kubeconform" -strict -summary -kubernetes-version "$k8s" \
    -schema-location "$schemas/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json" "$@"
}
manifests=$(ls deploy/k8s/*.yaml | grep -v kustomization.yaml)
echo "--- kubeconform (Kubernetes $k8s, strict): deploy/k8s"
validate $manifests
broken="$(mktemp -d)"
trap 'rm -rf "$broken"' EXIT
sed 's/replicas: 3/replicas: "three"/' deploy/k8s/deployment.yaml > "$broken/deployment.yaml"
if validate "$broken/deployment.yaml" > "$broken/out" 2>&1; then
  echo "kubeconform accepted a Deployment with replicas: \"three\"" >&2
  exit 1
fi
echo "kubeconform refuses a broken Deployment: $(grep -o 'replicas.*' "$broken/out" | head -1)"
