#!/usr/bin/env bash
# Builds every daemon and command into ./bin, one step per binary with its
# duration (the first build of a daemon linking RocksDB's cgo binding takes
# minutes; later ones come from the build cache). The pleiades CLI links no
# daemon code and builds without cgo: a static binary that runs without
# librocksdb (deploy/boundaries keeps it so).
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
mkdir -p bin
t0=$(now)
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
ldflags="-X github.com/pleiades-db/pleiades/shared/version.version=$version"
for m in $(modules); do
  [ -d "$m/cmd" ] || continue
  for c in "$m"/cmd/*/; do
    c=${c%/}
    [ -f "$c/main.go" ] || continue
    name=$(basename "$c")
    cgo=1
    [ "$name" = pleiades ] && cgo=0
    step "build bin/$name" bash -c "cd '$m' && CGO_ENABLED=$cgo go build -ldflags '$ldflags' -o '$ROOT/bin/$name' './cmd/$name'"
  done
done
log "build: bin/ done in $(since "$t0")"
ls bin
