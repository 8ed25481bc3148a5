# shellcheck shell=bash
# The one recipe that builds commands of k8s.io/kubernetes from Go modules (sourced by
# .ci/testbin.sh and .ci/nodebin.sh; expects K8S_VERSION, log, die, step).
#
# k8s.io/kubernetes requires its staging modules at the fake version v0.0.0 and maps them with
# replace directives that only apply in its own main module, so `go install ...@v1.x` is
# refused. A small wrapper module requires k8s.io/kubernetes and replaces every staging module
# of upstream's require block with its published v0.<minor>.<patch>; `tool` lines keep the
# commands in the module graph. Upstream's flags: static, -trimpath, -s -w, version stamps.

k8s_wrapper_build() { # srcdir outdir pkg... : build the given k8s.io/kubernetes commands
  local src=$1 out=$2; shift 2
  local upmod minor n m p date ldf tool_args=()
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  step "kubernetes v$K8S_VERSION: reading upstream go.mod"
  upmod=$(cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" \
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  mkdir -p "$src"
  ( cd "$src"
    go mod init local.invalid/k8s-testbin >/dev/null 2>&1
    n=0
    for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$upmod"); do
      go mod edit -replace="$m=$m@v0.${K8S_VERSION#1.}"; n=$((n+1))
    done
    [ "$n" -gt 20 ] || die "only $n staging modules found in $upmod"
    for p in "$@"; do tool_args+=("-tool=$p"); done
    go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION" "${tool_args[@]}"
    step "kubernetes v$K8S_VERSION: go mod tidy ($n staging replaces)"
    go mod tidy
    ldf="-s -w"
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldf="$ldf -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      ldf="$ldf -X $p.gitTreeState=clean -X $p.buildDate=$date"
    done
    step "kubernetes v$K8S_VERSION: go build ${*##*/} (the long step)"
    go build -trimpath -pgo=off -tags selinux,notest,grpcnotrace -ldflags "$ldf" -o "$out/" "$@" )
}
