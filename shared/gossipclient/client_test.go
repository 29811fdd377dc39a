package gossipclient_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

func newBus(t *testing.T, ca *tlsutil.TestCA, name string) *bus.Bus {
	t.Helper()
	tc, err := ca.Config(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tc, DialTimeout: 2 * time.Second},
		bus.Deps{Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	})
	return b
}

// TestClientRoundTrip checks every method against a fake gossipd.
func TestClientRoundTrip(t *testing.T) {
	ca, err := tlsutil.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	srv := newBus(t, ca, "server")
	p := wire.ProtoGossip
	members := []*gossippb.Member{{NodeId: 1, State: gossippb.MemberState_MEMBER_STATE_ALIVE}, {NodeId: 2, State: gossippb.MemberState_MEMBER_STATE_SUSPECT}}
	bus.HandleUnary(srv, p, gossipclient.MethodMembers, func(ctx context.Context, r *gossippb.MembersRequest) (*gossippb.MembersResponse, error) {
		return &gossippb.MembersResponse{Members: members, SelfId: 1}, nil
	})
	bus.HandleUnary(srv, p, gossipclient.MethodMember, func(ctx context.Context, r *gossippb.MemberRequest) (*gossippb.MemberResponse, error) {
		if r.GetNodeId() == 9 {
			return nil, bus.Errorf(bus.CodeNotFound, "gossipd: member 9 not found")
		}
		return &gossippb.MemberResponse{Member: &gossippb.Member{NodeId: r.GetNodeId()}}, nil
	})
	bus.HandleUnary(srv, p, gossipclient.MethodJoin, func(ctx context.Context, r *gossippb.JoinRequest) (*gossippb.JoinResponse, error) {
		return &gossippb.JoinResponse{Joined: uint32(len(r.GetAddrs()))}, nil
	})
	bus.HandleUnary(srv, p, gossipclient.MethodEstimateRTT, func(ctx context.Context, r *gossippb.EstimateRTTRequest) (*gossippb.EstimateRTTResponse, error) {
		return &gossippb.EstimateRTTResponse{RttNanos: int64(r.GetA()+r.GetB()) * int64(time.Millisecond)}, nil
	})
	bus.HandleUnary(srv, p, gossipclient.MethodBroadcast, func(ctx context.Context, r *gossippb.BroadcastRequest) (*gossippb.BroadcastResponse, error) {
		return &gossippb.BroadcastResponse{Id: uint64(len(r.GetPayload()))}, nil
	})
	bus.HandleStream(srv, p, gossipclient.MethodSubscribe, func(ctx context.Context, r *gossippb.SubscribeRequest, send func(*gossippb.Event) error) error {
		for _, m := range members {
			if err := send(&gossippb.Event{Type: gossippb.EventType_EVENT_TYPE_JOIN, Member: m}); err != nil {
				return err
			}
		}
		return nil
	})
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	cb := newBus(t, ca, "client")
	if err := cb.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := gossipclient.New(cb, srv.Addr().String())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	got, self, err := c.Members(ctx, false)
	if err != nil || len(got) != 2 || self != 1 {
		t.Fatalf("Members() = %v, %d, %v; want 2 members, self 1", got, self, err)
	}
	if m, err := c.Member(ctx, 2); err != nil || m.GetNodeId() != 2 {
		t.Fatalf("Member(2) = %v, %v", m, err)
	}
	if _, err := c.Member(ctx, 9); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("Member(9) err = %v; want ErrNotFound", err)
	}
	if n, err := c.Join(ctx, "a:1", "b:2"); err != nil || n != 2 {
		t.Fatalf("Join = %d, %v; want 2", n, err)
	}
	if d, err := c.EstimateRTT(ctx, 1, 2); err != nil || d != 3*time.Millisecond {
		t.Fatalf("EstimateRTT = %v, %v; want 3ms", d, err)
	}
	if id, err := c.Broadcast(ctx, "x", []byte("abcd")); err != nil || id != 4 {
		t.Fatalf("Broadcast = %d, %v; want 4", id, err)
	}
	if _, err := c.Coordinate(ctx, 0); err == nil {
		t.Fatal("Coordinate on a server without the method: want an error")
	}
	sub, err := c.Subscribe(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for i := range 2 {
		ev, err := sub.Next()
		if err != nil || ev.GetMember().GetNodeId() != members[i].GetNodeId() {
			t.Fatalf("event %d = %v, %v", i, ev, err)
		}
	}
	if _, err := sub.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after last event err = %v; want io.EOF", err)
	}
}
