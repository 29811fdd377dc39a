package multiraft

import (
	"context"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// hasStart reports whether a descriptor in descs starts at key.
func hasStart(descs []*kvpb.RangeDescriptor, key string) bool {
	for _, d := range descs {
		if string(d.GetStartKey()) == key {
			return true
		}
	}
	return false
}

// TestDescriptorsLinearizable: the meta range's leader is cut off, the
// other two nodes elect another and split a range. Asked on the cut-off
// node, Descriptors never answers without the split (it fails: no meta
// leader reachable), while a stale read there answers its past, without
// the split; through a follower of meta it forwards to the leader. Once
// healed, the old leader answers with the split. Before Descriptors read
// at the meta leader after a read barrier, the cut-off node answered
// from its own meta replica, without the split.
func TestDescriptorsLinearizable(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.put(ctx, "k1", "v"); err != nil {
		t.Fatal(err)
	}
	var old uint64
	waitFor(t, 10*time.Second, "a meta leader", func() bool {
		old = c.leaderOf(MetaRangeID)
		return old != 0
	})
	// Through a node that does not lead meta: forwarded to its leader.
	for _, id := range c.ids {
		if id == old {
			continue
		}
		resp, err := c.store(id).Descriptors(ctx, &kvpb.DescriptorsRequest{})
		if err != nil || len(resp.GetDescriptors()) == 0 {
			t.Fatalf("Descriptors through meta follower %d = %v, %v", id, resp, err)
		}
	}
	c.net.Isolate(old, c.ids)
	var others []uint64
	for _, id := range c.ids {
		if id != old {
			others = append(others, id)
		}
	}
	// The split needs meta (a range id): the majority elects a meta
	// leader of its own for it.
	var resp *kvpb.AdminSplitResponse
	if err := c.doOn(ctx, others, func(ctx context.Context, s *Store) error {
		var err error
		resp, err = s.AdminSplit(ctx, &kvpb.AdminSplitRequest{Key: []byte("k5")})
		return err
	}); err != nil {
		t.Fatalf("split without the old meta leader: %v", err)
	}
	// The majority's meta has the split, read through either node.
	waitFor(t, 10*time.Second, "meta of the majority to hold the split", func() bool {
		for _, id := range others {
			r, err := c.store(id).Descriptors(ctx, &kvpb.DescriptorsRequest{})
			if err != nil || !hasStart(r.GetDescriptors(), "k5") {
				return false
			}
		}
		return true
	})
	for _, tc := range []struct {
		name  string
		asked kvpb.ReadConsistency
	}{
		{"linearizable", kvpb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE},
		{"stale", kvpb.ReadConsistency_READ_CONSISTENCY_STALE},
	} {
		actx, acancel := context.WithTimeout(ctx, 50*c.cfg.TickInterval)
		r, err := c.store(old).Descriptors(actx, &kvpb.DescriptorsRequest{Header: &kvpb.Header{ReadConsistency: tc.asked}})
		acancel()
		switch {
		case tc.asked == kvpb.ReadConsistency_READ_CONSISTENCY_STALE && (err != nil || hasStart(r.GetDescriptors(), "k5")):
			t.Fatalf("stale Descriptors on the cut-off node = %v, %v; want its meta replica's past, without the split at k5", r.GetDescriptors(), err)
		case tc.asked == kvpb.ReadConsistency_READ_CONSISTENCY_LINEARIZABLE && err == nil && !hasStart(r.GetDescriptors(), "k5"):
			t.Fatalf("linearizable Descriptors on the cut-off old meta leader answered without the split at k5 (split %v): %v", resp.GetRight(), r.GetDescriptors())
		default:
			t.Logf("%s Descriptors on the cut-off node: %d descriptors, %v", tc.name, len(r.GetDescriptors()), err)
		}
	}
	c.net.Heal()
	waitFor(t, 10*time.Second, "the old meta leader to answer with the split", func() bool {
		r, err := c.store(old).Descriptors(ctx, &kvpb.DescriptorsRequest{})
		return err == nil && hasStart(r.GetDescriptors(), "k5")
	})
}
