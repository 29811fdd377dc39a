#!/usr/bin/env bash
# Regenerates the Go code of every .proto under shared/proto. Generated files
# are committed, so a build never needs protoc; run this (make proto) after
# editing a .proto and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
want="libprotoc 3.21.12"
have=$(protoc --version 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  echo "genproto: need protoc '$want' (Debian protobuf-compiler), have '${have:-none}'" >&2
  exit 1
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
(cd shared && go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go)
cd shared/proto
mapfile -t files < <(find . -name '*.proto' | sed 's|^\./||' | sort)
PATH="$bin:$PATH" protoc -I . --go_out=. --go_opt=paths=source_relative "${files[@]}"
echo "genproto: regenerated ${#files[@]} files"
