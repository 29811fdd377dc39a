#!/usr/bin/env bash
# The full-disk suite: every test that fills a real (tmpfs) filesystem or a
# simulated one, including the e2e variant behind the fulldisk build tag
# (faults while a follower's disk is full: SIGKILL, SIGSTOP, catch-up by
# snapshot). Mounting needs root; without it the tmpfs tests skip and say
# so.
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
log "stored and raftd on a full disk"
go test -race -count=1 -run 'Disk|Decide|Admit|AutoSizes|RestartOnFull' ./stored/... ./raftd/internal/multiraft/
log "e2e: real processes on a full disk (tag fulldisk)"
go test -count=1 -tags fulldisk -run 'TestDiskFull' -v ./deploy/e2e/ 2>&1 | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|fulldisk_|panic'
