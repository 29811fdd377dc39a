package gossipd

import (
	"github.com/pleiades-db/pleiades/gossipd/internal/swim"
)

// The protocol's timers and the membership table's entries are part of
// the Server's API (Config.Protocol, Server.Members); the SWIM engine
// itself stays internal. Tools that run the engine over a network of their
// own (the comparison with memberlist, cmd/gossipd-bench) live in this
// module.
type (
	// ProtocolConfig holds the SWIM/Lifeguard timers (Config.Protocol).
	ProtocolConfig = swim.Config
	// Member is one entry of the membership table (Server.Members).
	Member = swim.Member
)

// LANProtocol returns the LAN timers (memberlist's LAN profile).
func LANProtocol() ProtocolConfig { return swim.DefaultLANConfig() }

// WANProtocol returns the WAN timers.
func WANProtocol() ProtocolConfig { return swim.DefaultWANConfig() }

// LocalProtocol returns fast timers for a single host.
func LocalProtocol() ProtocolConfig { return swim.DefaultLocalConfig() }
