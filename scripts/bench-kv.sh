#!/usr/bin/env bash
# Runs the etcd-shaped KV workloads against a fresh local cluster: starts
# `pleiades dev --nodes 3` in a temporary directory, initializes it with
# RANGES user ranges (default 1), runs put with 1 and 64 clients and
# linearizable and stale gets with 64 clients, prints one line per workload,
# and stops the cluster. Compare with ../shared/tools/etcd-baseline.sh run
# right before or after: the workloads and totals are its own. Needs
# `make build` first (BIN overrides ./bin).
#
#   scripts/bench-kv.sh [RANGES]
. "$(dirname "$0")/lib.sh"
ranges=${1:-1}
bin=${BIN:-$ROOT/bin}
offset=${PORT_OFFSET:-3400}
dir=$(mktemp -d)
"$bin/pleiades" dev --bin-dir "$bin" --nodes 3 --data-dir "$dir" --port-offset "$offset" >"$dir/dev.log" 2>&1 &
dev=$!
cleanup() { kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
b=$((7400 + offset))
addrs="127.0.0.1:$((b + 2)),127.0.0.1:$((b + 12)),127.0.0.1:$((b + 22))"
cli=(--certs-dir "$dir/node1/certs" --addr "$addrs")
for _ in $(seq 1 120); do
  [ -f "$dir/node1/certs/ca.crt" ] && "$bin/pleiades" ranges "${cli[@]}" >/dev/null 2>&1 && break
  sleep 0.5
done
"$bin/pleiades" init "${cli[@]}" --initial-ranges "$ranges" >/dev/null
sleep 3
run() {
  local name=$1
  shift
  printf '%-28s ' "$name"
  "$bin/pleiades" bench kv "${cli[@]}" "$@" -o json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%8.0f/s  p50 %6.1f ms  p99 %6.1f ms  p99.9 %6.1f ms  errors %d" % (d["requests_per_sec"], d["p50_ms"], d["p99_ms"], d["p999_ms"], d["errors"]))'
}
log "3 nodes, $ranges user range(s), load average $(cut -d' ' -f1 /proc/loadavg)"
run "put, 1 client" --conns 1 --clients 1 --total 5000 --val-size 256 --sequential-keys
run "put, 64 clients" --conns 16 --clients 64 --total 50000 --val-size 256 --sequential-keys
run "get linearizable, 64" --conns 16 --clients 64 --total 50000 --op get
run "get stale, 64" --conns 16 --clients 64 --total 50000 --op get --consistency stale
