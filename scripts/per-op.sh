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
dgrams() { awk '/^Udp:/ { if (hdr) { print $5 } else { hdr = 1 } }' /proc/net/snmp; }
switches() { awk '/^ctxt/ { print $2 }' /proc/stat; }
ticks() { awk '/^cpu / { print $2 + $3 + $4 + $6 + $7 + $8 }' /proc/stat; }
d0=$(dgrams) c0=$(switches) t0=$(ticks)
"$@"
d1=$(dgrams) c1=$(switches) t1=$(ticks)
hz=$(getconf CLK_TCK)
awk -v n="$n" -v d="$((d1 - d0))" -v c="$((c1 - c0))" -v t="$((t1 - t0))" -v hz="$hz" \
  'BEGIN { printf "per op: %.2f UDP datagrams, %.1f context switches, %.3f ms CPU\n", d / n, c / n, t * 1000 / hz / n }'
