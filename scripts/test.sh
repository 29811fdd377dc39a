#!/usr/bin/env bash
# The test suite CI runs: the checks of verify.sh (formatting, tidy
# modules, module boundaries), vet, a standalone build of every module,
# then `go test -race` over every module of the workspace. Each phase says
# what it does and how long it took.
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
t0=$(now)

"$ROOT/scripts/verify.sh"

mods=$(gomodules)
vet() { for m in $mods; do (cd "$m" && go vet ./...) || return 1; done; }
step "go vet" vet

standalone() { for m in $mods; do (cd "$m" && GOWORK=off GOFLAGS=-mod=mod go build ./...) || return 1; done; }
step "standalone module builds (GOWORK=off)" standalone

pkgs=()
for m in $mods; do pkgs+=("./$m/..."); done
# One go test over the workspace: the usual ok/FAIL lines per package.
step "go test -race" go test -race -timeout "${TEST_TIMEOUT:-20m}" ${TEST_FLAGS:-} "${pkgs[@]}"
log "test: all passed in $(since "$t0")"
