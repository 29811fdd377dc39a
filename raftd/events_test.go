package raftd_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// watchRanges collects the range events of one raftd on a channel.
func watchRanges(t *testing.T, ctx context.Context, c *busCluster, i int) <-chan *kvpb.RangeEvent {
	t.Helper()
	st, err := c.cli.Bus.Stream(ctx, c.rts[i].Bus.Addr().String(), wire.ProtoKV, raftd.MethodWatchRanges, &kvpb.WatchRangesRequest{})
	if err != nil {
		t.Fatalf("WatchRanges on node %d: %v", i, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ch := make(chan *kvpb.RangeEvent, 64)
	go func() {
		defer close(ch)
		for {
			var ev kvpb.RangeEvent
			if err := st.Recv(&ev); err != nil {
				return
			}
			ch <- &ev
		}
	}()
	return ch
}

// TestWatchRanges: each raftd reports the replicas Init creates on it, the
// node that wins each range's first election reports it, and when that
// leader stops another node reports winning the range with the old leader
// as the previous one.
func TestWatchRanges(t *testing.T) {
	c := newBusCluster(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var watches []<-chan *kvpb.RangeEvent
	for i := range c.rts {
		watches = append(watches, watchRanges(t, ctx, c, i))
	}
	for {
		err := c.cli.Bus.Call(ctx, c.rts[0].Bus.Addr().String(), wire.ProtoKV, raftd.MethodInit, &kvpb.InitRequest{}, &kvpb.InitResponse{})
		if err == nil {
			break
		}
		if !errors.Is(err, bus.ErrUnavailable) || ctx.Err() != nil {
			t.Fatalf("Init: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Meta range and one user range, both on the three nodes.
	leaders := map[uint64]int{} // range -> node index
	added := map[string]bool{}
	var events []*kvpb.RangeEvent
	next := func(what string) (int, *kvpb.RangeEvent) {
		t.Helper()
		select {
		case ev := <-watches[0]:
			return 0, ev
		case ev := <-watches[1]:
			return 1, ev
		case ev := <-watches[2]:
			return 2, ev
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; events so far %v", what, ctx.Err(), events)
		}
		return 0, nil
	}
	for len(added) < 6 || len(leaders) < 2 {
		i, ev := next("replica and leader events")
		events = append(events, ev)
		if ev.GetNodeId() != c.rts[i].NodeID {
			t.Fatalf("node %d reported node_id %d", c.rts[i].NodeID, ev.GetNodeId())
		}
		switch ev.GetType() {
		case kvpb.RangeEventType_RANGE_EVENT_TYPE_REPLICA_ADDED:
			if len(ev.GetDescriptor_().GetReplicas()) != 3 {
				t.Errorf("replica added with descriptor %v; want 3 replicas", ev.GetDescriptor_())
			}
			added[fmt.Sprintf("%d/%d", ev.GetRangeId(), i)] = true
		case kvpb.RangeEventType_RANGE_EVENT_TYPE_LEADER:
			if ev.GetLeaderNodeId() != c.rts[i].NodeID || ev.GetTerm() == 0 {
				t.Errorf("leader event %v from node %d", ev, c.rts[i].NodeID)
			}
			leaders[ev.GetRangeId()] = i
		}
	}
	// Stop the meta range's leader: another node wins it and says so.
	old := leaders[1]
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	if err := c.srvs[old].Stop(sctx); err != nil {
		t.Fatal(err)
	}
	scancel()
	for {
		i, ev := next("the meta range's new leader")
		if i == old || ev.GetType() != kvpb.RangeEventType_RANGE_EVENT_TYPE_LEADER || ev.GetRangeId() != 1 {
			continue
		}
		if ev.GetPreviousLeaderNodeId() != c.rts[old].NodeID {
			t.Errorf("new leader event %v; want previous leader %d", ev, c.rts[old].NodeID)
		}
		// A watcher that comes later is told first of the leaderships
		// held now (won while it was away), with their term.
		late := watchRanges(t, ctx, c, i)
		select {
		case first := <-late:
			if first.GetType() != kvpb.RangeEventType_RANGE_EVENT_TYPE_LEADER || first.GetRangeId() != 1 || first.GetTerm() != ev.GetTerm() ||
				first.GetLeaderNodeId() != c.rts[i].NodeID {
				t.Errorf("a late watcher's first event %v; want the meta range's leadership at term %d", first, ev.GetTerm())
			}
		case <-ctx.Done():
			t.Fatal("a late watcher was not told of the leaderships held")
		}
		break
	}
}
