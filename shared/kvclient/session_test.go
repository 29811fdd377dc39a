package kvclient_test

import (
	"context"
	"testing"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

// TestRetriedWritesApplyOnce: the leader applies each write but its
// answer is lost (the attempt times out); the client retries on another
// node with the same session seq, and gets the original answer: a CAS
// reports its success, a Delete that the key was there, a Put and a Batch
// their original timestamps, a DeleteRange its count. Without sessions
// the retries would apply again and answer otherwise.
func TestRetriedWritesApplyOnce(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{})
	c := newClient(t, fc, nil)
	ctx := ctxT(t)
	leader := 0 // the one range is led by node 0
	lose := func(method string) { fc.LoseAnswers(leader, method, 1) }

	if _, err := c.Put(ctx, []byte("k"), []byte("v0")); err != nil {
		t.Fatal(err)
	}
	lose(kvclient.MethodCompareAndSwap)
	res, err := c.CompareAndSwap(ctx, kvclient.CAS{Key: []byte("k"), Expected: []byte("v0"), NewValue: []byte("v1")})
	if err != nil || !res.Succeeded {
		t.Fatalf("CompareAndSwap whose first answer was lost = %+v, %v; want its original success", res, err)
	}
	if v, _ := fc.Value("k"); v != "v1" {
		t.Fatalf("k = %q after the CAS; want v1", v)
	}

	lose(kvclient.MethodPut)
	ts, err := c.Put(ctx, []byte("p"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	got, found, err := c.Get(ctx, []byte("p"))
	if err != nil || !found || got.Timestamp != ts {
		t.Fatalf("Put retried: answered %v, the value holds %v (found %v, %v); want the same timestamp", ts, got.Timestamp, found, err)
	}

	lose(kvclient.MethodDelete)
	if deleted, err := c.Delete(ctx, []byte("p")); err != nil || !deleted {
		t.Fatalf("Delete retried = %v, %v; want deleted (the first attempt removed the key)", deleted, err)
	}

	lose(kvclient.MethodBatch)
	br, err := c.Batch(ctx, kvclient.NewBatch().CompareAndSwap(kvclient.CAS{Key: []byte("k"), Expected: []byte("v1"), NewValue: []byte("v2")}).Put([]byte("q"), []byte("y")))
	if err != nil || !br.Succeeded {
		t.Fatalf("Batch retried = %+v, %v; want its original success", br, err)
	}

	for _, k := range []string{"r1", "r2", "r3"} {
		if _, err := c.Put(ctx, []byte(k), []byte("z")); err != nil {
			t.Fatal(err)
		}
	}
	// DeleteRange goes to any node: every node loses its first answer.
	for node := range len(fc.Addrs()) {
		fc.LoseAnswers(node, kvclient.MethodDeleteRange, 1)
	}
	if n, err := c.DeleteRange(ctx, []byte("r"), []byte("s")); err != nil || n != 3 {
		t.Fatalf("DeleteRange retried = %d, %v; want its original count 3", n, err)
	}
	calls := 0
	for node := range len(fc.Addrs()) {
		calls += fc.Calls(node, kvclient.MethodDeleteRange)
	}
	if calls < 2 {
		t.Errorf("DeleteRange took %d attempts; want a retry", calls)
	}
}

// TestWritesWithoutSessionsOnOldServers: servers without Descriptors
// predate sessions; writes go without one and still succeed.
func TestWritesWithoutSessionsOnOldServers(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{NoDescriptors: true})
	c := newClient(t, fc, nil)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	for range 3 {
		if _, err := c.Put(ctx, []byte("a"), []byte("1")); err != nil {
			t.Fatal(err)
		}
	}
}
