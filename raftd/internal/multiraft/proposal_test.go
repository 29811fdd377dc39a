package multiraft

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// TestProposalsOfARoundGoTogether checks that the proposals a round finds
// in a replica's inbox reach raft as one proposal (so the leader sends each
// follower one append for all of them), and that each is applied and
// answered.
func TestProposalsOfARoundGoTogether(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := c.put(ctx, "warm", "up"); err != nil {
		t.Fatal(err)
	}
	const rangeID = 2 // the user range
	s := c.store(c.leaderOf(rangeID))
	r := s.Replica(rangeID)
	before := s.Stats()

	const n = 20
	props := make([]*proposal, n)
	r.in.Lock()
	for i := range props {
		put := &kvpb.PutRequest{Key: fmt.Appendf(nil, "b%02d", i), Value: fmt.Appendf(nil, "v%d", i)}
		props[i] = &proposal{ops: []*raftmsgpb.Op{{Op: &raftmsgpb.Op_Put{Put: put}}}, ts: s.d.Clock.Now(), done: make(chan proposalResult, 1)}
		r.in.props = append(r.in.props, props[i])
	}
	r.in.Unlock()
	s.enqueue(rangeID)
	for i, p := range props {
		select {
		case res := <-p.done:
			if res.err != nil {
				t.Fatalf("proposal %d: %v", i, res.err)
			}
		case <-ctx.Done():
			t.Fatalf("proposal %d not answered", i)
		}
	}
	after := s.Stats()
	if got := after.Proposals - before.Proposals; got != n {
		t.Errorf("%d proposals counted; want %d", got, n)
	}
	if got := after.ProposalBatches - before.ProposalBatches; got != 1 {
		t.Errorf("%d raft proposals for %d commands of one round; want 1", got, n)
	}
	for i := range n {
		v, found, err := c.get(ctx, fmt.Sprintf("b%02d", i))
		if err != nil || !found || v != fmt.Sprintf("v%d", i) {
			t.Errorf("get b%02d = %q, %v, %v; want v%d", i, v, found, err, i)
		}
	}
}
