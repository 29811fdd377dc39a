package kvclient_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

// TestClientFollowsSplit checks that a client whose range cache predates a
// split learns the new ranges from the RangeKeyMismatch answer: one
// refused attempt per stale entry, no reload of every descriptor, and the
// next request goes straight to the new range's leader.
func TestClientFollowsSplit(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{SplitPoints: [][]byte{[]byte("m")}})
	c := newClient(t, fc, func(cfg *kvclient.Config) { cfg.DescriptorsEvery = 0 })
	ctx := ctxT(t)
	for _, k := range []string{"n", "x"} {
		if _, err := c.Put(ctx, []byte(k), []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
	descriptorCalls := func() int {
		n := 0
		for i := range fc.Addrs() {
			n += fc.Calls(i, kvclient.MethodDescriptors)
		}
		return n
	}
	before := descriptorCalls()
	right := fc.Split([]byte("t"), 2)
	if right == nil {
		t.Fatal("split failed")
	}
	putsOn2 := fc.Calls(2, kvclient.MethodPut)
	for _, k := range []string{"x", "y", "z"} {
		if _, err := c.Put(ctx, []byte(k), []byte("2")); err != nil {
			t.Fatalf("Put(%s) after the split: %v", k, err)
		}
	}
	if v, ok, err := c.Get(ctx, []byte("x")); err != nil || !ok || string(v.Value) != "2" {
		t.Fatalf("Get(x) = %q %v %v", v.Value, ok, err)
	}
	if _, err := c.Put(ctx, []byte("n"), []byte("2")); err != nil {
		t.Fatalf("Put(n) on the left side: %v", err)
	}
	if got := fc.Mismatches(); got != 1 {
		// The first request after the split is refused with both sides'
		// descriptors: the left side's requests then carry its new
		// generation.
		t.Errorf("%d requests refused as mismatched; want 1", got)
	}
	if got := descriptorCalls() - before; got != 0 {
		t.Errorf("the client reloaded descriptors %d times after a split; want 0", got)
	}
	if got := fc.Calls(2, kvclient.MethodPut) - putsOn2; got < 3 {
		t.Errorf("node 2, the new range's leader, got %d of the 3 puts on it", got)
	}
}

// TestChangeReplicasOutlastsSlowAttempts: a replica add takes as long as
// its snapshot, past SlowAttemptTimeout: its one attempt is bounded by
// the caller's context only, so it is neither cut nor retried (a retry
// found the replica being added and was refused); the context still
// ends it.
func TestChangeReplicasOutlastsSlowAttempts(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{Nodes: 4})
	c := newClient(t, fc, func(cfg *kvclient.Config) { cfg.SlowAttemptTimeout = 100 * time.Millisecond })
	fc.Delay(kvclient.MethodChangeReplicas, 400*time.Millisecond)
	calls := func() (n int) {
		for i := range fc.Addrs() {
			n += fc.Calls(i, kvclient.MethodChangeReplicas)
		}
		return n
	}
	id := fc.RangeIDs()[0]
	d, err := c.ChangeReplicas(ctxT(t), id, kvclient.ReplicaChange{Add: []uint64{4}})
	if err != nil {
		t.Fatalf("ChangeReplicas slower than SlowAttemptTimeout: %v", err)
	}
	if len(d.GetReplicas()) == 0 || d.GetReplicas()[len(d.GetReplicas())-1].GetNodeId() != 4 {
		t.Errorf("descriptor %v; want a replica on node 4", d)
	}
	if n := calls(); n != 1 {
		t.Errorf("%d attempts; want 1", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	if _, err := c.ChangeReplicas(ctx, id, kvclient.ReplicaChange{Remove: []uint64{4}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ChangeReplicas past its context's deadline: %v; want %v", err, context.DeadlineExceeded)
	}
}
