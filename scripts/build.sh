#!/usr/bin/env bash
# Builds every daemon and command into ./bin.
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
mkdir -p bin
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
ldflags="-X github.com/pleiades-db/pleiades/shared/version.version=$version"
for m in $(modules); do
  [ -d "$m/cmd" ] || continue
  for c in "$m"/cmd/*/; do
    c=${c%/}
    [ -f "$c/main.go" ] || continue
    name=$(basename "$c")
    (cd "$m" && go build -ldflags "$ldflags" -o "$ROOT/bin/$name" "./cmd/$name")
  done
done
ls bin
