package kvclient_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
)

// calls sums the calls of method over nodes.
func calls(fc *kvclienttest.Cluster, method string, nodes ...int) int {
	n := 0
	for _, i := range nodes {
		n += fc.Calls(i, method)
	}
	return n
}

// TestFailoverFromStalledLeader stops the leader of a range from
// answering, as a killed process does, and moves the leadership: with the
// default attempt timeout the next write fails over after one timed-out
// attempt, and later calls avoid the stalled node altogether.
func TestFailoverFromStalledLeader(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{SplitPoints: [][]byte{[]byte("m")}})
	// Default AttemptTimeout; a SuspectFor that outlasts the test on a
	// loaded machine.
	c := newClient(t, fc, func(cfg *kvclient.Config) { cfg.SuspectFor = time.Minute })
	ctx := ctxT(t)
	id := fc.RangeIDs()[0]
	fc.SetLeader(id, 0)
	if _, err := c.Put(ctx, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if got := fc.Calls(0, kvclient.MethodPut); got != 1 {
		t.Fatalf("node 0 got %d Puts; want 1 (the leader)", got)
	}

	fc.Stall(0, true)
	fc.SetLeader(id, 1)
	start := time.Now()
	if _, err := c.Put(ctx, []byte("a"), []byte("2")); err != nil {
		t.Fatalf("Put with the leader stalled: %v", err)
	}
	// One attempt timed out; the old default (5s) would be well past this
	// generous bound.
	if d := time.Since(start); d >= 4*time.Second {
		t.Errorf("Put took %v with the leader stalled; want one short attempt timeout", d)
	}
	if got := fc.Calls(0, kvclient.MethodPut); got != 2 {
		t.Errorf("stalled node got %d Puts in all; want 2 (one before, one timed out)", got)
	}
	if got := calls(fc, kvclient.MethodPut, 1, 2); got != 1 {
		t.Errorf("other nodes got %d Puts; want 1", got)
	}
	if v, _ := fc.Value("a"); v != "2" {
		t.Errorf("a = %q; want 2", v)
	}

	// Later calls, of every routing kind, skip the suspect node: none
	// reaches it, and each needs one attempt.
	before := calls(fc, kvclient.MethodPut, 1, 2) + calls(fc, kvclient.MethodGet, 1, 2)
	for range 5 {
		if _, err := c.Put(ctx, []byte("a"), []byte("3")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Get(ctx, []byte("a")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Get(ctx, []byte("a"), kvclient.WithConsistency(kvclient.Stale)); err != nil {
			t.Fatal(err)
		}
	}
	if got := fc.Calls(0, kvclient.MethodPut) + fc.Calls(0, kvclient.MethodGet); got != 2 {
		t.Errorf("stalled node got %d Puts and Gets; want the 2 Puts of before", got)
	}
	if got := calls(fc, kvclient.MethodPut, 1, 2) + calls(fc, kvclient.MethodGet, 1, 2) - before; got != 15 {
		t.Errorf("15 operations took %d attempts; want 15", got)
	}
	if fc.Calls(0, kvclient.MethodDescriptors) > 1 {
		t.Errorf("stalled node got %d Descriptors calls; want at most the first", fc.Calls(0, kvclient.MethodDescriptors))
	}
}

// TestAttemptTimeoutClasses checks which calls use the short attempt
// timeout: on a one-node cluster that stopped answering, a quick call is
// retried after each short attempt, while a call bounded by
// SlowAttemptTimeout makes one attempt that the caller's deadline ends.
func TestAttemptTimeoutClasses(t *testing.T) {
	big := bytes.Repeat([]byte("v"), kvclient.LargeRequestBytes+1)
	tests := []struct {
		name string
		call func(context.Context, *kvclient.Client) error
		// method is the one counted; slow: one attempt expected.
		method string
		slow   bool
	}{
		{"get", func(ctx context.Context, c *kvclient.Client) error {
			_, _, err := c.Get(ctx, []byte("a"))
			return err
		}, kvclient.MethodGet, false},
		{"small put", func(ctx context.Context, c *kvclient.Client) error {
			_, err := c.Put(ctx, []byte("a"), []byte("1"))
			return err
		}, kvclient.MethodPut, false},
		{"large put", func(ctx context.Context, c *kvclient.Client) error {
			_, err := c.Put(ctx, []byte("a"), big)
			return err
		}, kvclient.MethodPut, true},
		{"large batch", func(ctx context.Context, c *kvclient.Client) error {
			_, err := c.Batch(ctx, kvclient.NewBatch().Put([]byte("a"), big[:len(big)/2]).Put([]byte("b"), big[:len(big)/2]))
			return err
		}, kvclient.MethodBatch, true},
		{"delete range", func(ctx context.Context, c *kvclient.Client) error {
			_, err := c.DeleteRange(ctx, []byte("a"), []byte("b"))
			return err
		}, kvclient.MethodDeleteRange, true},
		{"init", func(ctx context.Context, c *kvclient.Client) error {
			_, err := c.Init(ctx, kvclient.InitOptions{})
			return err
		}, kvclient.MethodInit, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := kvclienttest.Start(t, kvclienttest.Options{Nodes: 1, NoDescriptors: true})
			c := newClient(t, fc, func(cfg *kvclient.Config) {
				cfg.AttemptTimeout = 50 * time.Millisecond
				cfg.SlowAttemptTimeout = time.Minute
			})
			// A first write learns that the server lacks Descriptors
			// (which a write reads the cluster's clock from otherwise).
			if _, err := c.Put(t.Context(), []byte("warm"), nil); err != nil {
				t.Fatal(err)
			}
			before := fc.Calls(0, tt.method)
			fc.Stall(0, true)
			ctx, cancel := context.WithTimeout(t.Context(), 600*time.Millisecond)
			defer cancel()
			err := tt.call(ctx, c)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v; want the caller's deadline", err)
			}
			got := fc.Calls(0, tt.method) - before
			if tt.slow && got != 1 {
				t.Errorf("%d attempts; want 1 (bounded by SlowAttemptTimeout)", got)
			}
			if !tt.slow && got < 2 {
				t.Errorf("%d attempts; want several (bounded by AttemptTimeout)", got)
			}
		})
	}
}

// TestHedgedReads stalls a range's leader: a Get sent there is hedged to
// another node after HedgeAfter and answered by it, although the attempt
// timeout would wait a minute; without hedging it waits.
func TestHedgedReads(t *testing.T) {
	tests := []struct {
		name       string
		hedgeAfter time.Duration
		want       bool // the Get succeeds, through another node
	}{
		{"hedged", 20 * time.Millisecond, true},
		{"hedging off", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc := kvclienttest.Start(t, kvclienttest.Options{})
			id := fc.RangeIDs()[0]
			fc.SetLeader(id, 0)
			c := newClient(t, fc, func(cfg *kvclient.Config) {
				cfg.AttemptTimeout = time.Minute
				cfg.HedgeAfter = tt.hedgeAfter
			})
			if _, err := c.Put(ctxT(t), []byte("a"), []byte("1")); err != nil {
				t.Fatal(err)
			}
			fc.Stall(0, true)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			v, found, err := c.Get(ctx, []byte("a"))
			if !tt.want {
				if !errors.Is(err, context.DeadlineExceeded) || calls(fc, kvclient.MethodGet, 1, 2) != 0 {
					t.Errorf("Get = %v; want the deadline, no call to other nodes", err)
				}
				return
			}
			if err != nil || !found || string(v.Value) != "1" {
				t.Fatalf("Get = %q %v %v; want 1 through another node", v.Value, found, err)
			}
			if got := fc.Calls(0, kvclient.MethodGet); got != 1 {
				t.Errorf("stalled leader got %d Gets; want 1", got)
			}
			if got := calls(fc, kvclient.MethodGet, 1, 2); got != 1 {
				t.Errorf("other nodes got %d Gets; want 1 (the hedge)", got)
			}
			// The passed-over node is suspect: later reads of either
			// consistency go elsewhere at once.
			for _, cons := range []kvclient.Consistency{kvclient.Linearizable, kvclient.Stale, kvclient.Linearizable} {
				if _, _, err := c.Get(ctx, []byte("a"), kvclient.WithConsistency(cons)); err != nil {
					t.Fatal(err)
				}
			}
			if got := fc.Calls(0, kvclient.MethodGet); got != 1 {
				t.Errorf("stalled leader got %d Gets in all; want 1", got)
			}
			// The hedge and the three reads; a read the loaded machine
			// kept past HedgeAfter is hedged to the third node too.
			if got := calls(fc, kvclient.MethodGet, 1, 2); got < 4 || got > 7 {
				t.Errorf("other nodes got %d Gets; want 4 to 7", got)
			}
		})
	}
}
