package gossipclient_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// TestFollow runs Follow against a fake gossipd: the metadata is
// published, the members are delivered at once and after an event, and
// Follow returns when gossipd ends the stream.
func TestFollow(t *testing.T) {
	ca, err := tlsutil.NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	srv := newBus(t, ca, "server")
	p := wire.ProtoGossip
	var mu sync.Mutex
	var published *gossippb.Metadata
	members := []*gossippb.Member{{NodeId: 1, State: gossippb.MemberState_MEMBER_STATE_ALIVE}}
	events, endStream := make(chan struct{}), make(chan struct{})
	bus.HandleUnary(srv, p, gossipclient.MethodSetMetadata, func(ctx context.Context, r *gossippb.SetMetadataRequest) (*gossippb.SetMetadataResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		published = r.GetMetadata()
		return &gossippb.SetMetadataResponse{Metadata: r.GetMetadata()}, nil
	})
	bus.HandleUnary(srv, p, gossipclient.MethodMembers, func(ctx context.Context, r *gossippb.MembersRequest) (*gossippb.MembersResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		return &gossippb.MembersResponse{Members: members, SelfId: 1}, nil
	})
	bus.HandleStream(srv, p, gossipclient.MethodSubscribe, func(ctx context.Context, r *gossippb.SubscribeRequest, send func(*gossippb.Event) error) error {
		for {
			select {
			case <-events:
				if err := send(&gossippb.Event{Type: gossippb.EventType_EVENT_TYPE_JOIN}); err != nil {
					return err
				}
			case <-endStream:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	cb := newBus(t, ca, "client")
	if err := cb.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := gossipclient.New(cb, srv.Addr().String())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	seen := make(chan int, 10)
	type result struct {
		answered bool
		err      error
	}
	done := make(chan result, 1)
	go func() {
		md := &gossippb.Metadata{Addresses: map[string]string{"raftd": "host1:7402"}}
		// A refresh far longer than the test: calls come from events.
		a, err := c.Follow(ctx, md, time.Hour, func(ms []*gossippb.Member, self uint64) {
			if self != 1 {
				t.Errorf("self %d; want 1", self)
			}
			seen <- len(ms)
		})
		done <- result{a, err}
	}()
	if n := <-seen; n != 1 {
		t.Fatalf("first call with %d members; want 1", n)
	}
	mu.Lock()
	if published.GetAddresses()["raftd"] != "host1:7402" {
		t.Errorf("published %v; want raftd host1:7402", published)
	}
	members = append(members, &gossippb.Member{NodeId: 2, State: gossippb.MemberState_MEMBER_STATE_ALIVE})
	mu.Unlock()
	events <- struct{}{}
	if n := <-seen; n != 2 {
		t.Fatalf("call after the event with %d members; want 2", n)
	}
	close(endStream)
	select {
	case r := <-done:
		if !r.answered || r.err == nil {
			t.Errorf("Follow after the stream ended = %v, %v; want answered and an error", r.answered, r.err)
		}
	case <-ctx.Done():
		t.Fatal("Follow did not return when the stream ended")
	}
}
