#!/usr/bin/env bash
# Build (once) or find a real rkt: stage0 `rkt` plus the `host` and `fly` stage1 images.
#
# Order of preference (like .ci/testbin.sh):
#   1. RKT_PATH naming an installed rkt (its stage1 images are the ones it was built with);
#   2. the cache ${RKT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkt-operator/rkt}/<key>;
#   3. a build from a source tarball: RKT_SRC, default ../shared/vendor/rkt-v<ver>-src.tar.gz
#      beside the checkout (about 3 minutes on 2 cores; offline: all Go code is vendored).
# As root on Debian it installs the packages rkt needs to build (autoconf automake make gcc
# libc6-dev libacl1-dev) and to run the host flavor (systemd systemd-container iptables).
# The last line printed is always RKT_DIR=<folder>, a folder whose `rkt` is the binary to use.
#
# No rkt is available when the tarball is missing and RKT_PATH is unset: the script then
# exits 3 after one line saying so (callers outside CI skip the real-rkt tiers on that).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=rkt.env
. "$here/rkt.env"

log() { printf '[rkt %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Debian packages: what the build needs, what the host flavor needs to run pods.
BUILD_PKGS=(autoconf automake make gcc libc6-dev libacl1-dev git)
RUN_PKGS=(systemd systemd-container iptables)

install_pkgs() { # pkg... : install the missing ones (root + apt), else name them and fail
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "missing packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})"
  fi
}

check_rkt() { # binary -> 0 when it answers with the pinned version
  local out
  out=$("$1" version 2>/dev/null) || return 1
  [[ "$out" == "rkt Version: $RKT_VERSION"* ]]
}

# 1. An installed rkt named by the caller.
if [ -n "${RKT_PATH:-}" ]; then
  [ -x "$RKT_PATH" ] || die "RKT_PATH=$RKT_PATH is not an executable"
  "$RKT_PATH" version >/dev/null 2>&1 || die "RKT_PATH=$RKT_PATH does not run"
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && install_pkgs "${RUN_PKGS[@]}"
  overlay="${TMPDIR:-/tmp}/rkt-operator-rkt-$(id -u)"
  mkdir -p "$overlay"
  ln -sfn "$(readlink -f "$RKT_PATH")" "$overlay/rkt"
  log "using RKT_PATH=$RKT_PATH ($("$RKT_PATH" version 2>/dev/null | head -n1))"
  echo "RKT_DIR=$overlay"; exit 0
fi

command -v go >/dev/null || die "go is not installed (it builds rkt's stage0)"
GOVER=$(go env GOVERSION); GOARCH=$(go env GOARCH)
ROOT="${RKT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkt-operator/rkt}"
KEY="rkt-v${RKT_VERSION}_${RKT_SRC_SHA256:0:12}_${GOVER}_linux-${GOARCH}_r${RKT_RECIPE_REV}"
OUT="$ROOT/$KEY"

mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9   # one builder at a time; a second caller waits and then finds the cache

if [ -f "$OUT/.complete" ] && check_rkt "$OUT/rkt" \
   && [ -f "$OUT/stage1-host.aci" ] && [ -f "$OUT/stage1-fly.aci" ]; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && install_pkgs "${RUN_PKGS[@]}"
  log "cached: $OUT"
  echo "RKT_DIR=$OUT"; exit 0
fi

SRC="${RKT_SRC:-$repo/../shared/vendor/rkt-v${RKT_VERSION}-src.tar.gz}"
if [ ! -f "$SRC" ]; then
  log "no rkt: neither RKT_PATH nor the source tarball $SRC (set RKT_SRC or RKT_PATH)"
  exit 3
fi
got=$(sha256sum "$SRC" | cut -d' ' -f1)
[ "$got" = "$RKT_SRC_SHA256" ] || die "$SRC has sha256 $got, expected $RKT_SRC_SHA256 (.ci/rkt.env)"

install_pkgs "${BUILD_PKGS[@]}" "${RUN_PKGS[@]}"

log "building rkt v$RKT_VERSION (stage0 + stage1 host, fly) from $SRC into $OUT (about 3 minutes)"
STAGE=$(mktemp -d "$ROOT/.stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
t0=$(date +%s)
step() { log "$1 ($(( $(date +%s) - t0 ))s elapsed)"; }

tar -xzf "$SRC" -C "$STAGE"
src="$STAGE/rkt-$RKT_VERSION"
[ -d "$src" ] || die "the tarball has no rkt-$RKT_VERSION/ folder"

# GNU make >= 4.3 no longer leaves one space in a variable made by `X :=` then `X +=`;
# makelib/misc.mk builds its _MISC_*_SPACE_ helpers that way. Give them a literal space.
mk="$src/makelib/misc.mk"
sed -i -E \
  -e 's/^(\s*)\$\(eval (_MISC_[A-Z]+_SPACE_) :=\s*\) \\$/\1$(eval \2 := $$(_RKTOP_SPACE_)) \\/' \
  -e '/^\s*\$\(eval _MISC_[A-Z]+_SPACE_ \+=\s*\) \\$/d' "$mk"
sed -i '1i _RKTOP_EMPTY_ :=\n_RKTOP_SPACE_ := $(_RKTOP_EMPTY_) $(_RKTOP_EMPTY_)' "$mk"
[ "$(grep -c '_RKTOP_SPACE_))' "$mk")" = 3 ] || die "the misc.mk fix did not apply (rkt's makelib changed?)"

export GO111MODULE=off GOFLAGS= GOTOOLCHAIN=local
( cd "$src"
  step "autogen + configure"
  ./autogen.sh >"$STAGE/autogen.log" 2>&1 || { tail -20 "$STAGE/autogen.log" >&2; exit 1; }
  ./configure --with-stage1-flavors=host,fly --with-stage1-default-flavor=host \
    --with-stage1-default-images-directory="$OUT" \
    --disable-tpm --disable-sdjournal --enable-functional-tests=no \
    >"$STAGE/configure.log" 2>&1 || { tail -20 "$STAGE/configure.log" >&2; exit 1; }
  step "make (stage0 + stage1-host.aci + stage1-fly.aci)"
  make -j"$(nproc)" >"$STAGE/make.log" 2>&1 || { tail -40 "$STAGE/make.log" >&2; exit 1; } )

bin="$src/build-rkt-$RKT_VERSION/target/bin"
for f in rkt stage1-host.aci stage1-fly.aci; do
  [ -f "$bin/$f" ] || die "the build produced no $f"
  cp "$bin/$f" "$STAGE/$f"
done
check_rkt "$STAGE/rkt" || die "the built rkt does not report version $RKT_VERSION"
rm -rf "$src" "$STAGE"/*.log
touch "$STAGE/.complete"
rm -rf "$OUT"
mv -T "$STAGE" "$OUT"
trap - EXIT
step "done: $(du -sh "$OUT" | cut -f1) in $OUT"
echo "RKT_DIR=$OUT"
