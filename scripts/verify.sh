#!/usr/bin/env bash
# Quick checks of the repository's shape, run first by test.sh and alone by
# `make verify`: gofmt, `go mod tidy` (each go.mod as tidy would leave it)
# and the module boundaries (deploy/boundaries: daemons import only shared,
# shared imports no daemon, services imports no daemon, only deploy imports
# everything; the pleiades binary links no daemon code and no cgo).
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

fmt() {
  local bad
  bad=$(gofmt -l $(modules))
  if [ -n "$bad" ]; then
    echo "gofmt: these files need formatting:" >&2
    echo "$bad" >&2
    return 1
  fi
}
step "gofmt" fmt

tidy() {
  local m rc=0
  for m in $(gomodules); do
    (cd "$m" && go mod tidy -diff >/dev/null) || { echo "verify: $m/go.mod is not tidy (run go mod tidy in $m)" >&2; rc=1; }
  done
  return "$rc"
}
step "go mod tidy -diff" tidy

step "module boundaries (deploy/boundaries)" go test -count=1 ./deploy/boundaries/
