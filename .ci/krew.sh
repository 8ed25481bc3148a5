#!/usr/bin/env bash
# Build (once) or find krew, the kubectl plugin manager, to test that `kubectl krew install`
# installs kubectl rkt from the repository's manifest (krew/rkt.yaml) and the archive that
# `make krew` builds (tests/chart/test_krew_install.py).
#
# Order of preference (like .ci/testbin.sh):
#   1. KREW_BIN naming a krew binary (used as is when it reports the pinned version);
#   2. the cache ${KREW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkt-operator/krew}/<key>;
#   3. a build of sigs.k8s.io/krew from the Go module proxy into that cache (99 s measured
#      on 2 cores with empty Go module and build caches; seconds when they are warm).
# The last line printed is always KREW_BIN=<path>; that file is named kubectl-krew, so that the
# folder holding it, put on PATH, gives `kubectl krew`.
set -euo pipefail

KREW_VERSION=0.4.3
RECIPE_REV=1

log() { printf '[krew %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_version() { # binary -> 0 when it reports the pinned version
  # In a throw-away KREW_ROOT, and without krew's check for a newer release (no network).
  local out tmp rc=0
  tmp=$(mktemp -d)
  out=$(KREW_ROOT=$tmp KREW_NO_UPGRADE_CHECK=1 "$1" version 2>/dev/null) || rc=1
  rm -rf "$tmp"
  [ "$rc" = 0 ] && [[ "$out" =~ GitTag[[:space:]]+v$KREW_VERSION($'\n'|$) ]]
}

# 1. A krew binary given by the caller.
if [ -n "${KREW_BIN:-}" ]; then
  [ -x "$KREW_BIN" ] || die "KREW_BIN=$KREW_BIN is not an executable"
  check_version "$KREW_BIN" || die "KREW_BIN=$KREW_BIN is not krew v$KREW_VERSION"
  log "using KREW_BIN=$KREW_BIN"
  echo "KREW_BIN=$KREW_BIN"; exit 0
fi

command -v go >/dev/null || die "go is not installed (it builds krew)"
export CGO_ENABLED=0 GOTOOLCHAIN=local
GOVER=$(go env GOVERSION); GOOS=$(go env GOOS); GOARCH=$(go env GOARCH)
ROOT="${KREW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkt-operator/krew}"
KEY="krew-v${KREW_VERSION}_${GOVER}_${GOOS}-${GOARCH}_r${RECIPE_REV}"
OUT="$ROOT/$KEY"

mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9   # one builder at a time; a second caller waits and then finds the cache

if [ -f "$OUT/.complete" ] && check_version "$OUT/kubectl-krew"; then
  log "cached: $OUT"
  echo "KREW_BIN=$OUT/kubectl-krew"; exit 0
fi

log "build of $KEY into $ROOT"
STAGE=$(mktemp -d "$ROOT/.stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
t0=$(date +%s)
# krew's own go.mod and go.sum pin its dependencies; `go install module@version` uses them.
GOBIN="$STAGE" go install -trimpath -ldflags "-s -w \
  -X sigs.k8s.io/krew/internal/version.gitTag=v$KREW_VERSION" \
  "sigs.k8s.io/krew/cmd/krew@v$KREW_VERSION"
mv "$STAGE/krew" "$STAGE/kubectl-krew"
check_version "$STAGE/kubectl-krew" || die "the built krew does not report v$KREW_VERSION"
touch "$STAGE/.complete"
rm -rf "$OUT"
mv -T "$STAGE" "$OUT"
trap - EXIT
log "done in $(( $(date +%s) - t0 ))s: $OUT"
echo "KREW_BIN=$OUT/kubectl-krew"
