#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver + embedded etcd + kube-controller-manager, from
# k8s.io/kubernetes as a Go library) into tests/controlplane/bin/controlplane and prints its path.
# Idempotent: a second run with warm caches takes seconds. Go's caches live outside the clone.
#
#   tests/controlplane/build.sh                    # build (downloads modules on first use)
#   tests/controlplane/build.sh --gen-replace [v]  # regenerate go.mod's k8s.io replaces (gen-replace.sh)
#
# Environment: BOTFLEET_GO_CACHE (default ~/.cache/botfleet-go; holds mod/ and build/),
# CONTROLPLANE_BIN (default tests/controlplane/bin/controlplane), MIN_FREE_GIB (default 8).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

cache=${BOTFLEET_GO_CACHE:-$HOME/.cache/botfleet-go}
out=${CONTROLPLANE_BIN:-$here/bin/controlplane}
min_free_gib=${MIN_FREE_GIB:-8}

export GOMODCACHE=$cache/mod
export GOCACHE=$cache/build
export CGO_ENABLED=0
export GOTOOLCHAIN=local   # go.mod says go 1.26.0; the machine's Go 1.26 builds it, nothing is fetched
export GOFLAGS="-mod=readonly -buildvcs=false"
export GOPROXY=${GOPROXY:-https://proxy.golang.org,direct}

command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null 2>&1 || { echo "build.sh: go not found (expected Go 1.26 at /usr/local/go)" >&2; exit 1; }

case $(go env GOVERSION) in
  go1.2[6-9]* | go1.[3-9]*) ;;
  *) echo "build.sh: $(go env GOVERSION) is too old: k8s.io/kubernetes v1.37 needs go >= 1.26.0" >&2; exit 1 ;;
esac

if [ "${1:-}" = "--gen-replace" ]; then
  shift
  GOFLAGS=-buildvcs=false exec ./gen-replace.sh "$@"
fi

mkdir -p "$cache" "$(dirname "$out")"

# Go caches compiled packages but always relinks (~10 s); skip even that when nothing changed.
stamp=$( (go env GOVERSION; cat build.sh go.mod go.sum ./*.go) | sha256sum | cut -c1-16)
if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "build.sh: $out is up to date" >&2
  echo "$out"
  exit 0
fi

# A cold build fills ~0.6 GiB of modules and ~3.6 GiB of build cache, plus a 130 MiB binary (measured).
free_kib=$(df -Pk "$cache" | awk 'NR==2{print $4}')
free_kib_out=$(df -Pk "$(dirname "$out")" | awk 'NR==2{print $4}')
[ "$free_kib_out" -lt "$free_kib" ] && free_kib=$free_kib_out
if [ "$free_kib" -lt $((min_free_gib * 1024 * 1024)) ]; then
  echo "build.sh: only $((free_kib / 1024)) MiB free under $cache / $(dirname "$out"); the control plane build needs ${min_free_gib} GiB (MIN_FREE_GIB)" >&2
  exit 1
fi

# Stamp the Kubernetes version in, as Kubernetes's own build does (hack/lib/version.sh); without it
# /version says v0.0.0-master+$Format:%H$, which clients' version checks (Helm's kubeVersion) reject.
kver=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)       # v1.37.2
kmajor=${kver#v}; kmajor=${kmajor%%.*}
kminor=${kver#v*.}; kminor=${kminor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=$kmajor -X $pkg.gitMinor=$kminor -X $pkg.gitTreeState=clean"
done
start=$(date +%s)
nice -n 15 go build -trimpath -ldflags="$ldflags" -o "$out.tmp" .
mv -f "$out.tmp" "$out"
echo "$stamp" > "$out.stamp"
echo "build.sh: built $out in $(( $(date +%s) - start ))s ($(go env GOVERSION), k8s.io/kubernetes $(go list -m -f '{{.Version}}' k8s.io/kubernetes))" >&2
echo "$out"
