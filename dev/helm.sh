#!/usr/bin/env bash
# Helm and kubeconform for the chart checks, at pinned versions, cached so that a
# second run is instant.
#
#   dev/helm.sh          make sure the tools exist; print `helm=PATH`,
#                        `kubeconform=PATH` and `kubernetes-schemas=DIR`, one a line
#   dev/helm.sh lint     also lint and render helm/toloka-bridge (see lint_chart)
#
# Neither tool is packaged by Debian, and nothing but the package registries is
# reachable here, so both are built from their Go modules with `go install`
# (about two minutes the first time). Kubeconform needs the Kubernetes JSON schemas,
# which it normally downloads; they come from the PyPI package kubernetes-validate,
# which ships them for every recent Kubernetes minor release.
#
# Helm 3 rather than 4: 3.x is what most CD tooling and operators still run and it is
# still maintained; the chart (apiVersion v2) is one that Helm 4 installs too. Both
# pinned modules declare Go 1.26; an older `go` fetches that toolchain from the Go
# module proxy by itself (GOTOOLCHAIN=auto).
#
# Cache: ${XDG_CACHE_HOME:-$HOME/.cache}/toloka-bridge/helm-tools/, one folder per
# pinned version, so changing a pin below builds afresh and never mixes versions.
set -euo pipefail

HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.8.0
SCHEMAS_PACKAGE_VERSION=1.37.0
# The Kubernetes minor versions the rendered manifests are validated against: the
# oldest the chart claims to support (Chart.yaml kubeVersion) and the newest schemas.
SCHEMA_KUBERNETES_VERSIONS=(1.25.0 1.36.0)
# The Kubernetes version of helm's client-go, which the release build bakes in as
# the default `.Capabilities.KubeVersion`; a plain `go install` would say 1.20.
HELM_KUBERNETES_MINOR=36

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CHART="$ROOT/helm/toloka-bridge"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/toloka-bridge/helm-tools"
HELM="$CACHE/helm-$HELM_VERSION/helm"
KUBECONFORM="$CACHE/kubeconform-$KUBECONFORM_VERSION/kubeconform"
SCHEMAS="$CACHE/kubernetes-schemas-$SCHEMAS_PACKAGE_VERSION"

say() {
    echo "helm.sh: $*" >&2
}

fail() {
    say "$*"
    exit 1
}

require_go() {
    command -v go >/dev/null || fail "Go is needed to build helm and kubeconform; \
install it (https://go.dev/doc/install, or the machine's Go toolchain) and retry"
}

# go_install TARGET_FILE PACKAGE@VERSION [LDFLAGS]: build into a temporary folder
# beside the target, then move the binary into place, so an interrupted build
# never leaves a half-written binary that a later run would trust.
go_install() {
    local target=$1 package=$2 ldflags=${3:-}
    local staging
    staging=$(mktemp -d "$(dirname "$target").staging.XXXXXX")
    say "building $package (first run only)"
    if ! GOBIN="$staging" CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
        go install -trimpath -ldflags "-s -w $ldflags" "$package"; then
        rm -rf "$staging"
        fail "go install $package failed"
    fi
    mv "$staging/$(basename "$target")" "$target"
    rm -rf "$staging"
}

install_helm() {
    [[ -x $HELM ]] && return
    require_go
    mkdir -p "$(dirname "$HELM")"
    local module=helm.sh/helm/v3
    local ldflags="-X $module/internal/version.version=$HELM_VERSION"
    ldflags+=" -X $module/internal/version.metadata="
    local package
    for package in pkg/chartutil pkg/lint/rules; do
        ldflags+=" -X $module/$package.k8sVersionMajor=1"
        ldflags+=" -X $module/$package.k8sVersionMinor=$HELM_KUBERNETES_MINOR"
    done
    go_install "$HELM" "$module/cmd/helm@$HELM_VERSION" "$ldflags"
}

install_kubeconform() {
    [[ -x $KUBECONFORM ]] && return
    require_go
    mkdir -p "$(dirname "$KUBECONFORM")"
    go_install "$KUBECONFORM" \
        "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
}

python_with_pip() {
    local candidate
    for candidate in "$ROOT/.venv/bin/python" python3; do
        if "$candidate" -m pip --version >/dev/null 2>&1; then
            echo "$candidate"
            return
        fi
    done
    fail "no Python with pip found to fetch kubernetes-validate (run make venv)"
}

# The wheel keeps the schemas in kubernetes_validate/kubernetes-json-schema/
# v<K8S>-local-strict/<kind>-<group>-<version>.json, the layout kubeconform reads
# from disk, with $refs into a _definitions.json beside them (made relative here).
install_schemas() {
    local version missing=0
    for version in "${SCHEMA_KUBERNETES_VERSIONS[@]}"; do
        [[ -f $SCHEMAS/v$version-local-strict/_definitions.json ]] || missing=1
    done
    ((missing)) || return 0

    local python download
    python=$(python_with_pip)
    download=$(mktemp -d)
    say "fetching kubernetes-validate==$SCHEMAS_PACKAGE_VERSION (schemas only)"
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$download" "kubernetes-validate==$SCHEMAS_PACKAGE_VERSION" ||
        fail "pip could not download kubernetes-validate==$SCHEMAS_PACKAGE_VERSION"

    local staging
    mkdir -p "$CACHE"
    staging=$(mktemp -d "$SCHEMAS.staging.XXXXXX")
    "$python" - "$download"/kubernetes_validate-*.whl "$staging" \
        "${SCHEMA_KUBERNETES_VERSIONS[@]}" <<'PYTHON'
import json
import sys
import zipfile
from pathlib import Path

wheel, target, versions = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
prefix = "kubernetes_validate/kubernetes-json-schema/"
wanted = tuple(f"{prefix}v{version}-local-strict/" for version in versions)
# Each schema names itself https://kubernetes.io/api/... ($id) and points at
# /api/_definitions.json, which a file loader would fetch from that host. Without
# the $id and with a relative reference, the definitions come from the file beside.
absolute = '"$ref": "/api/_definitions.json#'
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith(wanted) and name.endswith(".json"):
            schema = json.loads(archive.read(name))
            schema.pop("$id", None)
            text = json.dumps(schema).replace(absolute, '"$ref": "_definitions.json#')
            path = target / name.removeprefix(prefix)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
PYTHON
    rm -rf "$download" "$SCHEMAS"
    mv "$staging" "$SCHEMAS"
}

install_all() {
    mkdir -p "$CACHE"
    # One installer at a time: pytest and `make helm-lint` may start together.
    exec 9>"$CACHE/.lock"
    flock 9
    install_helm
    install_kubeconform
    install_schemas
    flock -u 9
}

# Validate manifests on stdin against the Kubernetes schemas of every pinned
# version. The two Prometheus-operator kinds have no schema here (they are CRDs);
# tests/test_helm_chart.py checks their structure instead.
kubeconform_check() {
    local manifests version
    manifests=$(cat)
    for version in "${SCHEMA_KUBERNETES_VERSIONS[@]}"; do
        "$KUBECONFORM" -strict -summary \
            -kubernetes-version "$version" \
            -schema-location "$SCHEMAS/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
            -skip ServiceMonitor,PrometheusRule \
            - <<<"$manifests"
    done
}

render_and_validate() {
    local label=$1
    shift
    say "helm lint --strict ($label)"
    "$HELM" lint --strict "$CHART" "$@" >&2
    say "helm template + kubeconform ($label)"
    "$HELM" template toloka-bridge "$CHART" --namespace toloka "$@" |
        kubeconform_check >&2
}

expect_rejected() {
    local values=$1 output
    if output=$("$HELM" template toloka-bridge "$CHART" -f "$values" 2>&1); then
        fail "$(basename "$values") was accepted, but the schema must reject it"
    fi
    grep -q "values don't meet the specifications of the schema" <<<"$output" ||
        fail "$(basename "$values") failed for another reason than the schema: $output"
    say "rejected as expected: $(basename "$values")"
}

lint_chart() {
    render_and_validate "default values"
    local values
    for values in "$CHART"/ci/*-values.yaml; do
        render_and_validate "$(basename "$values")" -f "$values"
    done
    for values in "$CHART"/ci/invalid/*-values.yaml; do
        expect_rejected "$values"
    done
    say "chart OK"
}

main() {
    install_all
    echo "helm=$HELM"
    echo "kubeconform=$KUBECONFORM"
    echo "kubernetes-schemas=$SCHEMAS"

    case "${1:-}" in
    "") ;;
    lint) lint_chart ;;
    *) fail "unknown command ${1}; usage: dev/helm.sh [lint]" ;;
    esac
}

main "$@"
