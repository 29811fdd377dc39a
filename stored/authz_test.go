package stored_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/bus/bustest"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/wire"
	"github.com/pleiades-db/pleiades/stored"
)

// TestAuthorizationTable calls every method stored registers with each
// role: its own node's daemons only; operators for maintenance.
func TestAuthorizationTable(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, stored.Name, daemontest.CA(t), daemontest.Common(t))
	if _, err := stored.New(testConfig(t.TempDir()), stored.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID}); err != nil {
		t.Fatal(err)
	}
	host := bustest.Want{Allow: []string{bustest.Node}}
	maint := bustest.Want{Allow: []string{bustest.Node, bustest.Admin}}
	bustest.CheckRules(t, rt.Bus, wire.ProtoStore, rt.NodeID, map[string]bustest.Want{
		"Get": host, "MultiGet": host, "Scan": host, "Write": host, "OpenSnapshot": host,
		"ReleaseSnapshot": host, "IngestRange": host, "StreamRange": host,
		"ApproximateSize": maint, "Compact": maint, "Checkpoint": maint, "Stats": maint, "WatchDisk": maint,
	})
	if _, err := stored.New(testConfig(t.TempDir()), stored.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin}); err == nil {
		t.Error("New without a node id succeeded")
	}
}

// TestOtherNodeRefused: a daemon of another node (its certificate's node
// id) cannot use this node's stored, over the wire.
func TestOtherNodeRefused(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()), nil)
	other := daemontest.NewRuntime(t, "raftd")
	c := storeclient.New(other.Bus, n.rt.Bus.Addr().String())
	if _, _, err := c.Get(ctxT(t), storeclient.Data, []byte("k")); !errors.Is(err, bus.ErrPermissionDenied) {
		t.Fatalf("Get from node %d on node %d's stored: %v; want PermissionDenied", other.NodeID, n.rt.NodeID, err)
	}
	if _, _, err := n.c.Get(ctxT(t), storeclient.Data, []byte("k")); err != nil {
		t.Fatalf("Get from its own node: %v", err)
	}
}

// TestCheckpointOnlyUnderDataDir: an absolute checkpoint directory must
// lie under stored's directory, outside its database.
func TestCheckpointOnlyUnderDataDir(t *testing.T) {
	cfg := testConfig(t.TempDir())
	n := startNode(t, cfg, nil)
	ctx := context.Background()
	outside := filepath.Join(t.TempDir(), "cp")
	for _, dir := range []string{outside, "/tmp", filepath.Join(cfg.Dir, "db", "cp"), cfg.Dir, filepath.Join(cfg.Dir, "x", "..", "..", "cp")} {
		if got, err := n.c.Checkpoint(ctx, dir); !errors.Is(err, bus.ErrInvalidArgument) {
			t.Errorf("Checkpoint(%s) = %s, %v; want InvalidArgument", dir, got, err)
		}
	}
	if _, err := os.Stat(outside); err == nil {
		t.Errorf("a checkpoint was written at %s", outside)
	}
	inside := filepath.Join(cfg.Dir, "backups", "cp1")
	if err := os.MkdirAll(filepath.Dir(inside), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := n.c.Checkpoint(ctx, inside); err != nil || got != inside {
		t.Errorf("Checkpoint(%s) = %s, %v", inside, got, err)
	}
}
