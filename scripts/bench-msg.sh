#!/usr/bin/env bash
# Runs `pleiades bench msg` against a fresh local cluster: starts
# `pleiades dev --nodes 3` in a temporary directory, waits for node 3's
# msgd (the last daemon started) to be ready, then measures pub/sub of
# 128 B messages from node 1's msgd to node 2's (across a route) against
# a plain nats-server and two routed ones (rounds alternated), and
# JetStream R3 acknowledged publishes; then stops the cluster. Needs
# `make build` first (BIN overrides ./bin; PORT_OFFSET the ports, default
# 6200). Extra arguments go to `pleiades bench msg`.
#
#   scripts/bench-msg.sh [--rounds 5] [--count 1000000] [-o json]
. "$(dirname "$0")/lib.sh"
bin=${BIN:-$ROOT/bin}
offset=${PORT_OFFSET:-6200}
dir=$(mktemp -d)
"$bin/pleiades" dev --bin-dir "$bin" --nodes 3 --data-dir "$dir" --port-offset "$offset" >"$dir/dev.log" 2>&1 &
dev=$!
cleanup() { kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$((7526 + offset))/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
log "3 nodes, load average $(cut -d' ' -f1 /proc/loadavg)"
"$bin/pleiades" bench msg --pub-url "nats://127.0.0.1:$((4222 + offset))" --sub-url "nats://127.0.0.1:$((4232 + offset))" "$@"
