#!/usr/bin/env bash
# Runs every fuzz target of the module for a short time each (go test can
# fuzz only one target per package per run). Usage: scripts/fuzz.sh [15s]
set -euo pipefail
fuzztime=${1:-15s}
cd "$(dirname "$0")/.."
found=0
for pkg in $(go list ./...); do
  for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
    found=1
    echo "== $pkg $target ($fuzztime)"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"
  done
done
if [ "$found" = 0 ]; then
  echo "no fuzz targets found"
fi
