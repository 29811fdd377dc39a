// Package hlc implements hybrid logical clocks (Kulkarni et al., 2014):
// timestamps that follow physical time closely, never go backwards, and
// respect causality across nodes, in the style CockroachDB uses.
//
// A Timestamp is a wall time in nanoseconds since the Unix epoch plus a
// logical counter that orders events sharing a wall time. Timestamps are
// totally ordered (Compare); their 12-byte big-endian encoding (AppendBytes,
// DecodeBytes) sorts bytewise in the same order, so they can be key
// suffixes. String and Parse use "<seconds>.<nanoseconds, 9 digits>,<logical>",
// e.g. "1700000000.000000123,4".
//
// A Clock turns a physical time source into HLC readings. Its contract for
// callers:
//
//   - On send: stamp every message that carries causality with c.Now().
//   - On receive: call c.Update(remote) with the sender's timestamp before
//     acting on the message. Update refuses (ErrRemoteAhead, clock
//     unchanged) a timestamp more than MaxOffset ahead of local physical
//     time: the sender's clock is broken, or this one is, and folding it in
//     would drag this node's clock into the future. Treat the refusal as an
//     error of the message.
//   - Never build timestamps by hand for ordering decisions; readings of one
//     Clock are strictly increasing, even when the physical clock steps
//     backwards (the clock then advances the logical counter).
//
// MaxOffset is the largest clock offset between two healthy nodes the
// cluster tolerates. It bounds leases and read uncertainty; the remote clock
// monitor of clockd takes a node whose clock drifts further out of service.
//
// A forward jump of the physical clock larger than the configured threshold
// is reported through Config.OnForwardJump (log, metric, or a fatal exit:
// the caller decides). The logical counter cannot overflow: when it would,
// the wall time advances by one nanosecond instead.
//
// The default physical time source is a WallClock: the system wall clock
// advanced by the monotonic clock between re-reads every WallResync, about
// half the cost of time.Now (a wall clock step is seen at most WallResync
// late). Clock reads it outside its lock and holds the lock only to
// compare and store; see clockd/BENCHMARKS.md for the figures.
//
// Clocks are safe for concurrent use. Time across restarts is the caller's
// business: clockd persists an upper bound of the wall time it has handed
// out and waits it out on start (see package clockd).
package hlc
