package multiraft

import (
	"context"
	"testing"
	"time"
)

// TestWaitLeader: waitLeader returns at once when a leader is known,
// wakes when one becomes known (also after leadership was lost and found
// again), and gives up at its bound or with its context.
func TestWaitLeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before uint64        // leader node known before the wait
		later  []uint64      // leader nodes set while it waits, in turn
		max    time.Duration // waitLeader's bound
		cancel bool          // the caller's context ends during the wait
		want   bool
	}{
		{name: "known", before: 2, max: time.Minute, want: true},
		{name: "learnt while waiting", later: []uint64{3}, max: time.Minute, want: true},
		{name: "lost then learnt", later: []uint64{0, 0, 2}, max: time.Minute, want: true},
		{name: "none within the bound", max: 30 * time.Millisecond, want: false},
		{name: "caller gives up", max: time.Minute, cancel: true, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Replica{}
			r.setLeaderNode(tc.before)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan bool, 1)
			go func() { done <- r.waitLeader(ctx, tc.max) }()
			go func() {
				for _, ln := range tc.later {
					time.Sleep(10 * time.Millisecond)
					r.setLeaderNode(ln)
				}
				if tc.cancel {
					time.Sleep(10 * time.Millisecond)
					cancel()
				}
			}()
			select {
			case got := <-done:
				if got != tc.want {
					t.Errorf("waitLeader = %v; want %v", got, tc.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("waitLeader did not return")
			}
		})
	}
}
