// Package supervisor runs one host's Pleiades daemons as child processes:
// the engine behind `pleiades up` and `pleiades dev`.
//
// Children start one at a time in the configured order; each must answer
// 200 on its admin /readyz before the next starts, so a daemon always finds
// the ones it depends on (stored before raftd, and so on). A child that
// exits while the supervisor runs is restarted after an exponential backoff
// (BackoffMin doubling up to BackoffMax, jittered by shared/backoff, reset
// once a run lasted StableAfter); every restart is logged and counted in
// Status. When the supervisor's context ends it stops the children in
// reverse order: SIGTERM, then SIGKILL once StopGrace has passed.
//
// No child outlives the supervisor: each runs in its own process group with
// the Linux parent-death signal set to SIGKILL, so even a supervisor killed
// with SIGKILL takes its children with it. The parent-death signal is tied
// to the thread that started the child, so each child's goroutine keeps its
// OS thread locked for as long as it manages that child.
//
// Children inherit the supervisor's environment, except NOTIFY_SOCKET:
// under a systemd Type=notify unit only the supervisor may report
// readiness, not each daemon.
//
// Status is safe to call from any goroutine; it is what /v1/daemons on the
// supervisor's admin endpoint and `pleiades status` show.
package supervisor
