#!/usr/bin/env bash
# Build (once) or find the control-plane binaries: etcd, kube-apiserver, kubectl, helm.
#
# Order of preference, following the envtest convention:
#   1. KUBEBUILDER_ASSETS naming a folder with etcd, kube-apiserver and kubectl
#      (helm from HELM_BIN, $KUBEBUILDER_ASSETS/helm, or a helm v3 on PATH);
#   2. the cache ${TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkt-operator/testbin}/<key>;
#   3. a cold build from Go modules into that cache (about half an hour on 2 cores).
# The last line printed is always KUBEBUILDER_ASSETS=<folder>; that folder also holds helm.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=testbin.env
. "$here/testbin.env"

log() { printf '[testbin %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_versions() { # dir [helm] -> 0 when every binary answers with the pinned version
  # Outputs are captured first: with pipefail, `cmd | grep -q` fails at random when grep exits
  # early and cmd dies of SIGPIPE, which would force a needless rebuild.
  local d=$1 helm=${2:-$1/helm} out
  out=$("$d/kube-apiserver" --version 2>/dev/null) || return 1
  [ "$out" = "Kubernetes v$K8S_VERSION" ] || return 1
  out=$("$d/etcd" --version 2>/dev/null) || return 1
  [ "${out%%$'\n'*}" = "etcd Version: $ETCD_VERSION" ] || return 1
  out=$("$d/kubectl" version --client 2>/dev/null) || return 1
  [[ "$out" == *"Client Version: v$K8S_VERSION"* ]] || return 1
  out=$("$helm" version --short 2>/dev/null) || return 1
  [[ "$out" == "v$HELM_VERSION"* ]] || return 1
}

# 1. KUBEBUILDER_ASSETS given by the caller: use it, build nothing.
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  for b in etcd kube-apiserver kubectl; do
    [ -x "$KUBEBUILDER_ASSETS/$b" ] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable '$b'"
  done
  helm=${HELM_BIN:-}
  [ -z "$helm" ] && [ -x "$KUBEBUILDER_ASSETS/helm" ] && helm="$KUBEBUILDER_ASSETS/helm"
  [ -z "$helm" ] && helm=$(command -v helm || true)
  [ -n "$helm" ] || die "no helm: set HELM_BIN or put helm in KUBEBUILDER_ASSETS or on PATH"
  hv=$("$helm" version --short 2>/dev/null) || die "$helm does not run"
  [[ "$hv" == "v${HELM_VERSION%%.*}."* ]] || die "$helm is $hv, not helm v${HELM_VERSION%%.*}"
  if [ ! -x "$KUBEBUILDER_ASSETS/helm" ]; then
    # Keep the contract "the folder also holds helm" without touching a folder we do not own.
    overlay="${TMPDIR:-/tmp}/rkt-operator-assets-$(id -u)"
    mkdir -p "$overlay"
    for b in etcd kube-apiserver kubectl; do ln -sfn "$KUBEBUILDER_ASSETS/$b" "$overlay/$b"; done
    ln -sfn "$helm" "$overlay/helm"
    log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS with helm $helm (linked in $overlay)"
    echo "KUBEBUILDER_ASSETS=$overlay"; exit 0
  fi
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"; exit 0
fi

command -v go >/dev/null || die "go is not installed (Go >= 1.26 is needed to build the control plane)"
export CGO_ENABLED=0 GOTOOLCHAIN=local
GOVER=$(go env GOVERSION); GOOS=$(go env GOOS); GOARCH=$(go env GOARCH)
ROOT="${TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkt-operator/testbin}"
KEY="k8s-v${K8S_VERSION}_etcd-v${ETCD_VERSION}_helm-v${HELM_VERSION}_${GOVER}_${GOOS}-${GOARCH}_r${RECIPE_REV}"
OUT="$ROOT/$KEY"

mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9   # one builder at a time; a second caller waits and then finds the cache

if [ -f "$OUT/.complete" ] && check_versions "$OUT"; then
  log "cached: $OUT"
  echo "KUBEBUILDER_ASSETS=$OUT"; exit 0
fi

log "cold build of $KEY into $ROOT (progress below; kube-apiserver is the long step)"
STAGE=$(mktemp -d "$ROOT/.stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/src/etcd"
t0=$(date +%s)
step() { log "$1 ($(( $(date +%s) - t0 ))s elapsed)"; }

MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)

# --- helm (first: quickest, and it proves the module proxy works) ---
step "helm v$HELM_VERSION: go install"
GOBIN="$STAGE" go install -trimpath -ldflags "-s -w \
  -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION \
  -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$MINOR \
  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$MINOR" \
  "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"

# --- etcd, in its own wrapper module so that its versions do not move the apiserver's ---
step "etcd v$ETCD_VERSION: module graph"
( cd "$STAGE/src/etcd"
  go mod init local.invalid/etcd-testbin >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@v$ETCD_VERSION" -tool=go.etcd.io/etcd/server/v3
  go mod tidy
  step "etcd v$ETCD_VERSION: build"
  go build -trimpath -ldflags "-s -w" -o "$STAGE/etcd" go.etcd.io/etcd/server/v3 )

# --- kube-apiserver + kubectl from k8s.io/kubernetes through a wrapper module ---
# shellcheck source=k8s-wrapper.sh
. "$here/k8s-wrapper.sh"
k8s_wrapper_build "$STAGE/src/k8s" "$STAGE" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl

step "checking versions"
check_versions "$STAGE" || die "built binaries do not report the pinned versions"
rm -rf "$STAGE/src"
touch "$STAGE/.complete"
rm -rf "$OUT"
mv -T "$STAGE" "$OUT"
trap - EXIT
step "done: $(du -sh "$OUT" | cut -f1) in $OUT"
echo "KUBEBUILDER_ASSETS=$OUT"
