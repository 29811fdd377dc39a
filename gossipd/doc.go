// Package gossipd is the membership daemon of Pleiades, as an importable
// server (Config, DefaultConfig, Deps, New, Server).
//
// The server runs SWIM with Lifeguard (gossipd/internal/swim) over the bus:
// probes, acks, nacks, indirect probes and piggybacked broadcasts travel as
// datagrams of protocol wire.ProtoGossip (at most bus.MaxDatagramPayload
// bytes), push-pull anti-entropy and join as unary calls ("PushPull"), and
// the stream fallback probe as a unary call ("Ping").
// Each ack carries the responder's Vivaldi coordinate
// (gossipd/internal/vivaldi), updated from probe round trips.
//
// Local daemons use the same protocol through shared/gossipclient: Members,
// Member, Join, Leave, Subscribe (server stream of join / update / suspect /
// dead / leave / user events), SetMetadata (daemon addresses, labels,
// capacity; at most Protocol.MaxMetadataSize encoded bytes, else
// InvalidArgument), Coordinate, EstimateRTT and Broadcast. The admin
// endpoint serves /v1/members as JSON.
//
// A member is known by its advertised bus address (Config.AdvertiseAddr,
// the common --advertise-addr flag), else by the bound bus address; a bus
// on a wildcard address without an advertised one fails Start.
//
// Readiness ("gossipd" check): started, and joined when Config.Join is not
// empty (the first node is ready at once). Joining is retried every
// Config.JoinRetry until one address answers.
//
// Lock order: the engine's lock, then Server.mu. Stop stops the protocol
// without announcing a leave (call Leave first for a graceful exit).
//
// Datagrams leave through one sender goroutine per peer address, so a
// dial to a member that is gone (up to a second) delays nothing else.
// Connections come from the bus: dialed on first use, TLS sessions resumed
// per peer on a redial. BENCHMARKS.md has the comparison with
// hashicorp/memberlist (cmd/gossipd-bench, code in internal/bench; `pleiades
// bench gossip` runs it) and the QUIC cost. The SWIM engine is internal:
// the root package exports the protocol's timers (ProtocolConfig) and the
// membership entries (Member), not the engine.
//
// Not yet done: metrics, and closing idle connections (the bus's
// keep-alives hold every connection open; see BENCHMARKS.md).
package gossipd
