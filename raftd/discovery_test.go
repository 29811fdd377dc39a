package raftd_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// fakeMembership is one membership table served by a fake gossipd per
// node: each node's endpoint answers Members (self = that node), merges
// SetMetadata into that node's member and streams an event to every
// subscriber on each change, as gossipd's local API does.
type fakeMembership struct {
	mu      sync.Mutex
	members map[uint64]*gossippb.Member
	subs    map[chan struct{}]bool
}

func newFakeMembership() *fakeMembership {
	return &fakeMembership{members: map[uint64]*gossippb.Member{}, subs: map[chan struct{}]bool{}}
}

// changed wakes every subscriber; the caller holds mu.
func (f *fakeMembership) changed() {
	for c := range f.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// setState sets node's member state.
func (f *fakeMembership) setState(node uint64, st gossippb.MemberState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members[node].State = st
	f.changed()
}

// serve starts node's gossipd endpoint and returns its bus address.
func (f *fakeMembership) serve(t *testing.T, ctx context.Context, node uint64) string {
	t.Helper()
	rt := daemontest.NewUnstartedRuntime(t, "gossipd", daemontest.CA(t), daemontest.Common(t))
	f.mu.Lock()
	f.members[node] = &gossippb.Member{NodeId: node, State: gossippb.MemberState_MEMBER_STATE_ALIVE, Metadata: &gossippb.Metadata{Addresses: map[string]string{}}}
	f.changed()
	f.mu.Unlock()
	p := wire.ProtoGossip
	bus.HandleUnary(rt.Bus, p, gossipclient.MethodSetMetadata, func(ctx context.Context, r *gossippb.SetMetadataRequest) (*gossippb.SetMetadataResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		m := f.members[node]
		for k, v := range r.GetMetadata().GetAddresses() {
			m.Metadata.Addresses[k] = v
		}
		f.changed()
		return &gossippb.SetMetadataResponse{Metadata: m.Metadata}, nil
	})
	bus.HandleUnary(rt.Bus, p, gossipclient.MethodMembers, func(ctx context.Context, r *gossippb.MembersRequest) (*gossippb.MembersResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		resp := &gossippb.MembersResponse{SelfId: node}
		for _, m := range f.members {
			resp.Members = append(resp.Members, &gossippb.Member{NodeId: m.NodeId, State: m.State,
				Metadata: &gossippb.Metadata{Addresses: map[string]string{raftd.MetadataKey: m.Metadata.Addresses[raftd.MetadataKey]}}})
		}
		return resp, nil
	})
	bus.HandleStream(rt.Bus, p, gossipclient.MethodSubscribe, func(ctx context.Context, r *gossippb.SubscribeRequest, send func(*gossippb.Event) error) error {
		c := make(chan struct{}, 1)
		f.mu.Lock()
		f.subs[c] = true
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			delete(f.subs, c)
			f.mu.Unlock()
		}()
		for {
			select {
			case <-c:
				if err := send(&gossippb.Event{Type: gossippb.EventType_EVENT_TYPE_UPDATE}); err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return rt.Bus.Addr().String()
}

// gossipNode is one raftd of TestPeersFromGossip.
type gossipNode struct {
	id     uint64
	gossip string
	eng    storage.Engine
	rt     *daemon.Runtime
	srv    *raftd.Server
}

// start runs the node's raftd on a fresh bus address, knowing no peer:
// it learns them from its gossipd.
func (n *gossipNode) start(t *testing.T, ctx context.Context, ca daemontest.Issuer) {
	t.Helper()
	common := daemontest.Common(t)
	common.NodeID = n.id
	n.rt, n.srv = startServerCommon(t, ctx, ca, common, nil, n.eng, false, func(c *raftd.Config) { c.GossipAddr = n.gossip })
	select {
	case <-n.srv.Ready():
	case <-ctx.Done():
		t.Fatal("raftd not ready")
	}
}

func (n *gossipNode) addr() string { return n.rt.Bus.Addr().String() }

// TestPeersFromGossip runs three raftds without --peers: each publishes
// its address in gossip metadata and learns the others' there. An Init
// waits for min_nodes live members, then lays the ranges out over all
// three; a node that comes back at another address is found again and
// catches up; a dead member takes no part in an Init.
func TestPeersFromGossip(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	ca := daemontest.CA(t)
	f := newFakeMembership()
	nodes := make([]*gossipNode, 3)
	for i := range nodes {
		n := &gossipNode{id: uint64(101 + i), eng: storage.NewMem()}
		n.gossip = f.serve(t, ctx, n.id)
		n.start(t, ctx, ca)
		nodes[i] = n
	}
	cli := daemontest.NewRuntime(t, "client")

	// Four nodes asked for, three live: refused, nothing laid out.
	err := cli.Bus.Call(ctx, nodes[2].addr(), wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{MinNodes: 4}, &kvpb.InitResponse{})
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("Init with min_nodes 4 of 3: %v; want Unavailable", err)
	}
	if got := initialized(t, ctx, cli, []string{nodes[0].addr(), nodes[1].addr(), nodes[2].addr()}); slices.Contains(got, true) {
		t.Fatalf("initialized after a refused Init: %v", got)
	}

	// Three: the layout spans every node, though none was given a peer.
	var resp kvpb.InitResponse
	if err := retryUnavailable(ctx, func() error {
		return cli.Bus.Call(ctx, nodes[2].addr(), wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{MinNodes: 3}, &resp)
	}); err != nil {
		t.Fatalf("Init with min_nodes 3: %v", err)
	}
	for _, d := range resp.GetDescriptors() {
		var on []uint64
		for _, r := range d.GetReplicas() {
			on = append(on, r.GetNodeId())
		}
		slices.Sort(on)
		if !slices.Equal(on, []uint64{101, 102, 103}) {
			t.Errorf("range %d on nodes %v; want 101, 102, 103", d.GetRangeId(), on)
		}
	}
	addrs := func() []string { return []string{nodes[0].addr(), nodes[1].addr(), nodes[2].addr()} }
	checkServes(t, ctx, cli, addrs())

	// Node 3 comes back at another address, keeping its data.
	old := nodes[2].addr()
	stopCtx, stopCancel := context.WithTimeout(ctx, 10*time.Second)
	if err := nodes[2].srv.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if err := nodes[2].rt.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	stopCancel()
	nodes[2].start(t, ctx, ca)
	if nodes[2].addr() == old {
		t.Fatalf("node 3 restarted on its old address %s", old)
	}
	// A write through node 1 reaches node 3 at its new address: a stale
	// read there (its own applied state) sees it.
	if err := retryUnavailable(ctx, func() error {
		return cli.Bus.Call(ctx, nodes[0].addr(), wire.ProtoKV, "Put", &kvpb.PutRequest{Key: []byte("moved"), Value: []byte("found")}, &kvpb.PutResponse{})
	}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	stale := &kvpb.Header{ReadConsistency: kvpb.ReadConsistency_READ_CONSISTENCY_STALE}
	for {
		var g kvpb.GetResponse
		err := cli.Bus.Call(ctx, nodes[2].addr(), wire.ProtoKV, "Get", &kvpb.GetRequest{Header: stale, Key: []byte("moved")}, &g)
		if err == nil && string(g.GetValue().GetValue()) == "found" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("node 3 at its new address never applied the write: %v, %v", &g, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	checkServes(t, ctx, cli, addrs())
}

// TestInitSkipsDeadMembers: a member gossip no longer lists as alive is
// no peer of an Init, and one alive member whose raftd does not answer
// makes the Init unavailable (every live node must take part).
func TestInitSkipsDeadMembers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	ca := daemontest.CA(t)
	f := newFakeMembership()
	var nodes []*gossipNode
	for i := range 2 {
		n := &gossipNode{id: uint64(201 + i), eng: storage.NewMem()}
		n.gossip = f.serve(t, ctx, n.id)
		n.start(t, ctx, ca)
		nodes = append(nodes, n)
	}
	// A third member publishes a raftd that does not answer.
	f.serve(t, ctx, 203)
	f.mu.Lock()
	f.members[203].Metadata.Addresses[raftd.MetadataKey] = freeAddrs(t, 1)[0]
	f.changed()
	f.mu.Unlock()
	cli := daemontest.NewRuntime(t, "client")
	// min_nodes 3 keeps the Init from laying out over 201 and 202 before
	// they learn of member 203; once they have, it is refused because
	// 203's raftd does not answer.
	for {
		ictx, icancel := context.WithTimeout(ctx, 5*time.Second)
		err := cli.Bus.Call(ictx, nodes[0].addr(), wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{MinNodes: 3}, &kvpb.InitResponse{})
		icancel()
		if !errors.Is(err, bus.ErrUnavailable) {
			t.Fatalf("Init with a member whose raftd is down: %v; want Unavailable", err)
		}
		if strings.Contains(err.Error(), "unreachable") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Init never tried member 203: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	f.setState(203, gossippb.MemberState_MEMBER_STATE_DEAD)
	var resp kvpb.InitResponse
	if err := retryUnavailable(ctx, func() error {
		return cli.Bus.Call(ctx, nodes[0].addr(), wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{}, &resp)
	}); err != nil {
		t.Fatalf("Init once member 203 is dead: %v", err)
	}
	for _, d := range resp.GetDescriptors() {
		if n := len(d.GetReplicas()); n != 2 {
			t.Errorf("range %d has %d replicas; want 2 (the dead member left out)", d.GetRangeId(), n)
		}
	}
}
