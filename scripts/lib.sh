# Shared helpers for the scripts in this folder. Source it; do not run it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

# modules prints every module directory of the workspace, relative to ROOT.
modules() {
  (cd "$ROOT" && go work edit -json | sed -n 's/.*"DiskPath": "\.\/\(.*\)".*/\1/p')
}

# gomodules prints the modules that contain Go files yet.
gomodules() {
  for m in $(modules); do
    [ -n "$(find "$ROOT/$m" -name '*.go' -print -quit)" ] && echo "$m"
  done
  return 0
}

log() { printf '==> %s\n' "$*" >&2; }
