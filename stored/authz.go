package stored

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// rules authorizes stored's protocol: the engine is for the daemons of
// its own host alone (a node certificate carrying this node's id), never
// for another node, an application or an operator; operators (admin
// certificates) may read its statistics, compact it and checkpoint it
// under the data dir. The loopback bind is a default; this is the rule.
func (s *Server) rules() bus.Rules {
	host := bus.Rule{Roles: bus.Nodes, Check: s.sameHost}
	maint := bus.Rule{Roles: bus.Nodes | bus.Admins, Check: s.sameHost}
	return bus.Rules{
		storeclient.MethodGet:             host,
		storeclient.MethodMultiGet:        host,
		storeclient.MethodScan:            host,
		storeclient.MethodWrite:           host,
		storeclient.MethodOpenSnapshot:    host,
		storeclient.MethodReleaseSnapshot: host,
		storeclient.MethodIngestRange:     host,
		storeclient.MethodStreamRange:     host,
		storeclient.MethodApproximateSize: maint,
		storeclient.MethodCompact:         maint,
		storeclient.MethodCheckpoint:      maint,
		storeclient.MethodStats:           maint,
		storeclient.MethodWatchDisk:       maint,
	}
}

// sameHost refuses node certificates of other nodes.
func (s *Server) sameHost(peer bus.Peer, _ proto.Message) error {
	if peer.Role.Kind == tlsutil.KindNode && peer.Role.NodeID != s.nodeID {
		return fmt.Errorf("stored serves the daemons of node %d only", s.nodeID)
	}
	return nil
}
