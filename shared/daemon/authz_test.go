package daemon_test

import (
	"testing"

	"github.com/pleiades-db/pleiades/shared/bus/bustest"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestAdminAuthorizationTable calls every method the runtime registers
// on wire.ProtoAdmin with each role.
func TestAdminAuthorizationTable(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, "d", daemontest.CA(t), daemontest.Common(t))
	bustest.CheckRules(t, rt.Bus, wire.ProtoAdmin, rt.NodeID, map[string]bustest.Want{
		"Status": {Allow: []string{bustest.Node, bustest.OtherNode, bustest.Admin}},
	})
}
