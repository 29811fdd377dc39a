#!/usr/bin/env bash
# Runs `pleiades bench workflows` against a fresh local cluster: starts
# `pleiades dev --nodes 3` (without msgd) in a temporary directory,
# initializes it, runs the 10-step workflow at 1 and 64 concurrent
# starters with raw KV puts at the same concurrency for comparison, then
# (WAITING, default 0: skipped) that many instances waiting on events in
# node 1's workflowd, and stops the cluster. Needs `make build` first (BIN
# overrides ./bin).
#
#   scripts/bench-workflows.sh [INSTANCES] [WAITING]
. "$(dirname "$0")/lib.sh"
instances=${1:-1000}
waiting=${2:-0}
bin=${BIN:-$ROOT/bin}
offset=${PORT_OFFSET:-3500}
dir=$(mktemp -d)
"$bin/pleiades" dev --bin-dir "$bin" --nodes 3 --data-dir "$dir" --port-offset "$offset" \
  --daemons stored,clockd,gossipd,raftd,workflowd >"$dir/dev.log" 2>&1 &
dev=$!
cleanup() { kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
b=$((7400 + offset))
raft="127.0.0.1:$((b + 2)),127.0.0.1:$((b + 12)),127.0.0.1:$((b + 22))"
wf="127.0.0.1:$((b + 5)),127.0.0.1:$((b + 15)),127.0.0.1:$((b + 25))"
certs=(--certs-dir "$dir/node1/certs")
for _ in $(seq 1 120); do
  grep -q "cluster ready" "$dir/dev.log" && break
  sleep 0.5
done
"$bin/pleiades" init "${certs[@]}" --addr "$raft" >/dev/null
log "3 nodes, load average $(cut -d' ' -f1 /proc/loadavg)"
"$bin/pleiades" bench workflows "${certs[@]}" --addr "$wf" --raft-addr "$raft" \
  --admin-addr "127.0.0.1:$((b + 105))" --instances "$instances" --waiting "$waiting"
