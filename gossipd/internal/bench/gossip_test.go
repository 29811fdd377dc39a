package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/gossipd/internal/swim"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist's package-level metrics sink runs a ticker goroutine
		// for the life of the process.
		goleak.IgnoreTopFunction("github.com/hashicorp/go-metrics.(*InmemSink).run"),
		// memberlist's Shutdown does not wait for a probe in flight, which
		// ends on its own within a probe interval.
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	)
}

// fast returns a short protocol period so the miniature run takes
// seconds.
func fast() swim.Config {
	p := swim.DefaultLANConfig()
	p.ProbeInterval = 200 * time.Millisecond
	p.ProbeTimeout = 100 * time.Millisecond
	p.SuspicionMult = 2
	p.GossipInterval = 50 * time.Millisecond
	p.GossipToTheDead = 2 * time.Second
	p.PushPullInterval = 2 * time.Second
	return p
}

// TestRunMiniature runs the whole scenario for both implementations at
// 6 members with a 200 ms protocol period.
func TestRunMiniature(t *testing.T) {
	if testing.Short() {
		t.Skip("runs both implementations in real time (about 20 s)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{Nodes: 6, Runs: 2, Protocol: fast(), Idle: time.Second, FaultTime: 2 * time.Second,
		Loss: 0.05, StallFor: 300 * time.Millisecond, StallEvery: time.Second, Progress: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
	for _, f := range []*Figures{res.Gossipd, res.Memberlist} {
		if f == nil {
			t.Fatal("an implementation is missing from the result")
		}
		if f.DetectAll.Trials != 2 || f.DetectAll.Missed != 0 || f.DetectAll.MedianMS <= 0 {
			t.Errorf("%s: detection %+v; want 2 completed trials", f.Impl, f.DetectAll)
		}
		if f.Dissemination.Missed != 0 || f.Dissemination.MedianMS <= 0 {
			t.Errorf("%s: dissemination %+v; want every trial complete", f.Impl, f.Dissemination)
		}
		if f.IdleBytesPerNodeSec <= 0 || f.IdlePacketsPerNodeSec <= 0 {
			t.Errorf("%s: idle traffic %.1f B/s, %.1f packets/s; want some", f.Impl, f.IdleBytesPerNodeSec, f.IdlePacketsPerNodeSec)
		}
		if f.Stalls == 0 {
			t.Errorf("%s: no stall injected", f.Impl)
		}
	}
}

func TestOptionsRejected(t *testing.T) {
	for _, o := range []Options{
		{Nodes: 2},
		{Nodes: 8, Runs: 7},
		{Loss: 1},
		{Impls: []string{"serf"}},
		{StallEvery: -time.Second},
	} {
		if _, err := Run(t.Context(), o); err == nil {
			t.Errorf("Run(%+v) = nil error; want a clear error", o)
		}
	}
}

func TestSummarize(t *testing.T) {
	ds := []time.Duration{4 * time.Second, time.Second, 3 * time.Second, 2 * time.Second}
	s := summarize(ds, 1)
	if s.Trials != 5 || s.Missed != 1 || s.MedianMS != 2500 || s.MaxMS != 4000 || s.P99MS != 4000 {
		t.Fatalf("summarize = %+v", s)
	}
}

func TestMLSuspects(t *testing.T) {
	// A compound datagram holding one suspect message about "n3" at
	// incarnation 7, encoded the way memberlist does (type byte, msgpack).
	var got []string
	body := []byte{mlSuspectMsg,
		0x83,                                                              // map of 3
		0xab, 'I', 'n', 'c', 'a', 'r', 'n', 'a', 't', 'i', 'o', 'n', 0x07, // Incarnation: 7
		0xa4, 'N', 'o', 'd', 'e', 0xa2, 'n', '3', // Node: "n3"
		0xa4, 'F', 'r', 'o', 'm', 0xa2, 'n', '1', // From: "n1"
	}
	compound := append([]byte{mlCompoundMsg, 1, 0, byte(len(body))}, body...)
	mlSuspects(compound, func(node string, inc uint32) { got = append(got, fmt.Sprintf("%s@%d", node, inc)) })
	if len(got) != 1 || got[0] != "n3@7" {
		t.Fatalf("suspects %v; want [n3@7]", got)
	}
	mlSuspects([]byte{mlCompoundMsg, 9}, func(string, uint32) { t.Fatal("truncated compound decoded") })
}
