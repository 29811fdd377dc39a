// Package gossipclient is the typed client of gossipd's local bus API
// (protocol wire.ProtoGossip), used by raftd, clockd, msgd and workflowd to
// list members, follow membership events, publish their metadata (bus
// addresses, labels, capacity), read Vivaldi coordinates and RTT estimates,
// and broadcast cluster-wide user events.
//
// A Client wraps a *bus.Bus and one gossipd address (normally the local
// gossipd, default 127.0.0.1:7403). Every method is safe for concurrent use.
// gossipd may not be up yet when a daemon starts: callers treat errors as
// transient and retry in the background.
//
// The same method names are registered by gossipd's server; they are
// exported here so both sides agree.
package gossipclient
