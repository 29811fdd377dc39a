package raftd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// busCluster runs n raftd servers over real buses with in-memory engines.
type busCluster struct {
	rts  []*daemon.Runtime
	srvs []*raftd.Server
	cli  *daemon.Runtime
}

func newBusCluster(t *testing.T, n int) *busCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c := &busCluster{}
	ca := daemontest.CA(t)
	addrs := freeAddrs(t, n)
	for i := range n {
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, a)
			}
		}
		rt, srv := startServer(t, ctx, ca, addrs[i], peers)
		c.rts = append(c.rts, rt)
		c.srvs = append(c.srvs, srv)
	}
	for _, srv := range c.srvs {
		select {
		case <-srv.Ready():
		case <-ctx.Done():
			t.Fatal("server not ready")
		}
	}
	c.cli = daemontest.NewRuntime(t, "client")
	return c
}

// freeAddrs returns n free loopback UDP addresses.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, pc.LocalAddr().String())
		pc.Close()
	}
	return addrs
}

// startServer runs one raftd with an in-memory engine on addr.
func startServer(t *testing.T, ctx context.Context, ca daemontest.Issuer, addr string, peers []string) (*daemon.Runtime, *raftd.Server) {
	t.Helper()
	return startServerWith(t, ctx, ca, addr, peers, storage.NewMem(), true)
}

// startServerWith runs one raftd on eng; adopt false stops it adopting a
// peer's layout in the background (only Init bootstraps it).
func startServerWith(t *testing.T, ctx context.Context, ca daemontest.Issuer, addr string, peers []string, eng storage.Engine, adopt bool, opts ...func(*raftd.Config)) (*daemon.Runtime, *raftd.Server) {
	t.Helper()
	common := daemontest.Common(t)
	common.BusAddr = addr
	return startServerCommon(t, ctx, ca, common, peers, eng, adopt, opts...)
}

// startServerCommon is startServerWith with the daemon's common config.
func startServerCommon(t *testing.T, ctx context.Context, ca daemontest.Issuer, common config.Common, peers []string, eng storage.Engine, adopt bool, opts ...func(*raftd.Config)) (*daemon.Runtime, *raftd.Server) {
	t.Helper()
	rt := daemontest.NewUnstartedRuntime(t, raftd.Name, ca, common)
	cfg := raftd.DefaultConfig()
	cfg.StoredAddr, cfg.GossipAddr = "", ""
	cfg.TickInterval = 20 * time.Millisecond
	cfg.Peers = peers
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := raftd.New(cfg, raftd.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID, Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	raftd.SetBackgroundAdopt(srv, adopt)
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	return rt, srv
}

// TestLateNodeAdoptsLayout initializes a two-node cluster, then starts a
// third node pointed at it: it adopts the cluster's layout from a peer
// and serves KV requests by forwarding (it holds no replica).
func TestLateNodeAdoptsLayout(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ca := daemontest.CA(t)
	addrs := freeAddrs(t, 3)
	_, _ = startServer(t, ctx, ca, addrs[0], []string{addrs[1]})
	_, _ = startServer(t, ctx, ca, addrs[1], []string{addrs[0]})
	cli := daemontest.NewRuntime(t, "client")
	retry := func(f func() error) error {
		for {
			err := f()
			if err == nil || !(errors.Is(err, bus.ErrUnavailable) || errors.Is(err, bus.ErrNotLeader)) || ctx.Err() != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := retry(func() error {
		return cli.Bus.Call(ctx, addrs[0], wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{}, &kvpb.InitResponse{})
	}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if err := retry(func() error {
		return cli.Bus.Call(ctx, addrs[0], wire.ProtoKV, "Put", &kvpb.PutRequest{Key: []byte("k"), Value: []byte("v")}, &kvpb.PutResponse{})
	}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	_, _ = startServer(t, ctx, ca, addrs[2], addrs[:2])
	var resp kvpb.GetResponse
	if err := retry(func() error {
		return cli.Bus.Call(ctx, addrs[2], wire.ProtoKV, "Get", &kvpb.GetRequest{Key: []byte("k")}, &resp)
	}); err != nil || string(resp.GetValue().GetValue()) != "v" {
		t.Fatalf("Get on the late node = %v, %v; want v", &resp, err)
	}
	var again kvpb.InitResponse
	if err := cli.Bus.Call(ctx, addrs[2], wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{}, &again); err != nil || !again.GetAlreadyInitialized() {
		t.Errorf("Init on the late node = %v, %v; want already initialized", &again, err)
	}
}

func TestBusClusterInitAndKV(t *testing.T) {
	c := newBusCluster(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	addr := func(i int) string { return c.rts[i].Bus.Addr().String() }
	var initResp kvpb.InitResponse
	// Peers may still be exchanging addresses: retry while unavailable.
	for {
		err := c.cli.Bus.Call(ctx, addr(0), wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("m")}}, &initResp)
		if err == nil {
			break
		}
		if !errors.Is(err, bus.ErrUnavailable) || ctx.Err() != nil {
			t.Fatalf("Init: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if initResp.GetAlreadyInitialized() || len(initResp.GetDescriptors()) != 3 {
		t.Fatalf("Init = %v; want 3 new descriptors (meta + 2)", &initResp)
	}
	// Init again, on another node: idempotent.
	var again kvpb.InitResponse
	if err := c.cli.Bus.Call(ctx, addr(1), wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{}, &again); err != nil || !again.GetAlreadyInitialized() || len(again.GetDescriptors()) != 3 {
		t.Fatalf("second Init = %v, %v; want already initialized with 3 descriptors", &again, err)
	}
	retry := func(f func() error) error {
		for {
			err := f()
			if err == nil || !(errors.Is(err, bus.ErrUnavailable) || errors.Is(err, bus.ErrNotLeader)) || ctx.Err() != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i, k := range []string{"apple", "zebra"} {
		if err := retry(func() error {
			return c.cli.Bus.Call(ctx, addr(i), wire.ProtoKV, "Put", &kvpb.PutRequest{Key: []byte(k), Value: []byte("v-" + k)}, &kvpb.PutResponse{})
		}); err != nil {
			t.Fatalf("Put %s: %v", k, err)
		}
	}
	for i := range c.rts {
		var resp kvpb.GetResponse
		if err := retry(func() error {
			return c.cli.Bus.Call(ctx, addr(i), wire.ProtoKV, "Get", &kvpb.GetRequest{Key: []byte("zebra")}, &resp)
		}); err != nil || string(resp.GetValue().GetValue()) != "v-zebra" {
			t.Errorf("node %d Get(zebra) = %v, %v", i, &resp, err)
		}
	}
	var scan kvpb.ScanResponse
	if err := retry(func() error {
		return c.cli.Bus.Call(ctx, addr(2), wire.ProtoKV, "Scan", &kvpb.ScanRequest{}, &scan)
	}); err != nil || len(scan.GetKvs()) != 2 {
		t.Errorf("Scan = %v, %v; want 2 keys", &scan, err)
	}
	var desc kvpb.DescriptorsResponse
	if err := c.cli.Bus.Call(ctx, addr(2), wire.ProtoKV, "Descriptors", &kvpb.DescriptorsRequest{Start: []byte("a"), End: []byte("b")}, &desc); err != nil || len(desc.GetDescriptors()) != 1 {
		t.Errorf("Descriptors = %v, %v; want the one range holding [a, b)", &desc, err)
	}
	// /v1/ranges lists the node's replicas.
	resp, err := http.Get("http://" + c.rts[0].Admin.Addr().String() + "/v1/ranges")
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		NodeID   string            `json:"nodeId"`
		Replicas []json.RawMessage `json:"replicas"`
	}
	err = json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if err != nil || len(view.Replicas) != 3 || view.NodeID != fmt.Sprint(c.rts[0].NodeID) {
		t.Errorf("/v1/ranges = %+v, %v; want 3 replicas of node %d", view, err, c.rts[0].NodeID)
	}
}
