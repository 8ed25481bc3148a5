#!/usr/bin/env bash
# Everything the real-node tier (tests/node) needs, built or found once and cached outside the
# repo: host packages and the pause image (node-prereqs.sh), kubelet + kube-controller-manager
# + kube-scheduler (nodebin.sh), the agent image (agent-image.sh), real rkt (rkt.sh).
# Needs root. Prints, last, one line of NAME=value pairs for the tier, e.g.
#   export $(bash .ci/node.sh | tail -n1)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

t0=$(date +%s)
vars=()
collect() { # script [args]: keep its NAME=value lines
  local out
  out=$(bash "$here/$1" "${@:2}") || { log "$1 failed"; exit 1; }
  while IFS= read -r line; do
    [[ "$line" =~ ^[A-Z_]+=[^[:space:]]+$ ]] && vars+=("$line")
  done <<<"$out"
  log "$1: done ($(( $(date +%s) - t0 ))s elapsed)"
}
collect node-prereqs.sh
collect nodebin.sh
collect agent-image.sh
if [ -z "${RKT_DIR:-}" ]; then
  collect rkt.sh
else
  vars+=("RKT_DIR=$RKT_DIR")
fi
echo "${vars[*]}"
