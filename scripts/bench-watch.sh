#!/usr/bin/env bash
# Watch event latency and put throughput, Pleiades next to etcd in the same
# run. Each round starts a fresh `pleiades dev --nodes 3` and runs
#   pleiades bench watch   with each watcher count of WATCHERS (etcd's
#                          `benchmark watch-latency` shape: N watchers of
#                          one key, PUT_TOTAL puts at PUT_RATE/s, latency
#                          from the put's acknowledgement to each delivery)
#   pleiades bench kv      put, 64 clients (etcd's `benchmark put` shape)
# and, with ETCD=1, then starts a fresh 3-member etcd v3.6.8 and runs the
# same two workloads with etcd's own benchmark tool (built from the Go module
# proxy as ../shared/tools/etcd-baseline.sh builds it, into ETCD_BASELINE_DIR;
# never committed). Rounds alternate Pleiades, etcd, Pleiades, etcd, ... and
# a table of every round's figures ends the run.
#
# IDLE_WATCHERS=N (0: skip) also opens N idle watchers of one key
# on the first round's cluster and reports what they add to the three raftd
# processes (heap after a forced GC, goroutines, resident memory; read from
# their admin endpoints) divided by N.
#
#   scripts/bench-watch.sh [ROUNDS]        default 2
#
# Environment: BIN (default ./bin, after `make build`), PORT_OFFSET (the dev
# cluster's, default 2400), ETCD=1, ETCD_BASELINE_DIR (default
# ~/.cache/etcd-baseline), ETCD_PORT_BASE (default 23400), WATCHERS (default
# "1 1000"), PUT_TOTAL (default 1000), PUT_RATE (default 100), IDLE_WATCHERS
# (default 10000).
. "$(dirname "$0")/lib.sh"
rounds=${1:-2}
if ! [[ $rounds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [ROUNDS]  (a positive number of rounds)" >&2
  exit 2
fi
bin=${BIN:-$ROOT/bin}
offset=${PORT_OFFSET:-2400}
watchers=${WATCHERS:-1 1000}
put_total=${PUT_TOTAL:-1000}
put_rate=${PUT_RATE:-100}
idle=${IDLE_WATCHERS:-10000}
W=${ETCD_BASELINE_DIR:-$HOME/.cache/etcd-baseline}
EB=${ETCD_PORT_BASE:-23400}
results=$(mktemp)
dir= dev= epids=() edir=
stop_all() {
  if [ -n "$dev" ]; then
    kill -TERM "$dev" 2>/dev/null || true
    wait "$dev" 2>/dev/null || true
  fi
  [ -z "$dir" ] || rm -rf "$dir"
  for p in "${epids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [ -z "$edir" ] || rm -rf "$edir"
  dev= dir= epids=() edir=
}
trap 'stop_all; rm -f "$results"' EXIT

# spread N: etcd's --streams and --watchers-per-stream for N watchers (at
# most 100 a stream, as in etcd's own figures).
spread() {
  local n=$1 s=1
  while [ $((n / s)) -gt 100 ] || [ $((n % s)) -ne 0 ]; do s=$((s + 1)); done
  echo "$s $((n / s))"
}

# record WHO WORKLOAD REQS P50 P99: one line of the final table.
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"; }

pleiades_round() {
  local round=$1 n s w json
  dir=$(mktemp -d)
  "$bin/pleiades" dev --bin-dir "$bin" --nodes 3 --data-dir "$dir" --port-offset "$offset" >"$dir/dev.log" 2>&1 &
  dev=$!
  local b=$((7400 + offset))
  local addrs="127.0.0.1:$((b + 2)),127.0.0.1:$((b + 12)),127.0.0.1:$((b + 22))"
  local cli=(--certs-dir "$dir/node1/certs" --addr "$addrs")
  for _ in $(seq 1 120); do
    [ -f "$dir/node1/certs/ca.crt" ] && "$bin/pleiades" ranges "${cli[@]}" >/dev/null 2>&1 && break
    sleep 0.5
  done
  "$bin/pleiades" init "${cli[@]}" >/dev/null
  sleep 3
  log "round $round: Pleiades (3 nodes), load average $(cut -d' ' -f1 /proc/loadavg)"
  for n in $watchers; do
    read -r s w <<<"$(spread "$n")"
    json=$("$bin/pleiades" bench watch "${cli[@]}" --streams "$s" --watchers-per-stream "$w" \
      --put-total "$put_total" --put-rate "$put_rate" -o json)
    printf '%s\n' "$json" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print("pleiades watch-latency %5d watchers: events p50 %7.2f ms  p99 %7.2f ms  p99.9 %7.2f ms  missing %d | puts %.0f/s p99 %.2f ms"
      % (j["watchers"], j["p50_ms"], j["p99_ms"], j["p999_ms"], j["missing"], j["puts_per_sec"], j["put_p99_ms"]), flush=True)
with open(sys.argv[1], "a") as f:
    f.write("pleiades\twatch %d\t%d\t%.2f\t%.2f\n" % (j["watchers"], j["missing"], j["p50_ms"], j["p99_ms"]))
' "$results"
  done
  json=$("$bin/pleiades" bench kv "${cli[@]}" --conns 16 --clients 64 --total 50000 --val-size 256 --sequential-keys -o json)
  printf '%s\n' "$json" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print("pleiades put 64 clients: %.0f/s  p50 %.2f ms  p99 %.2f ms  errors %d" % (j["requests_per_sec"], j["p50_ms"], j["p99_ms"], j["errors"]), flush=True)
with open(sys.argv[1], "a") as f:
    f.write("pleiades\tput 64\t%.0f\t%.2f\t%.2f\n" % (j["requests_per_sec"], j["p50_ms"], j["p99_ms"]))
' "$results"
  if [ "$round" = 1 ] && [ "$idle" -gt 0 ]; then
    idle_watchers "$b" "${cli[@]}"
  fi
  stop_all
}

# raftd_mem B: the three raftds' heap after a forced GC, goroutines and
# resident memory, summed (admin ports B+102, +112, +122).
raftd_mem() {
  local b=$1 k port
  for k in 0 1 2; do
    port=$((b + 102 + 10 * k))
    curl -sf "http://127.0.0.1:$port/debug/pprof/heap?gc=1" >/dev/null || true
    curl -sf "http://127.0.0.1:$port/metrics"
  done | awk '/^go_memstats_heap_alloc_bytes /{h+=$2} /^go_goroutines /{g+=$2} /^process_resident_memory_bytes /{r+=$2} END {printf "%d %d %d\n", h, g, r}'
}

idle_watchers() {
  local b=$1 h0 g0 r0 h1 g1 r1 s w p
  shift
  read -r h0 g0 r0 <<<"$(raftd_mem "$b")"
  read -r s w <<<"$(spread "$idle")"
  "$bin/pleiades" bench watch "$@" --streams "$s" --watchers-per-stream "$w" --put-total 1 --hold 60s >/dev/null &
  p=$!
  # Wait until the watchers' streams are open on the servers, then for
  # their first checkpoints to pass.
  for _ in $(seq 1 120); do
    read -r h1 g1 r1 <<<"$(raftd_mem "$b")"
    [ $((g1 - g0)) -ge "$idle" ] && break
    sleep 1
  done
  sleep 5
  read -r h1 g1 r1 <<<"$(raftd_mem "$b")"
  kill "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  python3 -c '
import sys
n, h0, g0, r0, h1, g1, r1 = map(int, sys.argv[1:])
print("pleiades %d idle watchers, the 3 raftd processes: heap %+.0f B, goroutines %+.2f, resident %+.0f B per watcher" % (n, (h1 - h0) / n, (g1 - g0) / n, (r1 - r0) / n))
' "$idle" "$h0" "$g0" "$r0" "$h1" "$g1" "$r1"
}

etcd_build() {
  [ -x "$W/bin/etcd" ] && [ -x "$W/bin/benchmark" ] && [ -x "$W/bin/etcdctl" ] && return 0
  log "building etcd v3.6.8 into $W (about a minute on first use)"
  mkdir -p "$W/bin"
  ( cd "$W" && { [ -f go.mod ] || go mod init etcdbaseline >/dev/null 2>&1; } &&
    go get go.etcd.io/etcd/server/v3@v3.6.8 go.etcd.io/etcd/etcdctl/v3@v3.6.8 go.etcd.io/etcd/v3/tools/benchmark@v3.6.8 >/dev/null 2>&1 &&
    go build -o bin/etcd go.etcd.io/etcd/server/v3 &&
    go build -o bin/etcdctl go.etcd.io/etcd/etcdctl/v3 &&
    go build -o bin/benchmark go.etcd.io/etcd/v3/tools/benchmark )
}

etcd_round() {
  local round=$1 n s w i out
  edir=$(mktemp -d)
  local CL="m1=http://127.0.0.1:$((EB + 11)),m2=http://127.0.0.1:$((EB + 12)),m3=http://127.0.0.1:$((EB + 13))"
  for i in 1 2 3; do
    "$W/bin/etcd" --name m$i --data-dir "$edir/m$i" \
      --listen-client-urls http://127.0.0.1:$((EB + i)) --advertise-client-urls http://127.0.0.1:$((EB + i)) \
      --listen-peer-urls http://127.0.0.1:$((EB + 10 + i)) --initial-advertise-peer-urls http://127.0.0.1:$((EB + 10 + i)) \
      --initial-cluster-token bench-watch --initial-cluster "$CL" --initial-cluster-state new \
      --log-level=error >"$edir/m$i.log" 2>&1 &
    epids+=($!)
  done
  local E=127.0.0.1:$((EB + 1)),127.0.0.1:$((EB + 2)),127.0.0.1:$((EB + 3))
  for _ in $(seq 1 60); do "$W/bin/etcdctl" --endpoints=$E endpoint health >/dev/null 2>&1 && break; sleep 0.5; done
  log "round $round: etcd v3.6.8 (3 members), load average $(cut -d' ' -f1 /proc/loadavg)"
  for n in $watchers; do
    read -r s w <<<"$(spread "$n")"
    out=$("$W/bin/benchmark" --endpoints=$E watch-latency --streams "$s" --watchers-per-stream "$w" \
      --put-total "$put_total" --put-rate "$put_rate" 2>&1 | tr '\r' '\n')
    printf '%s\n' "$out" | python3 -c '
import re, sys
text = sys.stdin.read()
n = int(sys.argv[1])
watch = text.split("Watch events summary:")[-1]
def pct(section, p):
    # etcd prints a percentile only when above zero (4 decimals of a
    # second): a missing one is below 0.1 ms, every event of that share
    # delivered before its put was acknowledged.
    m = re.search(r"\s%s%% in ([\d.]+) secs" % re.escape(p), section)
    return float(m.group(1)) * 1000 if m else 0.0
put = text.split("Put summary:")[-1].split("Watch events summary:")[0]
print("etcd watch-latency %5d watchers: events p50 %7.2f ms  p99 %7.2f ms  p99.9 %7.2f ms | puts p99 %.2f ms"
      % (n, pct(watch, "50"), pct(watch, "99"), pct(watch, "99.9"), pct(put, "99")), flush=True)
with open(sys.argv[2], "a") as f:
    f.write("etcd\twatch %d\t\t%.2f\t%.2f\n" % (n, pct(watch, "50"), pct(watch, "99")))
' "$n" "$results"
  done
  out=$("$W/bin/benchmark" --endpoints=$E --target-leader --conns=16 --clients=64 put --key-size=8 --sequential-keys \
    --total=50000 --val-size=256 2>&1 | tr '\r' '\n')
  printf '%s\n' "$out" | python3 -c '
import re, sys
t = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p = lambda q: float(re.search(r"\s%s%% in ([\d.]+) secs" % q, t).group(1)) * 1000
print("etcd put 64 clients: %.0f/s  p50 %.2f ms  p99 %.2f ms" % (rps, p("50"), p("99")), flush=True)
with open(sys.argv[1], "a") as f:
    f.write("etcd\tput 64\t%.0f\t%.2f\t%.2f\n" % (rps, p("50"), p("99")))
' "$results"
  stop_all
}

[ "${ETCD:-0}" = 1 ] && etcd_build
for r in $(seq 1 "$rounds"); do
  pleiades_round "$r"
  [ "${ETCD:-0}" != 1 ] || etcd_round "$r"
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
print()
print("%-9s %-12s %7s %16s %16s" % ("who", "workload", "rounds", "p50 ms (median)", "p99 ms (median)"))
for key in dict.fromkeys((r[0], r[1]) for r in rows):
    rs = [r for r in rows if (r[0], r[1]) == key]
    extra = ""
    if key[1].startswith("put"):
        extra = "  %.0f/s (median)" % statistics.median(float(r[2]) for r in rs)
    print("%-9s %-12s %7d %16.2f %16.2f%s" % (key[0], key[1], len(rs), statistics.median(float(r[3]) for r in rs),
          statistics.median(float(r[4]) for r in rs), extra))
EOF
