#!/usr/bin/env bash
# Builds one of BotFleet's shipped binaries, the one way the container images (docker/*.Dockerfile)
# and CI build them, so an image never runs a binary built differently from what CI checked.
#
#   scripts/build-release.sh operator|runtime [OUT_DIR]
#
# operator: cargo build -p botfleet-operator --bin operator
# runtime:  cargo build -p bot-runtime --no-default-features --bin bot-runtime
#           (no default features: the fake-Telegram test bed and simulator are not shipped)
#
# PROFILE=release (default) or dev (CI's cheap compile check). --locked: the committed
# Cargo.lock is what ships. With OUT_DIR the binary is copied there (the Dockerfiles build in
# a cache-mounted target dir and copy it out); the script prints the binary's path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { echo "usage: $0 operator|runtime [OUT_DIR]   (PROFILE=release|dev)" >&2; exit 2; }
what=${1:-}
out=${2:-}
profile=${PROFILE:-release}

case "$what" in
  operator) args=(-p botfleet-operator --bin operator); bin=operator ;;
  runtime) args=(-p bot-runtime --no-default-features --bin bot-runtime); bin=bot-runtime ;;
  *) usage ;;
esac
case "$profile" in
  release) dir=release ;;
  dev) dir=debug ;;
  *) echo "PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac

cargo build --locked --profile "$profile" "${args[@]}" >&2
built="${CARGO_TARGET_DIR:-target}/$dir/$bin"
if [ -n "$out" ]; then
  mkdir -p "$out"
  cp "$built" "$out/$bin"
  built="$out/$bin"
fi
echo "$built"
