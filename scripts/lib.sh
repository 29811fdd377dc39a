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

# now prints the time in seconds with milliseconds.
now() { date +%s.%3N; }

# since T0 prints the seconds elapsed since T0 (from now), e.g. "12.3s".
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# step NAME COMMAND... runs COMMAND, saying what it does before and how
# long it took after (on stderr), so that a slow phase (apt, a module
# download, the first cgo build of RocksDB's binding) is never silent.
# It returns COMMAND's status.
step() {
  local name=$1 t0 rc=0
  shift
  t0=$(now)
  log "$name ..."
  "$@" || rc=$?
  if [ "$rc" -eq 0 ]; then
    log "$name: done in $(since "$t0")"
  else
    log "$name: FAILED (status $rc) after $(since "$t0")"
  fi
  return "$rc"
}

# Machine counters for per-operation figures (scripts/per-op.sh,
# scripts/bench-kv.sh): UDP datagrams sent, context switches, CPU ticks.
udp_datagrams() { awk '/^Udp:/ { if (hdr) { print $5 } else { hdr = 1 } }' /proc/net/snmp; }
ctx_switches() { awk '/^ctxt/ { print $2 }' /proc/stat; }
cpu_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $6 + $7 + $8 }' /proc/stat; }
