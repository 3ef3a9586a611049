#!/usr/bin/env bash
# Regenerates, mechanically, what go.mod needs to use k8s.io/kubernetes as a library:
#
#   * one `replace k8s.io/X => k8s.io/X v0.<minor>.<patch>` for every staging module that
#     k8s.io/kubernetes's own go.mod both requires (at v0.0.0) and replaces with
#     ./staging/src/k8s.io/X; a replace to a local directory does not apply to a dependency,
#     so without these the build asks for k8s.io/api v0.0.0, which does not exist;
#   * go.etcd.io/etcd/server/v3 (the embedded etcd) at the version Kubernetes requires,
#     checked again after `go mod tidy` (nothing may raise it).
#
# Usage: gen-replace.sh [vX.Y.Z]   (default: the k8s.io/kubernetes version go.mod requires)
# Run through build.sh's environment: `tests/controlplane/build.sh --gen-replace [vX.Y.Z]`.
set -euo pipefail
cd "$(dirname "$0")"

version=${1:-$(go list -m -f '{{.Version}}' k8s.io/kubernetes 2>/dev/null || true)}
[ -n "$version" ] || { echo "gen-replace: give a k8s.io/kubernetes version, e.g. v1.37.2" >&2; exit 2; }
case $version in v1.*) ;; *) echo "gen-replace: unexpected version '$version'" >&2; exit 2 ;; esac
staging=v0.${version#v1.}          # v1.37.2 -> v0.37.2, as Kubernetes tags its staging repos

# Kubernetes's go.mod, from the module proxy (this fetches only the .mod file).
kmod=$(go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$version")
[ -s "$kmod" ] || { echo "gen-replace: could not fetch go.mod of k8s.io/kubernetes@$version" >&2; exit 1; }

# Modules k8s.io/kubernetes requires at v0.0.0 ...
required=$(awk '/^require[ \t]*\(/{b=1;next} b&&/^\)/{b=0} b&&$2=="v0.0.0"{print $1} /^require [^(]/&&$3=="v0.0.0"{print $2}' "$kmod" | sort -u)
# ... and replaces with its staging directory.
replaced=$(awk '/^replace[ \t]*\(/{b=1;next} b&&/^\)/{b=0} b&&$2=="=>"&&$3 ~ /^\.\/staging\/src\//{print $1}' "$kmod" | sort -u)
modules=$(comm -12 <(echo "$required") <(echo "$replaced"))
[ -n "$modules" ] || { echo "gen-replace: found no staging modules in $kmod" >&2; exit 1; }
# Staging modules it replaces but does not require (sample-controller, ...) are not needed.
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$kmod")
[ -n "$etcd" ] || { echo "gen-replace: go.etcd.io/etcd/server/v3 not in $kmod" >&2; exit 1; }
godirective=$(awk '$1=="go"{print $2; exit}' "$kmod")

# Drop every existing k8s.io replace, then write the new ones.
for old in $(go mod edit -json | awk -F'"' '/"Old": *\{/{getline; if ($4 ~ /^k8s\.io\//) print $4}'); do
  go mod edit -dropreplace="$old"
done
args=(-go="$godirective" -require="k8s.io/kubernetes@$version" -require="go.etcd.io/etcd/server/v3@$etcd")
for m in $modules; do args+=(-replace="$m=$m@$staging"); done
go mod edit "${args[@]}"
go mod tidy

got=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
if [ "$got" != "$etcd" ]; then
  echo "gen-replace: go.etcd.io/etcd/server/v3 resolved to $got, Kubernetes $version requires $etcd" >&2
  exit 1
fi
echo "gen-replace: k8s.io/kubernetes $version, $(echo "$modules" | wc -l) staging modules at $staging, etcd server $etcd, go $godirective"
