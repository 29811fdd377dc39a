package kvclient_test

import (
	"testing"

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
