#!/usr/bin/env bash
# Runs the Go benchmarks of every module once (BENCH selects, default all;
# BENCHTIME sets -benchtime). Long: not part of `make test`.
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
pkgs=()
for m in $(modules); do pkgs+=("./$m/..."); done
go test -run '^$' -bench "${BENCH:-.}" -benchtime "${BENCHTIME:-1s}" -benchmem "${pkgs[@]}"
