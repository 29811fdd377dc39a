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

# start_dev BIN DIR OFFSET RANGES starts a 3-node `pleiades dev` of BIN's
# binaries over DIR on port offset OFFSET (its log in DIR/dev.log), waits
# for its raftds, initializes it with RANGES user ranges and leaves it 3 s
# to elect. It sets dev (the supervisor's pid: the caller stops it), addrs
# (the raftds' bus addresses, comma-separated) and cli (the CLI's
# --certs-dir and --addr for them).
start_dev() {
  "$1/pleiades" dev --bin-dir "$1" --nodes 3 --data-dir "$2" --port-offset "$3" >"$2/dev.log" 2>&1 &
  dev=$!
  local b=$((7400 + $3))
  addrs="127.0.0.1:$((b + 2)),127.0.0.1:$((b + 12)),127.0.0.1:$((b + 22))"
  cli=(--certs-dir "$2/node1/certs" --addr "$addrs")
  for _ in $(seq 1 120); do
    [ -f "$2/node1/certs/ca.crt" ] && "$1/pleiades" ranges "${cli[@]}" >/dev/null 2>&1 && break
    sleep 0.5
  done
  "$1/pleiades" init "${cli[@]}" --initial-ranges "$4" >/dev/null
  sleep 3
}
