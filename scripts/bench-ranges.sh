#!/usr/bin/env bash
# Range benchmarks on fresh local clusters (`pleiades dev`, real stored and
# RocksDB on this machine's disk). Needs `make build` first (BIN overrides
# ./bin; PORT_OFFSET the dev cluster's ports, default 2100).
#
#   scripts/bench-ranges.sh add [MIB]    add a replica of one range of MIB MiB (default 1024)
#   scripts/bench-ranges.sh split [N]    N sequential puts with automatic splits off, then on
#
# PROFILE_DIR=DIR (add) saves CPU profiles of the daemons the snapshot
# passes through, taken while it streams.
# HOPS=1 (add) prints, per daemon of the leader's node and the new
# replica's, the bus calls made and handled during the learner's add
# (count, mean duration and total seconds by method, from /metrics
# before and after): the time of each hop of the snapshot's chunks.
#
# add: a 4-node cluster with one user range on 3 of them, automatic splits
# off; MIB MiB of 1 MiB values are loaded into the range (sequential keys,
# 16 clients), then a replica is added on the fourth node, timed in two
# steps: as a learner (create, conf change, snapshot streamed and
# ingested, caught up: the snapshot's part) and its promotion to voter.
# The same run then copies the leader's whole stored data dir (cp -r, then
# sync) and writes a file of the range's size (dd, fsync) on the same disk:
# the physical limit, in MB/s next to the replica add's.
#
# split: a 3-node cluster with one user range; N puts (256-byte values,
# sequential keys, 64 clients) with automatic splits off
# (--split-bytes -1), then on (--split-bytes SPLIT_MIB, default 4 MiB;
# checked every 10 s), alternating off, on, off, on (ROUNDS pairs, default 2) on fresh
# clusters; prints puts/s, p99 and the ranges at the end of each run.
. "$(dirname "$0")/lib.sh"
mode=${1:-}
bin=${BIN:-$ROOT/bin}
offset=${PORT_OFFSET:-2100}
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
trap stop_cluster EXIT

# start_cluster NODES: starts a dev cluster of NODES nodes in a new
# temporary directory (environment: the daemons' PLEIADES_* settings) and
# waits until its raftds answer; sets dir, dev and cli.
start_cluster() {
  local n=$1 addrs= b k
  dir=$(mktemp -d /tmp/bench-ranges.XXXXXX)
  "$bin/pleiades" dev --bin-dir "$bin" --nodes "$n" --data-dir "$dir" --port-offset "$offset" >"$dir/dev.log" 2>&1 &
  dev=$!
  b=$((7400 + offset))
  for k in $(seq 0 $((n - 1))); do
    addrs+="${addrs:+,}127.0.0.1:$((b + 2 + 10 * k))"
  done
  cli=(--certs-dir "$dir/node1/certs" --addr "$addrs")
  for _ in $(seq 1 240); do
    [ -f "$dir/node1/certs/ca.crt" ] && "$bin/pleiades" ranges "${cli[@]}" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "bench-ranges: the dev cluster did not come up (see $dir/dev.log)" >&2
  exit 1
}

# user_range prints the id, the replicas' node ids (comma separated) and
# the leader's raftd address of the one user range, tab separated.
user_range() {
  "$bin/pleiades" ranges "${cli[@]}" --all -o json | python3 -c '
import json, sys
rs = [r for r in json.load(sys.stdin)["ranges"] if r["range_id"] != "1"]
r = rs[-1]
print("%s\t%s\t%s" % (r["range_id"], ",".join(x["node_id"] for x in r["replicas"]), r.get("leader_addr", "")))'
}

# mbps BYTES SECONDS prints BYTES/SECONDS in MB/s (10^6 bytes).
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / s / 1e6 }'; }

# hops_scrape LEADER_DIR NODE TAG saves /metrics of the raftd and stored
# of the leader's node and node NODE in $dir/hops/ROLE-DAEMON.TAG.
hops_scrape() {
  mkdir -p "$dir/hops"
  local name url
  while read -r name url; do
    curl -s -o "$dir/hops/$name.$3" "$url"
  done < <(python3 - "$dir/cluster.json" "$1" "$2" <<'PY'
import json, sys
for n in json.load(open(sys.argv[1]))["nodes"]:
    role = "leader" if n["data_dir"] == sys.argv[2] else "new" if n["node_id"] == sys.argv[3] else ""
    if role:
        for d in ("raftd", "stored"):
            print("%s-%s http://%s/metrics" % (role, d, n["daemons"][d]["admin"]))
PY
)
}

# hops_print prints the calls made and handled between the two scrapes.
hops_print() {
  python3 - "$dir/hops" <<'PY'
import collections, os, re, sys
d = sys.argv[1]
pat = re.compile(r'^pleiades_bus_(call|handler)_duration_seconds_(sum|count)\{(.*)\} (\S+)$')
def read(path):
    m = collections.defaultdict(float)
    for line in open(path):
        g = pat.match(line.strip())
        if g:
            labels = dict(kv.split("=", 1) for kv in re.findall(r'\w+="[^"]*"', g.group(3)))
            key = (g.group(1), labels["protocol"].strip('"'), labels["method"].strip('"'))
            m[key + (g.group(2),)] = float(g.group(4))
    return m
for name in sorted({f.rsplit(".", 1)[0] for f in os.listdir(d)}):
    a, b = read(os.path.join(d, name + ".before")), read(os.path.join(d, name + ".after"))
    for k in sorted({k[:3] for k in b}):
        n = b.get(k + ("count",), 0) - a.get(k + ("count",), 0)
        s = b.get(k + ("sum",), 0) - a.get(k + ("sum",), 0)
        if n >= 10:
            print("hops: %-13s %-7s %-6s %-18s %6d calls, mean %7.2f ms, total %6.2f s" % (name, "made" if k[0] == "call" else "handled", k[1], k[2], n, 1000 * s / n, s))
PY
}

bench_add() {
  local mib=${1:-1024} id nodes leader all node t0 t1 t2 learner promote bytes ldir src
  [[ $mib =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 add [MIB]" >&2; exit 2; }
  PLEIADES_SPLIT_BYTES=-1 start_cluster 4
  "$bin/pleiades" init "${cli[@]}" --initial-ranges 1 --replicas 3 >/dev/null
  log "4 nodes, one user range on 3, load average $(cut -d' ' -f1 /proc/loadavg)"
  t0=$(now)
  "$bin/pleiades" bench kv "${cli[@]}" --conns 4 --clients 16 --total "$mib" --val-size $((1 << 20)) --sequential-keys -o json >"$dir/load.json"
  log "loaded $mib MiB in $(since "$t0")"
  sleep 2
  for _ in $(seq 1 60); do
    IFS=$'\t' read -r id nodes leader < <(user_range)
    [ -z "$leader" ] || break
    sleep 0.5
  done
  # The node without a replica, and the leader's data dir.
  IFS=$'\t' read -r node ldir < <(python3 - "$dir/cluster.json" "$nodes" "$leader" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
have = sys.argv[2].split(",")
free = next(n["node_id"] for n in c["nodes"] if n["node_id"] not in have)
port = sys.argv[3].rsplit(":", 1)[-1]
lead = next(n["data_dir"] for n in c["nodes"] if n["daemons"]["raftd"]["bus"].rsplit(":", 1)[-1] == port)
print("%s\t%s" % (free, lead))
PY
)
  bytes=$("$bin/pleiades" ranges "${cli[@]}" --all -o json | python3 -c '
import json, sys
print(next(r.get("size", 0) for r in json.load(sys.stdin)["ranges"] if r["range_id"] == sys.argv[1]))' "$id")
  log "range $id on nodes $nodes (leader $leader), $bytes bytes on disk by its leader's estimate; adding a replica on node $node"
  if [ -n "${PROFILE_DIR:-}" ]; then
    # CPU profiles (PROFILE_SECONDS, default 5) of the raftds and storeds
    # of the leader's node and the new replica's, from the learner's add.
    mkdir -p "$PROFILE_DIR"
    python3 - "$dir/cluster.json" "$ldir" "$node" "${PROFILE_SECONDS:-5}" >"$dir/profiles" <<'PY'
import json, sys
for n in json.load(open(sys.argv[1]))["nodes"]:
    role = "leader" if n["data_dir"] == sys.argv[2] else "new" if n["node_id"] == sys.argv[3] else ""
    if role:
        for d in ("raftd", "stored"):
            print("%s-%s http://%s/debug/pprof/profile?seconds=%s" % (role, d, n["daemons"][d]["admin"], sys.argv[4]))
PY
    while read -r name url; do
      curl -s -o "$PROFILE_DIR/$name.pprof" "$url" &
    done <"$dir/profiles"
  fi
  [ -z "${HOPS:-}" ] || hops_scrape "$ldir" "$node" before
  t0=$(now)
  "$bin/pleiades" range replicas add "${cli[@]}" --learner --timeout 30m "$id" "$node" >/dev/null
  t1=$(now)
  [ -z "${HOPS:-}" ] || { hops_scrape "$ldir" "$node" after; hops_print; }
  "$bin/pleiades" range replicas add "${cli[@]}" --timeout 30m "$id" "$node" >/dev/null
  t2=$(now)
  learner=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  promote=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", b - a }')
  all=$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.2f", b - a }')
  printf 'add a replica of %d MiB (%s bytes on disk): learner with snapshot %ss (%s MB/s of values), promotion %ss, in all %ss (%s MB/s)\n' \
    "$mib" "$bytes" "$learner" "$(mbps $((mib << 20)) "$learner")" "$promote" "$all" "$(mbps $((mib << 20)) "$all")"
  # The physical limit on the same disk: the leader's stored dir copied
  # (its files: both column families of the range, the raft log) and a
  # file of the range's size written with dd.
  src=$(ls -d "$ldir"/stored* 2>/dev/null | head -1)
  [ -n "$src" ] || src=$ldir
  local sz
  sz=$(du -sb "$src" | cut -f1)
  sync
  t0=$(now)
  cp -r "$src" "$dir/copy"
  sync
  t1=$(now)
  printf 'cp -r of the leader'"'"'s %s (%s bytes) and sync: %ss (%s MB/s)\n' "${src#"$dir"/}" "$sz" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')" "$(mbps "$sz" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")"
  rm -rf "$dir/copy"
  printf 'dd of %d MiB, fsync: %s\n' "$mib" "$(dd if=/dev/zero of="$dir/dd" bs=1M count="$mib" conv=fsync 2>&1 | tail -1)"
  rm -f "$dir/dd"
  stop_cluster
}

bench_split() {
  local n=${1:-200000} rounds=${ROUNDS:-2} split=${SPLIT_MIB:-4} i mode
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 split [N]" >&2; exit 2; }
  for i in $(seq 1 "$rounds"); do
    for mode in off on; do
      if [ "$mode" = off ]; then
        PLEIADES_SPLIT_BYTES=-1 start_cluster 3
      else
        PLEIADES_SPLIT_BYTES=$((split << 20)) start_cluster 3
      fi
      "$bin/pleiades" init "${cli[@]}" --initial-ranges 1 >/dev/null
      sleep 2
      printf 'splits %-3s ' "$mode"
      "$bin/pleiades" bench kv "${cli[@]}" --conns 16 --clients 64 --total "$n" --val-size 256 --sequential-keys -o json | python3 -c '
import json, sys
j = json.load(sys.stdin)
print("%8.0f puts/s  p50 %6.1f ms  p99 %6.1f ms  p99.9 %6.1f ms  errors %d" % (j["requests_per_sec"], j["p50_ms"], j["p99_ms"], j["p999_ms"], j["errors"]), end="")'
      printf '  ranges %s\n' "$("$bin/pleiades" ranges "${cli[@]}" --all -o json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["ranges"]) - 1)')"
      stop_cluster
    done
  done
}

case $mode in
add) shift; bench_add "$@" ;;
split) shift; bench_split "$@" ;;
*) echo "usage: $0 add [MIB] | split [N]" >&2; exit 2 ;;
esac
