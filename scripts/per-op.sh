#!/usr/bin/env bash
# Runs a command and prints what the whole machine spent per operation
# while it ran: UDP datagrams sent, context switches and CPU time, read
# from /proc/net/snmp and /proc/stat before and after. N is the number of
# operations the command performs. Other load on the machine counts too:
# run it on a quiet machine, and alternate the things you compare.
#
#   scripts/per-op.sh N command [args...]
#   scripts/per-op.sh 20000 bin/pleiades bench kv --conns 16 --clients 64 --total 20000 ...
. "$(dirname "$0")/lib.sh"
if [ $# -lt 2 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N command [args...]  (N: operations the command performs)" >&2
  exit 2
fi
n=$1
shift
d0=$(udp_datagrams) c0=$(ctx_switches) t0=$(cpu_ticks)
"$@"
d1=$(udp_datagrams) c1=$(ctx_switches) t1=$(cpu_ticks)
hz=$(getconf CLK_TCK)
awk -v n="$n" -v d="$((d1 - d0))" -v c="$((c1 - c0))" -v t="$((t1 - t0))" -v hz="$hz" \
  'BEGIN { printf "per op: %.2f UDP datagrams, %.1f context switches, %.3f ms CPU\n", d / n, c / n, t * 1000 / hz / n }'
