package workflowd_test

import (
	"testing"

	"github.com/pleiades-db/pleiades/shared/bus/bustest"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/wire"
	"github.com/pleiades-db/pleiades/workflowd"
)

// TestAuthorizationTable calls every method workflowd registers with
// each role.
func TestAuthorizationTable(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, workflowd.Name, daemontest.CA(t), daemontest.Common(t))
	cfg := workflowd.DefaultConfig()
	cfg.RaftAddrs, cfg.NodeID = []string{"127.0.0.1:1"}, rt.NodeID
	if _, err := workflowd.New(cfg, workflowd.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin}); err != nil {
		t.Fatal(err)
	}
	all := bustest.Want{Allow: []string{bustest.Node, bustest.OtherNode, bustest.Client, bustest.Admin}}
	operators := bustest.Want{Allow: []string{bustest.Node, bustest.OtherNode, bustest.Admin}}
	bustest.CheckRules(t, rt.Bus, wire.ProtoWorkflow, rt.NodeID, map[string]bustest.Want{
		"Define": all, "Definitions": all, "Start": all, "Get": all, "List": all,
		"Suspend": all, "Resume": all, "Terminate": all, "PublishEvent": all, "Subscribe": all,
		"Decommission": operators, "Nodes": operators,
	})
}
