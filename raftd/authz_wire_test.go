package raftd_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/bus/bustest"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestForgedRaftSender: a node certificate cannot speak for another node:
// a hello or raft batch naming another sender is refused (and counted),
// its own is served.
func TestForgedRaftSender(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rt, _ := startServer(t, ctx, daemontest.CA(t), freeAddrs(t, 1)[0], nil)
	addr := rt.Bus.Addr().String()
	attacker := daemontest.NewRuntime(t, "raftd")
	victim := attacker.NodeID + 1

	// Its own hello is served (once the replicas are loaded).
	eventually.NoError(t, 10*time.Second, "own hello", func() error {
		return attacker.Bus.Call(ctx, addr, wire.ProtoRaft, "Hello", &raftmsgpb.HelloRequest{NodeId: attacker.NodeID, Addr: attacker.Bus.Addr().String()}, &raftmsgpb.HelloResponse{})
	})
	err := attacker.Bus.Call(ctx, addr, wire.ProtoRaft, "Hello", &raftmsgpb.HelloRequest{NodeId: victim, Addr: "192.0.2.1:7402"}, &raftmsgpb.HelloResponse{})
	if !errors.Is(err, bus.ErrPermissionDenied) {
		t.Fatalf("hello for node %d from node %d: %v; want PermissionDenied", victim, attacker.NodeID, err)
	}

	before := bustest.Denied(t, rt.Registry, "raft", "Raft", "node")
	if err := attacker.Bus.SendBatch(ctx, addr, wire.ProtoRaft, "Raft", &raftmsgpb.MessageBatch{FromNode: victim, ToNode: rt.NodeID, FromAddr: "192.0.2.1:7402"}); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "forged batch refused", func() bool {
		return bustest.Denied(t, rt.Registry, "raft", "Raft", "node") > before
	})
	// A genuine batch is not refused.
	refused := bustest.Denied(t, rt.Registry, "raft", "Raft", "node")
	if err := attacker.Bus.SendBatch(ctx, addr, wire.ProtoRaft, "Raft", &raftmsgpb.MessageBatch{FromNode: attacker.NodeID, ToNode: rt.NodeID}); err != nil {
		t.Fatal(err)
	}
	if err := attacker.Bus.Call(ctx, addr, wire.ProtoRaft, "Hello", &raftmsgpb.HelloRequest{NodeId: attacker.NodeID, Addr: attacker.Bus.Addr().String()}, &raftmsgpb.HelloResponse{}); err != nil {
		t.Fatal(err) // after the batch on the same connection: it was handled
	}
	if got := bustest.Denied(t, rt.Registry, "raft", "Raft", "node"); got != refused {
		t.Errorf("a batch from its own sender was refused (%v refusals, %v before)", got, refused)
	}
}

// TestPrefixClientOverTheWire: a client certificate limited to "app/"
// writes under it, and is refused outside it and on raft traffic.
func TestPrefixClientOverTheWire(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rt, _ := startServer(t, ctx, daemontest.CA(t), freeAddrs(t, 1)[0], nil)
	addr := rt.Bus.Addr().String()
	tc, err := daemontest.CA(t).Issue("app", tlsutil.ClientRole([]byte("app/")))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tc}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer cli.Stop(context.Background())

	for _, tt := range []struct {
		p      wire.Protocol
		method string
		req    any
		denied bool
	}{
		{wire.ProtoKV, "Put", &kvpb.PutRequest{Key: []byte("other/k"), Value: []byte("v")}, true},
		{wire.ProtoKV, "DeleteRange", &kvpb.DeleteRangeRequest{Start: []byte("app/"), End: []byte("b")}, true},
		{wire.ProtoKV, "Put", &kvpb.PutRequest{Key: []byte("app/k"), Header: &kvpb.Header{System: true}}, true},
		{wire.ProtoKV, "Init", &kvpb.InitRequest{}, true},
		{wire.ProtoRaft, "Hello", &raftmsgpb.HelloRequest{}, true},
		{wire.ProtoKV, "Put", &kvpb.PutRequest{Key: []byte("app/k"), Value: []byte("v")}, false},
	} {
		var err error
		switch r := tt.req.(type) {
		case *kvpb.PutRequest:
			err = cli.Call(ctx, addr, tt.p, tt.method, r, &kvpb.PutResponse{})
		case *kvpb.DeleteRangeRequest:
			err = cli.Call(ctx, addr, tt.p, tt.method, r, &kvpb.DeleteRangeResponse{})
		case *kvpb.InitRequest:
			err = cli.Call(ctx, addr, tt.p, tt.method, r, &kvpb.InitResponse{})
		case *raftmsgpb.HelloRequest:
			err = cli.Call(ctx, addr, tt.p, tt.method, r, &raftmsgpb.HelloResponse{})
		}
		if got := errors.Is(err, bus.ErrPermissionDenied); got != tt.denied {
			t.Errorf("%s/%s %v: %v; want denied=%v", tt.p, tt.method, tt.req, err, tt.denied)
		}
	}
}
