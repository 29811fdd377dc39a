#!/usr/bin/env bash
# The test suite CI runs: formatting, vet, a standalone build of every
# module, then `go test -race` over every module of the workspace.
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

log "gofmt"
bad=$(gofmt -l $(modules))
if [ -n "$bad" ]; then
  echo "gofmt: these files need formatting:" >&2
  echo "$bad" >&2
  exit 1
fi

mods=$(gomodules)
log "go vet"
for m in $mods; do (cd "$m" && go vet ./...); done

log "standalone module builds (GOWORK=off)"
for m in $mods; do (cd "$m" && GOWORK=off GOFLAGS=-mod=mod go build ./...); done

log "go test -race"
pkgs=()
for m in $mods; do pkgs+=("./$m/..."); done
# One go test over the workspace: the usual ok/FAIL lines per package.
go test -race -timeout "${TEST_TIMEOUT:-20m}" ${TEST_FLAGS:-} "${pkgs[@]}"
