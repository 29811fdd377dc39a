#!/usr/bin/env bash
# Installs what building and testing Pleiades needs and is missing: Debian
# packages (librocksdb-dev and its compression libraries, gcc), then the Go
# modules. Idempotent; each phase says what it does and how long it took.
. "$(dirname "$0")/lib.sh"

need_pkgs=()
for p in librocksdb-dev gcc g++ make; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ "${WITH_PROTOC:-0}" = 1 ] && ! command -v protoc >/dev/null 2>&1; then
  need_pkgs+=(protobuf-compiler)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  step "apt-get update" $SUDO apt-get update -qq
  step "apt-get install ${need_pkgs[*]}" env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go 1.26 is required (https://go.dev/dl/)" >&2
  exit 1
fi
cd "$ROOT"
download() {
  for m in $(modules); do
    (cd "$m" && go mod download) || { echo "deps: go mod download failed in $m" >&2; return 1; }
  done
}
step "go mod download ($(modules | wc -l) modules; quick once cached)" download
