#!/usr/bin/env bash
# Runs the etcd-shaped KV workloads against fresh local clusters, one per
# range count given (default 1): starts `pleiades dev --nodes 3` in a
# temporary directory, initializes it with that many user ranges, runs put
# with 1 and 64 clients and linearizable and stale gets with 64 clients,
# prints one line per workload with what the whole machine spent per
# operation while it ran (UDP datagrams, context switches, CPU: the
# counters of scripts/per-op.sh) and the CPU of the cluster's own processes
# per operation (the benchmark client not included; robust to other load on
# the machine), and stops the cluster. With more than one
# range count, or with ETCD=1, it ends with a table of the put figures and
# their ratios to the first range count (and to etcd's).
#
# ETCD=1 first runs ../shared/tools/etcd-baseline.sh quick (etcd v3.6.8
# built from the Go module proxy on first use; ETCD_BASELINE_DIR as that
# tool takes it; ETCD_TOOL its path): the workloads and totals here are its own. Needs `make
# build` first (BIN overrides ./bin; PORT_OFFSET the dev cluster's ports;
# WORKLOADS a subset of "put1 put64 getl gets getf" to run; getf is a
# bounded-staleness get, served by the first address's replica).
#
#   scripts/bench-kv.sh [RANGES...]        e.g. scripts/bench-kv.sh 1 16 256
. "$(dirname "$0")/lib.sh"
[ $# -gt 0 ] || set -- 1
for r in "$@"; do
  if ! [[ $r =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [RANGES...]  (each a positive number of user ranges)" >&2
    exit 2
  fi
done
bin=${BIN:-$ROOT/bin}
offset=${PORT_OFFSET:-3400}
results=$(mktemp)
dir=
dev=
stop_cluster() {
  if [ -n "$dev" ]; then
    kill -TERM "$dev" 2>/dev/null || true
    wait "$dev" 2>/dev/null || true
  fi
  [ -z "$dir" ] || rm -rf "$dir"
  dev= dir=
}
trap 'stop_cluster; rm -f "$results"' EXIT

if [ "${ETCD:-0}" = 1 ]; then
  tool=${ETCD_TOOL:-$ROOT/../shared/tools/etcd-baseline.sh}
  log "etcd v3.6.8 (3 members), load average $(cut -d' ' -f1 /proc/loadavg)"
  out=$(bash "$tool" quick) || { echo "etcd baseline failed (offline, or no Go module proxy?): see $tool" >&2; exit 1; }
  printf '%s\n' "$out"
  # Lines like: "put 64 clients   Requests/sec: 9583.1 50% in 0.0060 secs. 99% in 0.0130 secs. ..."
  printf '%s\n' "$out" | python3 -c '
import re, sys
for line in sys.stdin:
    m = re.match(r"(put 1 client|put 64 clients)\s+Requests/sec:\s+([\d.]+).*? 99% in ([\d.]+) secs", line)
    if m:
        name = "put1" if m.group(1) == "put 1 client" else "put64"
        print("etcd\t%s\t%s\t%.2f\t\t\t\t" % (name, m.group(2), float(m.group(3)) * 1000))
' >>"$results"
fi

# cluster_ticks prints the CPU ticks the dev cluster's processes (the
# supervisor and its daemons) have used: their share of the machine's,
# whatever else runs on it.
cluster_ticks() {
  local p t=0
  for p in "$dev" $(pgrep -P "$dev"); do
    t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

# run R NAME KEY N ARGS...: one workload of N operations, printed and kept
# in the results (KEY names it there).
run() {
  local r=$1 name=$2 key=$3 n=$4 json d0 c0 t0 d1 c1 t1
  shift 4
  [[ " ${WORKLOADS:-put1 put64 getl gets getf} " == *" $key "* ]] || return 0
  printf '%-26s ' "$name"
  d0=$(udp_datagrams) c0=$(ctx_switches) t0=$(cpu_ticks) k0=$(cluster_ticks)
  json=$("$bin/pleiades" bench kv "${cli[@]}" "$@" -o json)
  d1=$(udp_datagrams) c1=$(ctx_switches) t1=$(cpu_ticks) k1=$(cluster_ticks)
  printf '%s\n' "$json" | python3 -c '
import json, sys
r, key, n, d, c, t, k, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), *map(int, sys.argv[4:9])
j = json.load(sys.stdin)
cpu, kcpu = t * 1000 / hz / n, k * 1000 / hz / n
print("%8.0f/s  p50 %6.1f ms  p99 %6.1f ms  p99.9 %6.1f ms  errors %d | per op: %.2f datagrams, %.1f switches, %.3f ms CPU (cluster %.3f)"
      % (j["requests_per_sec"], j["p50_ms"], j["p99_ms"], j["p999_ms"], j["errors"], d / n, c / n, cpu, kcpu), flush=True)
with open(sys.argv[-1], "a") as f:
    f.write("%s\t%s\t%.1f\t%.2f\t%.3f\t%.2f\t%d\t%.3f\n" % (r, key, j["requests_per_sec"], j["p99_ms"], cpu, d / n, j["errors"], kcpu))
' "$r" "$key" "$n" "$((d1 - d0))" "$((c1 - c0))" "$((t1 - t0))" "$((k1 - k0))" "$(getconf CLK_TCK)" "$results"
}

for ranges in "$@"; do
  dir=$(mktemp -d)
  start_dev "$bin" "$dir" "$offset" "$ranges"
  log "3 nodes, $ranges user range(s), load average $(cut -d' ' -f1 /proc/loadavg)"
  run "$ranges" "put, 1 client" put1 5000 --conns 1 --clients 1 --total 5000 --val-size 256 --sequential-keys
  run "$ranges" "put, 64 clients" put64 50000 --conns 16 --clients 64 --total 50000 --val-size 256 --sequential-keys
  run "$ranges" "get linearizable, 64" getl 50000 --conns 16 --clients 64 --total 50000 --op get
  run "$ranges" "get stale, 64" gets 50000 --conns 16 --clients 64 --total 50000 --op get --consistency stale
  run "$ranges" "get max-staleness 5s, 64" getf 50000 --conns 16 --clients 64 --total 50000 --op get --max-staleness 5s
  stop_cluster
done

if [ $# -gt 1 ] || [ "${ETCD:-0}" = 1 ]; then
  python3 - "$results" "$1" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
base = sys.argv[2]
fig = {(r[0], r[1]): r for r in rows}
def num(r, i):
    return float(r[i]) if r and r[i] else None
print()
print("%-10s %-16s %9s %8s %10s %12s %10s %12s %12s" % ("ranges", "put", "req/s", "p99 ms", "CPU ms/op", "cluster CPU", "dgrams/op", "x first", "cluster CPU x"))
for who in dict.fromkeys(r[0] for r in rows):
    for key, label in (("put1", "1 client"), ("put64", "64 clients")):
        r = fig.get((who, key))
        if not r:
            continue
        b = fig.get((base, key)) if who != "etcd" else None
        ratio = "%.2fx" % (num(r, 2) / num(b, 2)) if b else ""
        cpu, kcpu = num(r, 4), num(r, 7) if len(r) > 7 else None
        cratio = "%.2fx" % (kcpu / num(b, 7)) if b and kcpu else ""
        print("%-10s %-16s %9.0f %8.2f %10s %12s %10s %12s %12s" % (who, label, num(r, 2), num(r, 3),
              "%.3f" % cpu if cpu else "", "%.3f" % kcpu if kcpu else "", r[5] or "", ratio, cratio))
e1, p1 = fig.get(("etcd", "put1")), fig.get((base, "put1"))
if e1 and p1:
    print("\nput, 1 client, %s range(s) against etcd: %.2fx (p99 %.2f against %.2f ms)" % (base, num(p1, 2) / num(e1, 2), num(p1, 3), num(e1, 3)))
e64 = fig.get(("etcd", "put64"))
if e64:
    for who in dict.fromkeys(r[0] for r in rows if r[0] != "etcd"):
        r = fig.get((who, "put64"))
        if r:
            print("put, 64 clients, %s range(s) against etcd: %.2fx (p99 %.2f against %.2f ms)" % (who, num(r, 2) / num(e64, 2), num(r, 3), num(e64, 3)))
EOF
fi
