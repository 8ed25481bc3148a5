#!/bin/sh
# The one install step of the agent image, run inside the image's root filesystem both by the
# Dockerfile (users with Docker) and by .ci/agent-image.sh (CI, no Docker), so that what CI
# tests is what users build.
#
#   install.sh packages        apt-get install the packages of packages.txt (the Dockerfile;
#                              .ci/agent-image.sh gives the same list to mmdebstrap instead)
#   install.sh agent WHEELDIR  a virtualenv at /opt/rkt-operator with the agent installed
#                              offline from WHEELDIR (the agent's wheel and its dependencies'),
#                              then checks that it runs and holds the agent only
set -eu
here=$(cd "$(dirname "$0")" && pwd)
VENV=/opt/rkt-operator

case ${1:-} in
packages)
  apt-get update
  # shellcheck disable=SC2046  # one package name per word
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    $(grep -v '^#' "$here/packages.txt")
  rm -rf /var/lib/apt/lists/*
  ;;
agent)
  wheels=${2:?usage: install.sh agent WHEELDIR}
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-index --find-links "$wheels" --no-cache-dir \
    --disable-pip-version-check rkt-operator
  # The wheel is installed; pip itself is not needed at run time.
  "$VENV/bin/pip" uninstall -y -q pip
  "$VENV/bin/rkt-operator" --help >/dev/null
  # The agent only: neither the simulator nor the development kit may be importable.
  "$VENV/bin/python" - <<'PY'
import importlib.util, sys
extra = [m for m in ("rkt_sim", "rkt_devkit") if importlib.util.find_spec(m) is not None]
if extra:
    sys.exit(f"the image must hold the agent only, but it can import {extra}")
PY
  ;;
*)
  echo "usage: install.sh packages | agent WHEELDIR" >&2
  exit 2
  ;;
esac
