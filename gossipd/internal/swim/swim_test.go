package swim

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

func TestConfigProfiles(t *testing.T) {
	for name, c := range map[string]Config{"lan": DefaultLANConfig(), "wan": DefaultWANConfig(), "local": DefaultLocalConfig()} {
		if err := c.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
	c := DefaultLANConfig()
	c.ProbeTimeout = c.ProbeInterval
	if err := c.Validate(); err == nil {
		t.Error("ProbeTimeout == ProbeInterval: Validate() = nil; want an error")
	}
}

func TestAwareness(t *testing.T) {
	a := NewAwareness(8)
	a.Apply(-1)
	if a.Score() != 0 {
		t.Fatalf("score %d after -1 from 0; want 0", a.Score())
	}
	a.Apply(3)
	if got := a.Scale(time.Second); got != 4*time.Second {
		t.Fatalf("Scale(1s) at score 3 = %v; want 4s", got)
	}
	a.Apply(100)
	if a.Score() != 7 {
		t.Fatalf("score %d; want clamp at 7", a.Score())
	}
	if NewAwareness(1).Scale(time.Second) != time.Second {
		t.Fatal("max 1 must disable scaling")
	}
}

func TestSuspicionMin(t *testing.T) {
	cases := []struct {
		n    int
		want time.Duration
	}{{1, 4 * time.Second}, {10, 4 * time.Second}, {100, 8 * time.Second}, {1000, 12 * time.Second}}
	for _, tc := range cases {
		if got := SuspicionMin(4, tc.n, time.Second); got != tc.want {
			t.Errorf("SuspicionMin(4, %d, 1s) = %v; want %v", tc.n, got, tc.want)
		}
	}
}

func TestSuspicionShrinks(t *testing.T) {
	start := time.Unix(0, 0)
	s := NewSuspicion(start, 1, 3, 4*time.Second, 24*time.Second)
	if s.Timeout() != 24*time.Second {
		t.Fatalf("initial timeout %v; want 24s", s.Timeout())
	}
	if s.Confirm(1) {
		t.Fatal("the originator must not count as a confirmation")
	}
	prev := s.Timeout()
	for i, from := range []uint64{2, 3, 4} {
		if !s.Confirm(from) {
			t.Fatalf("confirmation %d by %d not new", i, from)
		}
		if s.Confirm(from) {
			t.Fatalf("repeated confirmation by %d counted", from)
		}
		if now := s.Timeout(); now >= prev {
			t.Fatalf("after %d confirmations timeout %v, not below %v", i+1, now, prev)
		} else {
			prev = now
		}
	}
	if s.Timeout() != 4*time.Second || !s.Deadline().Equal(start.Add(4*time.Second)) {
		t.Fatalf("after k confirmations timeout %v deadline %v; want min 4s", s.Timeout(), s.Deadline())
	}
	if s.Confirm(5) {
		t.Fatal("confirmations beyond k must not count")
	}
	if NewSuspicion(start, 1, 0, time.Second, 6*time.Second).Timeout() != time.Second {
		t.Fatal("k=0 must give the minimum at once")
	}
}

func TestRetransmitLimit(t *testing.T) {
	cases := []struct{ n, want int }{{1, 4}, {9, 4}, {10, 8}, {99, 8}, {128, 12}}
	for _, tc := range cases {
		if got := RetransmitLimit(4, tc.n); got != tc.want {
			t.Errorf("RetransmitLimit(4, %d) = %d; want %d", tc.n, got, tc.want)
		}
	}
}

func alive(node, inc uint64) *gossippb.Broadcast {
	return &gossippb.Broadcast{Kind: &gossippb.Broadcast_Alive{Alive: &gossippb.Alive{NodeId: node, Incarnation: inc, Addr: fmt.Sprintf("127.0.0.1:%d", 7000+node)}}}
}

func TestQueueReplacesAndRetires(t *testing.T) {
	q := NewQueue(1, func() int { return 5 }) // limit 1*ceil(log10 6) = 1
	q.Push(alive(7, 1))
	q.Push(&gossippb.Broadcast{Kind: &gossippb.Broadcast_Suspect{Suspect: &gossippb.Suspect{NodeId: 7, Incarnation: 1, FromId: 2}}})
	q.Push(&gossippb.Broadcast{Kind: &gossippb.Broadcast_User{User: &gossippb.UserEvent{Origin: 1, Id: 1, Name: "e"}}})
	if q.Len() != 2 {
		t.Fatalf("Len = %d; want 2 (suspect replaced alive about node 7)", q.Len())
	}
	got := q.Take(broadcastOverhead, 1000)
	if len(got) != 2 {
		t.Fatalf("Take returned %d; want 2", len(got))
	}
	for _, b := range got {
		if b.GetAlive() != nil {
			t.Fatal("the replaced alive was sent")
		}
	}
	if q.Len() != 0 {
		t.Fatalf("Len = %d after reaching the retransmit limit; want 0", q.Len())
	}
}

func TestQueueRespectsBudgetAndFairness(t *testing.T) {
	q := NewQueue(4, func() int { return 10 })
	for i := uint64(1); i <= 100; i++ {
		q.Push(alive(i, 1))
	}
	seen := map[uint64]int{}
	for range 40 {
		out := q.Take(broadcastOverhead, 300)
		for _, b := range out {
			seen[b.GetAlive().GetNodeId()]++
		}
		if len(out) == 0 {
			t.Fatal("Take returned nothing with a non-empty queue")
		}
	}
	for i := uint64(1); i <= 100; i++ {
		if seen[i] == 0 {
			t.Fatalf("node %d never sent: least-sent-first is broken", i)
		}
	}
}

func TestEncodeFillsWithinBudget(t *testing.T) {
	q := NewQueue(4, func() int { return 50 })
	for i := uint64(1); i <= 200; i++ {
		q.Push(alive(i, i))
	}
	p := &gossippb.Packet{Cluster: "c", Probe: &gossippb.Packet_Ping{Ping: &gossippb.Ping{Seq: 9, Target: 2, SourceId: 1, SourceAddr: "127.0.0.1:7403"}}}
	b, err := EncodePacket(p, q, 1100)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 1100 || len(b) < 900 {
		t.Fatalf("encoded %d bytes; want a full packet within 1100", len(b))
	}
	got, err := DecodePacket(b, "c")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetPing().GetSeq() != 9 || len(got.GetBroadcasts()) == 0 {
		t.Fatalf("decoded %v", got)
	}
	if _, err := DecodePacket(b, "other"); !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("other cluster err = %v; want ErrWrongCluster", err)
	}
	if _, err := DecodePacket([]byte{0xff, 0xff}, "c"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage err = %v; want ErrMalformed", err)
	}
	big := &gossippb.Packet{Cluster: string(bytes.Repeat([]byte("x"), 2000))}
	if _, err := EncodePacket(big, nil, 1100); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("oversized err = %v; want ErrPacketTooLarge", err)
	}
}

func FuzzDecodePacket(f *testing.F) {
	p := &gossippb.Packet{Cluster: "c", Probe: &gossippb.Packet_Ack{Ack: &gossippb.Ack{Seq: 1, FromId: 2,
		Coordinate: &gossippb.Coordinate{Vec: []float64{0.001, 0.002}, Error: 1.5, Height: 1e-5}}},
		Broadcasts: []*gossippb.Broadcast{alive(3, 4)}}
	seed, err := EncodePacket(p, nil, 1100)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		pkt, err := DecodePacket(b, "c")
		if err != nil {
			return
		}
		out, err := EncodePacket(pkt, nil, 1<<20)
		if err != nil {
			t.Fatalf("re-encode of a decoded packet: %v", err)
		}
		if _, err := DecodePacket(out, "c"); err != nil {
			t.Fatalf("decode of a re-encoded packet: %v", err)
		}
	})
}
