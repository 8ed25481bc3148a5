#!/usr/bin/env bash
# What the real-node tier needs on the machine besides the Kubernetes binaries (.ci/nodebin.sh)
# and the agent image (.ci/agent-image.sh):
#   containerd, runc     the container runtime the kubelet talks to (Debian's 1.6 / 1.1);
#                        the harness starts containerd itself with its own config
#   conntrack, socat     the kubelet's host checks
#   iptables             the kubelet's canary chains
#   gcc, libc6-dev       the static pause binary below
#   umoci, skopeo        its image
# and a pause image (containerd's sandbox_image; no registry is reachable): one static binary
# built from .ci/node/pause.c, cached outside the repo keyed by the source.
# Needs root. The last line printed is PAUSE_IMAGE_ARCHIVE=<docker-archive> (its image
# reference is PAUSE_IMAGE=..., printed before).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[node-prereqs %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (a real kubelet and containerd)"
PKGS=(containerd runc conntrack socat iptables gcc libc6-dev umoci skopeo)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing packages: ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

ROOT="${NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkt-operator/node}"
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9
key=$(cat "$here/node/pause.c" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)
ref="localhost/rkt-operator/pause:$key"
out="$ROOT/pause-$key.tar"
if [ ! -f "$out" ]; then
  log "building the pause image $ref"
  work=$(mktemp -d "$ROOT/.build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/rootfs"
  gcc -static -Os -s -o "$work/rootfs/pause" "$here/node/pause.c"
  tar -C "$work/rootfs" --numeric-owner -cf "$work/layer.tar" .
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:$key"
  umoci raw add-layer --image "$work/oci:$key" "$work/layer.tar"
  umoci config --image "$work/oci:$key" --config.entrypoint /pause --config.user 65535:65535
  skopeo copy --quiet "oci:$work/oci:$key" "docker-archive:$out.tmp:$ref" >&2
  mv "$out.tmp" "$out"
fi
log "pause image $ref in $out"
echo "PAUSE_IMAGE=$ref"
echo "PAUSE_IMAGE_ARCHIVE=$out"
