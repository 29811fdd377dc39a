// Package clockd is the clock daemon of Pleiades, as an importable server
// (Config, DefaultConfig, Deps, New, Server): the node's hybrid logical
// clock authority.
//
// # Bus API (wire.ProtoClock; typed client in shared/clockclient)
//
//   - Now: a fresh reading, strictly after every earlier one.
//   - Update: fold in an observed timestamp; a negative timestamp, or one
//     more than MaxOffset ahead of clockd's physical time, is refused with
//     InvalidArgument and leaves the clock unchanged.
//   - Status: a reading, MaxOffset, the persisted bound, serving, health.
//   - WatchHealth: server stream of health verdicts, the current one first.
//   - Probe: the responder half of the four-timestamp offset exchange.
//   - Offsets: the remote clock monitor's per-peer estimates.
//
// Now and Update answer Unavailable until the server serves (see below).
//
// # Monotonic across restarts
//
// clockd persists a wall-time upper bound: a wall time above every
// timestamp it has handed out, kept BoundWindow ahead of the clock and
// renewed before it is reached (a timestamp at or beyond the bound is not
// handed out until a higher bound is saved; if saving fails the call
// answers Unavailable). On start it loads the bound and waits until
// physical time has passed it before serving, with the "clockd" ready
// check failing meanwhile; so a restart, even onto a clock that was set
// back, never hands out a timestamp below one handed out before. The
// bound's home is the `local` column family of the node's stored, key
// BoundKey ("clockd/wall-bound", 8 big-endian bytes), written with a
// synced batch through shared/storeclient (StoreBound); while stored is
// unreachable at start clockd retries and does not serve. Only when no
// stored address is configured (--stored-addr "") does the daemon keep the
// bound in <data-dir>/clockd/wall-bound (FileBound) instead. With stored,
// a bound file left by an earlier run without it is still read at start
// (the higher of the two is waited out); it is no longer written.
//
// # Remote clock monitor
//
// Every ProbeInterval clockd probes each peer clockd with a
// four-timestamp exchange. The peers come from gossipd's membership when
// gossipd runs (Config.GossipAddr): clockd publishes its bus address in
// the node's gossip metadata under MetadataKey ("clockd"), subscribes to
// membership events, and on each event (and every 10 probe intervals)
// re-reads the members and probes the clockd address of every alive or
// suspect member but itself. Before gossipd first answers, and always
// without a gossip address, it probes Config.Peers (--peers; the node's
// own address may be listed, it is recognised by node id). If gossipd
// goes away later, the peers last learned stay in use while clockd
// reconnects (and re-publishes its address). Per peer clockd keeps the
// offset estimate, the round trip and the uncertainty (RTT/2 plus ReadError). A peer is far
// when its offset exceeds OffsetFraction*MaxOffset even after granting it
// its uncertainty; the node is unhealthy when a strict majority of the
// peers probed successfully within the last three intervals are far. A
// node whose clock alone is skewed sees every peer far and flags itself;
// each healthy node sees one far peer out of at least two, a minority, and
// stays healthy. (With two nodes a skew flags both; with no reachable peer
// the node stays healthy.) An unhealthy node fails its ready check, sends
// the verdict on WatchHealth and, with FatalOnUnhealthy, reports a fatal
// error on Err so the daemon exits non-zero. /v1/offsets on the admin
// endpoint shows the estimates as JSON.
//
// # Keeping another daemon's clock causally ahead of clockd
//
// Daemons do not call clockd for every timestamp: each keeps its own
// hlc.Clock (same MaxOffset) and follows the hlc contract for its own
// messages. To stay causally ahead of everything clockd has handed out, a
// daemon folds clockd's readings into its clock: at start, before it hands
// out any timestamp, it calls clockclient.Now and passes the result to
// hlc.Clock.Update (and retries until clockd answers if it needs
// restart monotonicity, since its own clock keeps no bound), and whenever
// it receives a timestamp from clockd (Now, Update, Status) it folds that
// in too. Conversely, a daemon that must make clockd aware of a timestamp
// it produced calls clockclient.Update with it. Because hlc.Clock.Update
// returns a reading after both inputs, the daemon's later timestamps are
// after every clockd timestamp it has seen.
package clockd
