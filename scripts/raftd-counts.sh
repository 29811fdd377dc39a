#!/usr/bin/env bash
# Counts what the three raftds of a fresh local cluster do per put: starts
# `pleiades dev --nodes 3` with RANGES user ranges, writes TOTAL/4 puts
# untimed, then TOTAL puts with CLIENTS requesters over CONNS client
# endpoints, and prints the put rate and, per put, every counter of the
# raftds' /metrics (summed over the three nodes) among the scheduler's
# (rounds, ranges processed, log writes and their seconds, carried rounds,
# prefetch and apply reads, skipped and deferred ticks, heartbeats sent and skipped,
# proposals) and the bus calls
# (counts and seconds by method), and the CPU each kind of process of the
# cluster (raftd, stored, ...; summed over the nodes) spent per put. With PROFILE_SECONDS, the CPU profiles
# of each raftd and each stored for that many seconds from the start of
# the timed puts go to PROFILE_DIR (default .), as
# raftd-cpu-<ranges>-<clients>-<node>.pb.gz and stored-cpu-....pb.gz.
# Needs `make build` first (BIN overrides ./bin; PORT_OFFSET the cluster's
# ports, default 3600).
#
#   scripts/raftd-counts.sh RANGES CLIENTS CONNS TOTAL
#   PROFILE_SECONDS=5 scripts/raftd-counts.sh 16 64 16 30000
. "$(dirname "$0")/lib.sh"
if [ $# -ne 4 ]; then
  echo "usage: $0 RANGES CLIENTS CONNS TOTAL" >&2
  exit 2
fi
for n in "$@"; do
  if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 RANGES CLIENTS CONNS TOTAL  (positive numbers)" >&2
    exit 2
  fi
done
ranges=$1 clients=$2 conns=$3 total=$4
bin=${BIN:-$ROOT/bin}
off=${PORT_OFFSET:-3600}
prof=${PROFILE_SECONDS:-0}
pdir=${PROFILE_DIR:-.}
dir=$(mktemp -d)
dev=
trap '[ -z "$dev" ] || { kill -TERM "$dev" 2>/dev/null; wait "$dev" 2>/dev/null; }; rm -rf "$dir"' EXIT
start_dev "$bin" "$dir" "$off" "$ranges"
bench=(bench kv "${cli[@]}" --conns "$conns" --clients "$clients" --val-size 256 --sequential-keys -o json)
"$bin/pleiades" "${bench[@]}" --total $((total / 4)) >/dev/null
# raftd's admin port is 7502 plus the node's offset (10 apart), stored's
# 7501.
scrape() {
  for k in 0 1 2; do curl -s "http://127.0.0.1:$((7502 + off + 10 * k))/metrics"; done |
    grep -v '^#' | awk '{ a[$1] += $2 } END { for (k in a) print k, a[k] }' | sort
}
# cpu prints each of the cluster's processes (name-pid) and the CPU
# ticks it has used.
cpu() {
  for p in "$dev" $(pgrep -P "$dev"); do
    echo "$(basename "$(readlink "/proc/$p/exe")")-$p $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)"
  done | sort
}
cpu >"$dir/c0"
scrape >"$dir/m0"
pids=
if [ "$prof" != 0 ]; then
  for k in 0 1 2; do
    curl -s -o "$pdir/raftd-cpu-$ranges-$clients-$((k + 1)).pb.gz" "http://127.0.0.1:$((7502 + off + 10 * k))/debug/pprof/profile?seconds=$prof" &
    pids="$pids $!"
    curl -s -o "$pdir/stored-cpu-$ranges-$clients-$((k + 1)).pb.gz" "http://127.0.0.1:$((7501 + off + 10 * k))/debug/pprof/profile?seconds=$prof" &
    pids="$pids $!"
  done
fi
"$bin/pleiades" "${bench[@]}" --total "$total" |
  python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.0f puts/s  p50 %.2f ms  p99 %.2f ms  errors %d" % (j["requests_per_sec"], j["p50_ms"], j["p99_ms"], j["errors"]))'
[ -z "$pids" ] || wait $pids
scrape >"$dir/m1"
cpu >"$dir/c1"
echo "per put, summed over the three raftds:"
join "$dir/m0" "$dir/m1" | awk -v n="$total" '{ d = $3 - $2
  if (d > 0 && ($1 ~ /raftd_(scheduler|log_|carried|prefetch|apply_reads|ticks_(skipped|deferred)|heartbeats|ranges_processed|proposal)/ || $1 ~ /bus_call_duration_seconds_(count|sum)/))
    printf "  %-100s %10.4f\n", $1, d / n }'
echo "CPU per put (ms), by process, summed over the nodes:"
join "$dir/c0" "$dir/c1" | awk -v n="$total" -v hz="$(getconf CLK_TCK)" '{ split($1, a, "-"); c[a[1]] += $3 - $2 }
  END { for (k in c) printf "  %-12s %8.4f\n", k, c[k] * 1000 / hz / n }' | sort
