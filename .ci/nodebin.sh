#!/usr/bin/env bash
# Build (once) or find the node binaries of the real-node tier: kubelet,
# kube-controller-manager and kube-scheduler, at the same Kubernetes version as the control
# plane (.ci/testbin.env) and with the same wrapper-module recipe as .ci/testbin.sh.
#
# A separate script with its own cache key, so that the control-plane-only path (testbin.sh)
# stays as quick as before. Go's module and build caches are shared with testbin.sh, so after
# a control-plane build this one downloads nothing new and recompiles only what the three
# commands add (measured on 2 cores with warm caches: see README, "The real-node tier").
#
# Order of preference:
#   1. NODEBIN_ASSETS naming a folder with the three binaries (used as is);
#   2. the cache ${TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkt-operator/nodebin}/<key>;
#   3. a build from Go modules into that cache.
# The last line printed is always NODEBIN_ASSETS=<folder>.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=testbin.env
. "$here/testbin.env"

log() { printf '[nodebin %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

BINARIES=(kubelet kube-controller-manager kube-scheduler)

check_versions() { # dir -> 0 when every binary answers with the pinned version
  local d=$1 b out
  for b in "${BINARIES[@]}"; do
    out=$("$d/$b" --version 2>/dev/null) || return 1
    [ "$out" = "Kubernetes v$K8S_VERSION" ] || return 1
  done
}

if [ -n "${NODEBIN_ASSETS:-}" ]; then
  check_versions "$NODEBIN_ASSETS" \
    || die "NODEBIN_ASSETS=$NODEBIN_ASSETS lacks ${BINARIES[*]} at v$K8S_VERSION"
  log "using NODEBIN_ASSETS=$NODEBIN_ASSETS"
  echo "NODEBIN_ASSETS=$NODEBIN_ASSETS"; exit 0
fi

command -v go >/dev/null || die "go is not installed (Go >= 1.26 is needed to build the node binaries)"
export CGO_ENABLED=0 GOTOOLCHAIN=local
GOVER=$(go env GOVERSION); GOOS=$(go env GOOS); GOARCH=$(go env GOARCH)
ROOT="${NODEBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkt-operator/nodebin}"
KEY="k8s-v${K8S_VERSION}_${GOVER}_${GOOS}-${GOARCH}_r${RECIPE_REV}"
OUT="$ROOT/$KEY"

mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9

if [ -f "$OUT/.complete" ] && check_versions "$OUT"; then
  log "cached: $OUT"
  echo "NODEBIN_ASSETS=$OUT"; exit 0
fi

log "build of $KEY into $ROOT"
STAGE=$(mktemp -d "$ROOT/.stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/src"
t0=$(date +%s)
step() { log "$1 ($(( $(date +%s) - t0 ))s elapsed)"; }

# shellcheck source=k8s-wrapper.sh
. "$here/k8s-wrapper.sh"
tools=()
for b in "${BINARIES[@]}"; do tools+=("k8s.io/kubernetes/cmd/$b"); done
k8s_wrapper_build "$STAGE/src" "$STAGE" "${tools[@]}"

step "checking versions"
check_versions "$STAGE" || die "built binaries do not report v$K8S_VERSION"
rm -rf "$STAGE/src"
touch "$STAGE/.complete"
rm -rf "$OUT"
mv -T "$STAGE" "$OUT"
trap - EXIT
step "done: $(du -sh "$OUT" | cut -f1) in $OUT"
echo "NODEBIN_ASSETS=$OUT"
