package gossipd

import (
	"github.com/pleiades-db/pleiades/gossipd/internal/swim"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// The protocol engine without the bus, for tools that run members over a
// network of their own (the comparison benchmark in services runs many in
// one process over an in-memory network with injected loss and stalls).
// The Server wires the same engine to the bus.
type (
	// Engine runs SWIM with Lifeguard for one member (see swim.Engine).
	Engine = swim.Engine
	// EngineDeps are an engine's clock, transport, seed and event hooks.
	EngineDeps = swim.EngineDeps
	// Transport carries an engine's datagrams, push-pulls and stream pings.
	Transport = swim.Transport
	// Clock is an engine's time source.
	Clock = swim.Clock
	// Member is one entry of an engine's membership table.
	Member = swim.Member
	// Event is a membership change.
	Event = swim.Event
	// ProtocolConfig holds the SWIM/Lifeguard timers (Config.Protocol).
	ProtocolConfig = swim.Config
)

// NewEngine returns an unstarted engine for node id reachable at addr.
func NewEngine(cfg ProtocolConfig, cluster string, id uint64, addr string, md *gossippb.Metadata, deps EngineDeps) (*Engine, error) {
	return swim.NewEngine(cfg, cluster, id, addr, md, deps)
}

// LANProtocol returns the LAN timers (memberlist's LAN profile).
func LANProtocol() ProtocolConfig { return swim.DefaultLANConfig() }

// WANProtocol returns the WAN timers.
func WANProtocol() ProtocolConfig { return swim.DefaultWANConfig() }

// LocalProtocol returns fast timers for a single host.
func LocalProtocol() ProtocolConfig { return swim.DefaultLocalConfig() }

// RealClock returns the wall clock as an engine Clock.
func RealClock() Clock { return realClock{} }
