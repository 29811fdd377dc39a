package raftd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/raftd/internal/multiraft"
	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeStatusAndReady(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, raftd.Name, daemontest.CA(t), daemontest.Common(t))
	cfg := raftd.DefaultConfig()
	cfg.StoredAddr, cfg.GossipAddr = "", ""
	srv, err := raftd.New(cfg, raftd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	daemontest.CheckLifecycle(t, daemontest.Lifecycle{Runtime: rt, Service: srv, ReadyCheck: raftd.ReadyCheck,
		Admin: map[string][]string{"/v1/status": {`"clock": "` + raftd.DefaultClockAddr + `"`}}})
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*raftd.Config)
		ok   bool
	}{
		{"default", func(*raftd.Config) {}, true},
		{"bad stored", func(c *raftd.Config) { c.StoredAddr = "stored" }, false},
		{"bad peer", func(c *raftd.Config) { c.Peers = []string{"raftd:x"} }, false},
		{"no stored", func(c *raftd.Config) { c.StoredAddr = "" }, true},
		{"stored socket", func(c *raftd.Config) { c.StoredSocket = "/data/stored/stored.sock" }, true},
		{"stored socket without stored", func(c *raftd.Config) { c.StoredAddr, c.StoredSocket = "", "/data/stored/stored.sock" }, false},
		{"heartbeat above election", func(c *raftd.Config) { c.HeartbeatTicks = 10 }, false},
		{"negative tick", func(c *raftd.Config) { c.TickInterval = -1 }, false},
		{"advertise", func(c *raftd.Config) { c.AdvertiseAddr = "host1:7402" }, true},
		{"wildcard advertise", func(c *raftd.Config) { c.AdvertiseAddr = "[::]:7402" }, false},
	} {
		c := raftd.DefaultConfig()
		tt.mod(&c)
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v; want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// TestWildcardBusNeedsAdvertiseAddr: a raftd listening on a wildcard
// address could not tell other nodes where to reach it: Start refuses
// without an advertised address.
func TestWildcardBusNeedsAdvertiseAddr(t *testing.T) {
	common := daemontest.Common(t)
	common.BusAddr = "0.0.0.0:0"
	rt := daemontest.NewUnstartedRuntime(t, raftd.Name, daemontest.CA(t), common)
	cfg := raftd.DefaultConfig()
	cfg.StoredAddr, cfg.GossipAddr = "", ""
	srv, err := raftd.New(cfg, raftd.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Stop(ctx) }()
	if err := srv.Start(ctx); err == nil || !strings.Contains(err.Error(), "--advertise-addr") {
		t.Fatalf("Start on a wildcard bus = %v; want an error naming --advertise-addr", err)
	}
}

// TestCommandLimitFollowsFrameSize checks that raftd refuses a command
// that could not travel in one raft message under its bus frame limit
// (3/4 of it), with a clear error, and takes one under it.
func TestCommandLimitFollowsFrameSize(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	common := daemontest.Common(t)
	common.BusAddr = freeAddrs(t, 1)[0]
	common.MaxFrameSize = 256 << 10 // commands up to 192 KiB
	startServerCommon(t, ctx, daemontest.CA(t), common, nil, storage.NewMem(), true)
	cli := daemontest.NewRuntime(t, "client")
	if err := retryUnavailable(ctx, func() error {
		return cli.Bus.Call(ctx, common.BusAddr, wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{}, &kvpb.InitResponse{})
	}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	put := func(n int) error {
		return retryUnavailable(ctx, func() error {
			return cli.Bus.Call(ctx, common.BusAddr, wire.ProtoKV, multiraft.MethodPut, &kvpb.PutRequest{Key: []byte("k"), Value: make([]byte, n)}, &kvpb.PutResponse{})
		})
	}
	if err := put(150 << 10); err != nil {
		t.Errorf("put of 150 KiB: %v", err)
	}
	if err := put(200 << 10); !errors.Is(err, bus.ErrInvalidArgument) || !strings.Contains(err.Error(), "196608") {
		t.Errorf("put of 200 KiB under a 256 KiB frame: %v; want InvalidArgument naming the 196608-byte limit", err)
	}
}
