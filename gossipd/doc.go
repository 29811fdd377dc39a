// Package gossipd is the membership daemon of Pleiades, as an importable
// server (Config, DefaultConfig, Deps, New, Server).
//
// Today the server is the operable shell every daemon shares: it runs on
// the daemon runtime (bus with the admin Status method, admin endpoint,
// metrics), validates its configuration (the gossipds to join) and reports
// readiness through the "gossipd" check once started.
//
// Still to come, in its own issue: SWIM with Lifeguard over bus datagrams,
// dissemination and push-pull anti-entropy, node metadata, Vivaldi
// coordinates, the gossip protocol for local daemons (Members, Subscribe,
// SetMetadata, Coordinate, EstimateRTT, Broadcast) and /v1/members.
package gossipd
