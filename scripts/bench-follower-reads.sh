#!/usr/bin/env bash
# Follower reads against leader reads on a 3-node dev cluster (1 user range):
# the bounded-staleness gets go to a follower's node first.
set -u
bin=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin}
dir=$(mktemp -d)
offset=${OFFSET:-3500}
"$bin/pleiades" dev --bin-dir "$bin" --nodes 3 --data-dir "$dir" --port-offset "$offset" >"$dir/dev.log" 2>&1 &
dev=$!
trap 'kill -TERM $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$dir"' EXIT
b=$((7400 + offset))
a1=127.0.0.1:$((b + 2)) a2=127.0.0.1:$((b + 12)) a3=127.0.0.1:$((b + 22))
cli=(--certs-dir "$dir/node1/certs")
for _ in $(seq 1 120); do
  [ -f "$dir/node1/certs/ca.crt" ] && "$bin/pleiades" ranges "${cli[@]}" --addr "$a1" >/dev/null 2>&1 && break
  sleep 0.5
done
"$bin/pleiades" init "${cli[@]}" --addr "$a1,$a2,$a3" --initial-ranges 1 >/dev/null
sleep 3
"$bin/pleiades" kv put "${cli[@]}" --addr "$a1,$a2,$a3" key value >/dev/null
# the user range's leader: the node whose ranges lists range 2 as leader
leader=
for a in $a1 $a2 $a3; do
  if "$bin/pleiades" ranges "${cli[@]}" --addr "$a" -o json 2>/dev/null | python3 -c '
import json,sys
j=json.load(sys.stdin)
reps=j.get("replicas") or j.get("Replicas") or []
ok=any(str(r.get("range_id"))=="2" and "leader" in str(r.get("raft_state","")).lower() for r in reps)
sys.exit(0 if ok else 1)'; then leader=$a; fi
done
echo "leader of the user range: ${leader:-unknown}; load average $(cut -d' ' -f1 /proc/loadavg)"
follower=$a2; [ "$leader" = "$a2" ] && follower=$a3
for i in 1 2; do
  for w in "linearizable get (leader)|--addr $leader,$a1,$a2,$a3" "max-staleness 5s get, follower first|--addr $follower,$leader --max-staleness 5s" "max-staleness 5s get, leader first|--addr $leader,$follower --max-staleness 5s"; do
    name=${w%%|*}; args=${w#*|}
    printf '%-42s ' "$name"
    "$bin/pleiades" bench kv "${cli[@]}" $args --op get --conns 16 --clients 64 --total 50000 -o json | python3 -c '
import json,sys; j=json.load(sys.stdin); print("%8.0f/s  p50 %5.2f ms  p99 %5.2f ms  errors %d" % (j["requests_per_sec"], j["p50_ms"], j["p99_ms"], j["errors"]))'
  done
  printf '%-42s ' "max-staleness 5s get, 1 client, follower"
  "$bin/pleiades" bench kv "${cli[@]}" --addr "$follower,$leader" --max-staleness 5s --op get --conns 1 --clients 1 --total 5000 -o json | python3 -c '
import json,sys; j=json.load(sys.stdin); print("%8.0f/s  p50 %5.2f ms  p99 %5.2f ms  errors %d" % (j["requests_per_sec"], j["p50_ms"], j["p99_ms"], j["errors"]))'
  printf '%-42s ' "linearizable get, 1 client, leader"
  "$bin/pleiades" bench kv "${cli[@]}" --addr "$leader,$follower" --op get --conns 1 --clients 1 --total 5000 -o json | python3 -c '
import json,sys; j=json.load(sys.stdin); print("%8.0f/s  p50 %5.2f ms  p99 %5.2f ms  errors %d" % (j["requests_per_sec"], j["p50_ms"], j["p99_ms"], j["errors"]))'
done
curl -s "http://127.0.0.1:$((7500 + offset + 2))/metrics" 2>/dev/null | grep closed_reads || true
