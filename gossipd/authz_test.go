package gossipd_test

import (
	"testing"

	"github.com/pleiades-db/pleiades/gossipd"
	"github.com/pleiades-db/pleiades/shared/bus/bustest"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestAuthorizationTable calls every method gossipd registers (datagrams
// included) with each role.
func TestAuthorizationTable(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, gossipd.Name, daemontest.CA(t), daemontest.Common(t))
	if _, err := gossipd.New(gossipd.DefaultConfig(), gossipd.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID}); err != nil {
		t.Fatal(err)
	}
	nodes := bustest.Want{Allow: []string{bustest.Node, bustest.OtherNode}}
	ops := bustest.Want{Allow: []string{bustest.Node, bustest.OtherNode, bustest.Admin}}
	bustest.CheckRules(t, rt.Bus, wire.ProtoGossip, rt.NodeID, map[string]bustest.Want{
		"datagram": nodes, "PushPull": nodes, "Ping": nodes, "SetMetadata": nodes, "Broadcast": nodes, "Subscribe": nodes,
		"Members": ops, "Member": ops, "Coordinate": ops, "EstimateRTT": ops, "Join": ops, "Leave": ops,
	})
}
