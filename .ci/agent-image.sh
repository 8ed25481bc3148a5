#!/usr/bin/env bash
# Build the agent's container image without Docker, from the same packages list and install
# step as helm/image/Dockerfile (helm/image/packages.txt, helm/image/install.sh):
#   1. mmdebstrap --variant=minbase bookworm + packages.txt -> a base root filesystem tarball,
#      cached outside the repo, keyed by the package list (and mmdebstrap's options);
#   2. the agent's wheel and its dependencies' wheels, built by pip on this machine;
#   3. install.sh agent WHEELDIR run in a chroot of the base (offline);
#   4. umoci: an OCI layout with that filesystem as one layer and the Dockerfile's config;
#   5. skopeo: a docker-archive that `ctr -n k8s.io images import` loads into containerd.
# Needs root (chroot, device nodes) and Debian's mmdebstrap, umoci, skopeo (installed when
# missing, as root with apt-get).
#
# Usage: agent-image.sh [TAG]   (default: the package version)
# Prints AGENT_IMAGE=<reference> and, last, AGENT_IMAGE_ARCHIVE=<docker-archive path>. The
# archive is cached under a key of every input, so an unchanged tree is not built again.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
img="$repo/helm/image"

log() { printf '[agent-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (chroot and device nodes of the image's root filesystem)"
PKGS=(mmdebstrap umoci skopeo)
missing=()
for p in "${PKGS[@]}"; do command -v "$p" >/dev/null || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing: ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

SUITE=bookworm
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml" | head -n1)
TAG=${1:-$VERSION}
REF="localhost/rkt-operator:$TAG"
ROOT="${AGENT_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkt-operator/image}"
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9
t0=$(date +%s)
step() { log "$1 ($(( $(date +%s) - t0 ))s elapsed)"; }

# --- 1. base root filesystem (cached) ---
mapfile -t packages < <(grep -v '^#' "$img/packages.txt" | sed '/^\s*$/d')
# Documentation, manuals and translations are not needed by a node agent.
DPKG_OPTS=(--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
           --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
           --dpkgopt='path-exclude=/usr/share/info/*')
base_key=$(printf '%s\n' "$SUITE" "${packages[@]}" "${DPKG_OPTS[@]}" "$(mmdebstrap --version)" | sha256sum | cut -c1-16)
base="$ROOT/base-$SUITE-$base_key.tar"
if [ ! -f "$base" ]; then
  step "mmdebstrap --variant=minbase $SUITE + ${packages[*]}"
  mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
    "${DPKG_OPTS[@]}" --aptopt='Acquire::Languages "none"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    --format=tar "$SUITE" "$base.tmp"
  mv "$base.tmp" "$base"
else
  step "cached base $base"
fi

# The image of this source tree may exist already: its key covers every input the build
# reads from the repository (the agent's package, the project metadata the wheel is built
# from, the install step, its package list, this script) and the base.
src_key=$( { printf '%s\n' "$base_key" "$TAG"
             cd "$repo" && find operator/rkt_operator pyproject.toml README.md helm/image .ci/agent-image.sh \
               -type f ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; } \
           | sha256sum | cut -c1-16)
out="$ROOT/rkt-operator-$TAG-$src_key.tar"
if [ -f "$out" ]; then
  step "cached: $out"
  echo "AGENT_IMAGE=$REF"
  echo "AGENT_IMAGE_ARCHIVE=$out"
  exit 0
fi
# Only the newest few images of this tag are kept.
old_images=$(ls -t "$ROOT"/rkt-operator-"$TAG"-*.tar 2>/dev/null || true)
[ -z "$old_images" ] || tail -n +3 <<<"$old_images" | xargs -r rm -f

work=$(mktemp -d "$ROOT/.build.XXXXXX")
rootfs="$work/rootfs"
cleanup() {
  for m in proc dev; do mountpoint -q "$rootfs/$m" && umount -l "$rootfs/$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- 2. wheels of the agent and its dependencies, for the image's Python ---
mkdir -p "$rootfs"
tar -xf "$base" -C "$rootfs" --numeric-owner
img_py=$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PY=${AGENT_IMAGE_PYTHON:-python3}
host_py=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$img_py" = "$host_py" ] || die "the wheels are built with $PY (Python $host_py) but the image has Python $img_py: set AGENT_IMAGE_PYTHON to a python$img_py"
step "pip wheel (the agent and its dependencies, Python $host_py)"
"$PY" -m venv "$work/build-venv"
"$work/build-venv/bin/pip" wheel -q --disable-pip-version-check --wheel-dir "$work/wheels" "$repo" >&2

# --- 3. the shared install step, offline in a chroot ---
step "install.sh agent (chroot, offline)"
mkdir -p "$rootfs/tmp/image" "$rootfs/tmp/wheels"
cp "$img/install.sh" "$img/packages.txt" "$rootfs/tmp/image/"
cp "$work/wheels"/*.whl "$rootfs/tmp/wheels/"
mount -t proc proc "$rootfs/proc"
mount --bind /dev "$rootfs/dev"
# No network in the install (an unshared network namespace has only a down loopback), and a
# clean environment: nothing of this machine's pip or Python settings leaks into the image.
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  unshare --net chroot "$rootfs" /bin/sh /tmp/image/install.sh agent /tmp/wheels >&2
umount "$rootfs/proc" "$rootfs/dev"
rm -rf "${rootfs:?}/tmp/image" "${rootfs:?}/tmp/wheels"
find "$rootfs/tmp" "$rootfs/var/tmp" -mindepth 1 -delete

# --- 4. OCI layout with umoci: one layer, the Dockerfile's config ---
step "umoci: OCI layout"
layout="$work/oci"
umoci init --layout "$layout"
umoci new --image "$layout:$TAG"
tar -C "$rootfs" --numeric-owner --xattrs -cf "$work/layer.tar" .
umoci raw add-layer --image "$layout:$TAG" "$work/layer.tar"
# The same as helm/image/Dockerfile's final ENV, USER, ENTRYPOINT and CMD (a test compares
# them with the built image's configuration).
umoci config --image "$layout:$TAG" \
  --config.env PATH=/opt/rkt-operator/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env PYTHONUNBUFFERED=1 \
  --config.user 0:0 \
  --config.entrypoint rkt-operator --config.cmd run \
  --author rkt-operator --architecture amd64 --os linux
umoci gc --layout "$layout"

# --- 5. docker-archive for containerd ---
rm -f "$out.tmp"
skopeo copy --quiet "oci:$layout:$TAG" "docker-archive:$out.tmp:$REF" >&2
mv "$out.tmp" "$out"
rootfs_mb=$(du -sm "$rootfs" | cut -f1)
oci_mb=$(du -sm "$layout" | cut -f1)
step "done: root filesystem ${rootfs_mb} MB, compressed OCI layout ${oci_mb} MB, archive $(du -sm "$out" | cut -f1) MB"
echo "AGENT_IMAGE=$REF"
echo "AGENT_IMAGE_ARCHIVE=$out"
