package clockd_test

import (
	"testing"

	"github.com/pleiades-db/pleiades/clockd"
	"github.com/pleiades-db/pleiades/shared/bus/bustest"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestAuthorizationTable calls every method clockd registers with each
// role.
func TestAuthorizationTable(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, clockd.Name, daemontest.CA(t), daemontest.Common(t))
	if _, err := clockd.New(clockd.DefaultConfig(), clockd.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID, Bound: &memoryBound{}}); err != nil {
		t.Fatal(err)
	}
	nodes := bustest.Want{Allow: []string{bustest.Node, bustest.OtherNode}}
	ops := bustest.Want{Allow: []string{bustest.Node, bustest.OtherNode, bustest.Admin}}
	bustest.CheckRules(t, rt.Bus, wire.ProtoClock, rt.NodeID, map[string]bustest.Want{
		"Now": nodes, "Update": nodes, "Probe": nodes, "WatchHealth": nodes, "Status": ops, "Offsets": ops,
	})
}
