package multiraft

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

func TestLoadMeter(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	for _, tt := range []struct {
		name string
		adds []float64 // seconds after t0 of each request
		now  float64
		want float64
	}{
		{"nothing", nil, 5, 0},
		{"the current second is not counted yet", []float64{5.1, 5.2}, 5.9, 0},
		{"a whole second", []float64{5.1, 5.2, 5.3}, 6.0, 0.3},
		{"the whole window", []float64{0.5, 3.5, 3.6, 9.9}, 10.5, 0.4},
		{"older than the window", []float64{0.5, 3.5, 4.5}, 14.0, 0.1},
		{"a slot reused for a later second", []float64{1.5, 1.6, 12.5}, 13.0, 0.1},
		{"long idle", []float64{1, 2, 3}, 100, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var m loadMeter
			for _, a := range tt.adds {
				m.add(at(a))
			}
			if got := m.rate(at(tt.now)); fmt.Sprintf("%.3f", got) != fmt.Sprintf("%.3f", tt.want) {
				t.Fatalf("rate = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRangesRequestRate checks that Ranges gives, on each range's leader,
// the requests it served per second: the range written to has a rate,
// the one nobody asked has none, and followers report none.
func TestRangesRequestRate(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("m")}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const puts = 20
	for i := range puts {
		if err := c.put(ctx, fmt.Sprintf("a%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	rates := func() map[uint64]float64 { // range id → the rate its leader reports
		out := map[uint64]float64{}
		for _, id := range c.ids {
			resp, err := c.store(id).Ranges(ctx, &kvpb.RangesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.GetReplicas() {
				rid := r.GetDescriptor_().GetRangeId()
				if r.GetRaftState() != "leader" {
					if r.GetRequestsPerSec() != 0 {
						t.Fatalf("node %d follower of range %d reports %v requests/s", id, rid, r.GetRequestsPerSec())
					}
					continue
				}
				out[rid] = r.GetRequestsPerSec()
			}
		}
		return out
	}
	var left, right uint64
	for _, id := range c.ids {
		for _, r := range c.store(id).Replicas() {
			switch d := r.Descriptor(); {
			case string(d.GetEndKey()) == "m":
				left = d.GetRangeId()
			case string(d.GetStartKey()) == "m":
				right = d.GetRangeId()
			}
		}
	}
	// The puts fall in whole seconds once the current one ends.
	waitFor(t, 10*time.Second, "the written range's rate", func() bool { return rates()[left] >= puts/loadWindow })
	if r := rates()[right]; r != 0 {
		t.Fatalf("range %d, never asked, reports %v requests/s", right, r)
	}
}
