#!/usr/bin/env bash
# Make sure the system tools the tests and the demo need are present; install the missing
# ones with apt-get when we can (root on Debian/Ubuntu), or say exactly what to install.
#   openssl         certificates of the local control plane
#   flock, unshare  util-linux: the build lock; the simulator's private mount namespaces
#   busybox-static  a static busybox: test and demo images (ACIs) run chrooted without libraries
#   file            checks that busybox is static
#   go >= 1.26      builds etcd, kube-apiserver, kubectl and helm once (not installable from
#                   Debian's archive at that version: it must come with the machine)
set -euo pipefail

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v flock >/dev/null && command -v unshare >/dev/null || missing+=(util-linux)
command -v file >/dev/null || missing+=(file)
bb=$(command -v busybox || true)
if [ -z "$bb" ] || ! command -v file >/dev/null || ! file -L "$bb" | grep -q "statically linked"; then
  missing+=(busybox-static)
fi
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[system-deps] installing: ${missing[*]}" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  else
    echo "[system-deps] missing: ${missing[*]} — install them, e.g. sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v go >/dev/null; then
  echo "[system-deps] Go >= 1.26 is needed once to build the control-plane binaries" \
       "(or set KUBEBUILDER_ASSETS to a folder holding etcd, kube-apiserver, kubectl)" >&2
  [ -n "${KUBEBUILDER_ASSETS:-}" ] || exit 1
fi
