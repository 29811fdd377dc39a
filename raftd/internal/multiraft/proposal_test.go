package multiraft

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// warmUserRange starts a 3-node cluster with one user range, writes to it
// and returns the store leading it and its replica there.
func warmUserRange(t *testing.T, ctx context.Context, opts ...func(*Config)) (*testCluster, *Store, *Replica) {
	t.Helper()
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, opts...)
	if err := c.put(ctx, "warm", "up"); err != nil {
		t.Fatal(err)
	}
	const rangeID = 2 // the user range
	s := c.store(c.leaderOf(rangeID))
	return c, s, s.Replica(rangeID)
}

// TestProposalsOfARoundGoTogether checks that the proposals a round finds
// in a replica's inbox reach raft as one proposal (so the leader sends each
// follower one append for all of them), up to MaxRangeRoundBytes a round
// (the rest wait for the next), and that each is applied and answered.
func TestProposalsOfARoundGoTogether(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, tt := range []struct {
		name                   string
		roundCap               uint64
		value                  int
		minBatches, maxBatches uint64
	}{
		{"one round's worth", 0, 10, 1, 1},
		// 20 commands of ~1 KiB, at most 4 KiB per round: 5 or more rounds.
		{"over MaxRangeRoundBytes", 4 << 10, 1000, 5, 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proposalsOfARound(t, ctx, tt.roundCap, tt.value, tt.minBatches, tt.maxBatches)
		})
	}
}

// proposalsOfARound queues 20 proposals of value bytes at once and checks
// they reach raft in minBatches to maxBatches proposals, and are applied.
func proposalsOfARound(t *testing.T, ctx context.Context, roundCap uint64, value int, minBatches, maxBatches uint64) {
	c, s, r := warmUserRange(t, ctx, func(c *Config) {
		if roundCap > 0 {
			c.MaxRangeRoundBytes = roundCap
		}
	})
	before := s.Stats()

	const n = 20
	val := func(i int) string { return fmt.Sprintf("v%d", i) + strings.Repeat("x", value) }
	props := make([]*proposal, n)
	r.in.Lock()
	for i := range props {
		put := &kvpb.PutRequest{Key: fmt.Appendf(nil, "b%02d", i), Value: []byte(val(i))}
		props[i] = &proposal{ops: []*raftmsgpb.Op{{Op: &raftmsgpb.Op_Put{Put: put}}}, ts: s.d.Clock.Now(), done: make(chan proposalResult, 1)}
		r.in.props = append(r.in.props, props[i])
	}
	r.in.Unlock()
	s.enqueue(r.rangeID)
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
	if got := after.ProposalBatches - before.ProposalBatches; got < minBatches || got > maxBatches {
		t.Errorf("%d raft proposals for %d commands queued at once; want %d to %d", got, n, minBatches, maxBatches)
	}
	for i := range n {
		v, found, err := c.get(ctx, fmt.Sprintf("b%02d", i))
		if err != nil || !found || v != val(i) {
			t.Errorf("get b%02d = %.10q, %v, %v; want %.10q", i, v, found, err, val(i))
		}
	}
}

// TestCommitOnlyAppendsNotSent checks that the leader does not send an
// append without entries to a follower it replicates to (raft sends one to
// every follower each time the commit index moves; the follower learns the
// index from the next append or heartbeat instead), and that every other
// append goes: with entries, empty to a follower it probes, and empty in
// answer to a heartbeat response (raft's recovery of lost appends). Nor a
// heartbeat to a follower it replicates to that was sent entries within
// heartbeatQuietTicks, and every other heartbeat goes.
func TestCommitOnlyAppendsNotSent(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, s, r := warmUserRange(t, ctx)
	var followers []uint64
	for _, rd := range r.desc.Load().GetReplicas() {
		if rd.GetNodeId() != s.d.NodeID {
			followers = append(followers, rd.GetReplicaId())
		}
	}
	replicating, probed := followers[0], followers[1]
	// A quorum acknowledged the warm-up write; the other follower may still
	// be probed (its first append answer not yet in). Wait for both.
	for !allReplicating(r, followers) {
		select {
		case <-ctx.Done():
			t.Fatal("followers never all replicated to")
		case <-time.After(5 * time.Millisecond):
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.mu.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		t.Skip("leadership moved")
	}
	var match uint64
	r.mu.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == replicating {
			if pr.State != tracker.StateReplicate {
				t.Fatalf("follower %d is %v; want replicate", id, pr.State)
			}
			match = pr.Match
		}
	})
	r.mu.rn.ReportUnreachable(probed) // a replicating follower goes back to probing
	// No heartbeat response stepped since the last Ready (one stepped in
	// a round without a Ready stays recorded until the next send).
	r.mu.heartbeatResps = nil
	term, commit := st.GetTerm(), st.GetCommit()
	msg := func(to uint64, typ raftpb.MessageType, index uint64, ents int) *raftpb.Message {
		m := &raftpb.Message{Type: typ.Enum(), From: proto.Uint64(r.mu.replicaID), To: proto.Uint64(to),
			Term: proto.Uint64(term), Index: proto.Uint64(index), LogTerm: proto.Uint64(term), Commit: proto.Uint64(commit)}
		for i := range ents {
			m.Entries = append(m.Entries, &raftpb.Entry{Term: proto.Uint64(term), Index: proto.Uint64(index + 1 + uint64(i))})
		}
		return m
	}
	sent := func(out *outbox, id uint64) (apps []string, hbs int) {
		b := out.m[r.nodeOfReplica(id)]
		for _, rm := range b.GetMessages() {
			m, err := decodeMessage(rm.GetMessage())
			if err != nil {
				t.Fatal(err)
			}
			apps = append(apps, fmt.Sprintf("%v@%d+%d", m.GetType(), m.GetIndex()-match, len(m.GetEntries())))
		}
		return apps, len(b.GetHeartbeats())
	}

	out := newOutbox(s)
	r.sendLocked(out, []*raftpb.Message{
		msg(replicating, raftpb.MsgApp, match, 0),   // the commit index only: not sent
		msg(replicating, raftpb.MsgApp, match+1, 0), // the same, entries in flight: not sent
		msg(replicating, raftpb.MsgApp, match, 1),
		msg(replicating, raftpb.MsgHeartbeat, 0, 0),
		msg(probed, raftpb.MsgApp, commit, 0), // a probe
	})
	if apps, hbs := sent(out, replicating); fmt.Sprint(apps) != "[MsgApp@0+1]" || hbs != 0 {
		t.Errorf("to the replicating follower: appends %v (anchor above its match + entries), %d heartbeats; want [MsgApp@0+1], 0 (it was sent entries in this Ready)", apps, hbs)
	}
	// The heartbeats due within heartbeatQuietTicks of those entries are
	// left out too; the first one due after goes, and so do one carrying
	// a read's context and one to a follower that is not replicated to,
	// entries or not. (Moving the replica's tick count forward only makes
	// its pending work due earlier.)
	quiet := s.heartbeatQuietTicks()
	if quiet < 3 {
		t.Fatalf("heartbeatQuietTicks %d with ElectionTicks %d; want 3 or more", quiet, s.cfg.ElectionTicks)
	}
	base := r.mu.ticks
	for k := uint64(1); k < quiet; k++ {
		r.mu.ticks = base + k
		out = newOutbox(s)
		r.sendLocked(out, []*raftpb.Message{msg(replicating, raftpb.MsgHeartbeat, 0, 0)})
		if _, hbs := sent(out, replicating); hbs != 0 {
			t.Errorf("%d ticks after entries went: %d heartbeats; want 0 (within %d ticks)", k, hbs, quiet)
		}
	}
	r.mu.ticks = base + quiet
	hb := msg(replicating, raftpb.MsgHeartbeat, 0, 0)
	readHB := msg(replicating, raftpb.MsgHeartbeat, 0, 0)
	readHB.Context = []byte("read-id1")
	out = newOutbox(s)
	r.sendLocked(out, []*raftpb.Message{hb, msg(replicating, raftpb.MsgApp, match+1, 1), readHB,
		msg(probed, raftpb.MsgApp, commit, 1), msg(probed, raftpb.MsgHeartbeat, 0, 0)})
	if _, hbs := sent(out, replicating); hbs != 2 {
		t.Errorf("to the replicating follower, %d ticks after entries went: %d heartbeats; want 2 (the one due, the read's)", quiet, hbs)
	}
	if _, hbs := sent(out, probed); hbs != 1 {
		t.Errorf("to the probed follower: %d heartbeats; want 1", hbs)
	}
	if apps, _ := sent(out, probed); len(apps) != 1 {
		t.Errorf("to the probed follower: appends %v; want its empty probe", apps)
	}
	// Entries went again with that heartbeat: the next one due is left out.
	r.mu.ticks = base + quiet + 1
	out = newOutbox(s)
	r.sendLocked(out, []*raftpb.Message{msg(replicating, raftpb.MsgHeartbeat, 0, 0)})
	if _, hbs := sent(out, replicating); hbs != 0 {
		t.Errorf("a tick after entries went again: %d heartbeats; want 0", hbs)
	}
	r.mu.appendedAt = nil

	// A heartbeat response from the follower was stepped: raft's empty
	// append in answer goes (once).
	r.mu.heartbeatResps = map[uint64]bool{replicating: true}
	out = newOutbox(s)
	r.sendLocked(out, []*raftpb.Message{msg(replicating, raftpb.MsgApp, match+1, 0)})
	if apps, _ := sent(out, replicating); fmt.Sprint(apps) != "[MsgApp@1+0]" {
		t.Errorf("after a heartbeat response: appends %v; want [MsgApp@1+0]", apps)
	}
	out = newOutbox(s)
	r.sendLocked(out, []*raftpb.Message{msg(replicating, raftpb.MsgApp, match+1, 0)})
	if apps, _ := sent(out, replicating); len(apps) != 0 {
		t.Errorf("the Ready after: appends %v; want none", apps)
	}
}

// allReplicating reports whether the leader r replicates to every one of
// followers (each is in StateReplicate), or is no longer leader (the
// caller's own check skips then).
func allReplicating(r *Replica, followers []uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.rn.BasicStatus().RaftState != raft.StateLeader {
		return true
	}
	n := 0
	r.mu.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		for _, f := range followers {
			if id == f && pr.State == tracker.StateReplicate {
				n++
			}
		}
	})
	return n == len(followers)
}

// TestStatusFollowers checks that a leader's status lists its view of each
// follower's log, and that a follower's lists none.
func TestStatusFollowers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, s, r := warmUserRange(t, ctx)
	var want []uint64
	for _, rd := range r.desc.Load().GetReplicas() {
		if rd.GetNodeId() != s.d.NodeID {
			want = append(want, rd.GetReplicaId())
		}
	}
	slices.Sort(want)
	var last *kvpb.ReplicaStatus
	waitFor(t, 10*time.Second, "followers caught up in the leader's status", func() bool {
		last = r.Status()
		fs := last.GetFollowers()
		if len(fs) != len(want) {
			return false
		}
		for i, f := range fs {
			if f.GetReplicaId() != want[i] || f.GetState() != "replicate" || f.GetMatch() != last.GetLastIndex() || f.GetNext() != last.GetLastIndex()+1 {
				return false
			}
		}
		return true
	})
	if last.GetRaftState() != "leader" {
		t.Skip("leadership moved")
	}
	for _, rd := range r.desc.Load().GetReplicas() {
		if rd.GetNodeId() == s.d.NodeID {
			continue
		}
		if st := c.store(rd.GetNodeId()).Replica(r.rangeID).Status(); st.GetRaftState() == "follower" && len(st.GetFollowers()) != 0 {
			t.Errorf("follower on node %d lists followers %v", rd.GetNodeId(), st.GetFollowers())
		}
	}
}

// TestDeleteRangeInOnePass checks a DeleteRange applied in the same pass
// as writes before and after it (one round's proposals, applied together):
// it removes the engine's keys of its span and the pass's earlier writes
// there, counts each live key once, and leaves the later writes; an open
// end reaches past the last key.
func TestDeleteRangeInOnePass(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, s, r := warmUserRange(t, ctx)
	for _, k := range []string{"m0", "m1", "m5", "n0", "zz"} {
		if err := c.put(ctx, k, "old"); err != nil {
			t.Fatal(err)
		}
	}
	put := func(k string) *raftmsgpb.Op {
		return &raftmsgpb.Op{Op: &raftmsgpb.Op_Put{Put: &kvpb.PutRequest{Key: []byte(k), Value: []byte("new")}}}
	}
	del := func(k string) *raftmsgpb.Op {
		return &raftmsgpb.Op{Op: &raftmsgpb.Op_Delete{Delete: &kvpb.DeleteRequest{Key: []byte(k)}}}
	}
	delRange := func(start, end string) *raftmsgpb.Op {
		dr := &kvpb.DeleteRangeRequest{Start: []byte(start)}
		if end != "" {
			dr.End = []byte(end)
		}
		return &raftmsgpb.Op{Op: &raftmsgpb.Op_DeleteRange{DeleteRange: dr}}
	}
	cmds := [][]*raftmsgpb.Op{
		{put("m2")}, {del("m1")}, {put("m1"), put("m3")}, // m0 m1 m2 m3 m5 live in [m, n)
		{delRange("m", "n")},             // 5 removed
		{del("m2"), del("m5")},           // gone already: not deleted
		{put("m4")},                      // after it: stays
		{delRange("m4", "m5")},           // 1 removed
		{put("m6")}, {delRange("n", "")}, // n0, warm, zz: to the end
	}
	props := make([]*proposal, len(cmds))
	r.in.Lock()
	for i, ops := range cmds {
		props[i] = &proposal{ops: ops, ts: s.d.Clock.Now(), done: make(chan proposalResult, 1)}
		r.in.props = append(r.in.props, props[i])
	}
	r.in.Unlock()
	s.enqueue(r.rangeID)
	var counts []uint64
	for i, p := range props {
		select {
		case res := <-p.done:
			if res.err != nil {
				t.Fatalf("command %d: %v", i, res.err)
			}
			if cmds[i][0].GetDeleteRange() != nil {
				counts = append(counts, res.res.Count)
			}
			if d := cmds[i][0].GetDelete(); d != nil && string(d.GetKey()) == "m2" && (res.res.Deleted[0] || res.res.Deleted[1]) {
				t.Errorf("m2 (the pass's write) and m5 (the engine's), removed by the DeleteRange before, reported deleted again: %v", res.res.Deleted)
			}
		case <-ctx.Done():
			t.Fatalf("command %d not answered", i)
		}
	}
	if fmt.Sprint(counts) != "[5 1 3]" {
		t.Errorf("DeleteRange counts %v; want [5 1 3]", counts)
	}
	resp, err := s.Scan(ctx, &kvpb.ScanRequest{Start: []byte("m")}) // linearizable: waits for the apply to be written
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range resp.GetKvs() {
		got = append(got, string(kv.GetKey()))
	}
	if fmt.Sprint(got) != "[m6]" {
		t.Errorf("keys from m: %v; want [m6]", got)
	}
}

// TestLateMessagesRideNextRound checks that a node whose leaders sent
// before a round's write, with the next round due at once, sends that
// round's late messages (acknowledgements of appends) in the next round's
// early frames, and that a node leading no range sends them at once (no
// acknowledgement of its waits for a round of its own).
func TestLateMessagesRideNextRound(t *testing.T) {
	load := func(t *testing.T, ctx context.Context, c *testCluster, descs []*kvpb.RangeDescriptor) {
		t.Helper()
		errs := make(chan error, 16)
		for w := range 16 {
			go func() {
				var err error
				for i := range 40 {
					d := descs[1+(w+i)%(len(descs)-1)]
					key := fmt.Sprintf("%s%02d-%03d", d.GetStartKey(), w, i)
					if err = c.put(ctx, key, "v"); err != nil {
						break
					}
				}
				errs <- err
			}()
		}
		for range 16 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if v, ok, err := c.get(ctx, fmt.Sprintf("%s%02d-%03d", descs[1].GetStartKey(), 0, 0)); err != nil || !ok || v != "v" {
			t.Fatalf("a put read back: %q, %v, %v", v, ok, err)
		}
	}
	t.Run("leaders on every node", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		c := newTestCluster(t, 3, nil)
		descs := c.bootstrap(&kvpb.InitRequest{InitialRanges: 6})
		c.waitLeaders(descs)
		led := map[uint64][]uint64{}
		for _, d := range descs[1:] {
			n := c.leaderOf(d.GetRangeId())
			led[n] = append(led[n], d.GetRangeId())
		}
		for _, id := range c.ids {
			if len(led[id]) > 0 {
				continue
			}
			for from, ids := range led {
				if len(ids) > 1 {
					c.transferLeader(ids[0], from, id)
					led[from], led[id] = ids[1:], ids[:1]
					waitFor(t, 10*time.Second, "the leadership transfer", func() bool { return c.leaderOf(ids[0]) == id })
					break
				}
			}
		}
		load(t, ctx, c, descs)
		var carried uint64
		for _, id := range c.ids {
			carried += c.store(id).Stats().CarriedRounds
		}
		if carried == 0 {
			t.Error("no round's late messages rode with the next round's, with leaders on every node under load")
		}
	})
	t.Run("a node leading nothing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		c := newTestCluster(t, 3, nil)
		descs := c.bootstrap(&kvpb.InitRequest{})
		c.waitLeaders(descs)
		var idle uint64
		for _, id := range c.ids {
			if id != c.leaderOf(descs[0].GetRangeId()) && id != c.leaderOf(descs[1].GetRangeId()) {
				idle = id
			}
		}
		load(t, ctx, c, descs)
		if c.leaderOf(descs[0].GetRangeId()) == idle || c.leaderOf(descs[1].GetRangeId()) == idle {
			t.Skip("leadership moved")
		}
		if n := c.store(idle).Stats().CarriedRounds; n != 0 {
			t.Errorf("node %d, leading nothing, held its late messages for the next round %d times; want none", idle, n)
		}
	})
}

// TestStoppedLeaderAnswersWritesInFlightUnknown: a leader that stops with
// a write in the other replicas' logs but not yet committed answers it
// DeadlineExceeded (outcome unknown), not Unavailable, which says nothing
// was done (over the wire, nothing else tells the two apart): the next
// leader commits it.
func TestStoppedLeaderAnswersWritesInFlightUnknown(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, s, r := warmUserRange(t, ctx)
	leader := s.d.NodeID
	lastIndex := func(r *Replica) uint64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		i, _ := r.mu.log.LastIndex()
		return i
	}
	before := lastIndex(r)
	// The followers take the leader's appends but their answers are
	// lost: the write reaches their logs and does not commit.
	var followers []uint64
	for _, id := range c.ids {
		if id != leader {
			followers = append(followers, id)
			c.net.SetBlocked(id, leader, true)
		}
	}
	putErr := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, &kvpb.PutRequest{Key: []byte("warm"), Value: []byte("v2")})
		putErr <- err
	}()
	waitFor(t, 5*time.Second, "the write to reach the followers' logs", func() bool {
		last := lastIndex(r)
		if last <= before {
			return false
		}
		for _, id := range followers {
			if lastIndex(c.store(id).Replica(r.rangeID)) < last {
				return false
			}
		}
		return true
	})
	c.stop(leader)
	err := <-putErr
	if code := bus.CodeOf(err); code != bus.CodeDeadlineExceeded {
		t.Fatalf("write in flight at a stopping leader answered %v (code %v); want DeadlineExceeded (outcome unknown)", err, code)
	}
	c.net.Heal()
	if v, ok, err := c.get(ctx, "warm"); err != nil || !ok || v != "v2" {
		t.Fatalf("warm after the stopped leader's write: %q %v %v; want v2 (committed by the next leader)", v, ok, err)
	}
}

// TestAbandonedProposalKeepsClosedBelow: a leader's command whose caller
// gave up stays tracked until it applies, so the side-channel closed
// timestamp stays below it (a follower would otherwise serve reads at a
// timestamp above a write that applies after); once applied, it is
// forgotten and the promise may pass it.
func TestAbandonedProposalKeepsClosedBelow(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, s, r := warmUserRange(t, ctx)
	if _, _, err := c.get(ctx, "warm"); err != nil { // a lease read: the leader holds its lease
		t.Fatal(err)
	}
	put := &kvpb.PutRequest{Key: []byte("abandoned"), Value: []byte("v")}
	p := &proposal{ops: []*raftmsgpb.Op{{Op: &raftmsgpb.Op_Put{Put: put}}}, ts: s.d.Clock.Now(), done: make(chan proposalResult, 1)}
	r.mu.Lock()
	r.proposeLocked([]*proposal{p})
	if r.mu.pending[p.seq] != p {
		r.mu.Unlock()
		t.Fatal("the command was not proposed")
	}
	p.abandoned.Store(true) // its caller gives up
	r.onTickLocked()
	promise, ok := r.closeSideLocked(s.d.Clock.Now(), time.Now())
	r.mu.Unlock()
	s.enqueue(r.rangeID)
	if !ok {
		t.Fatal("the leader made no side-channel promise (no lease?)")
	}
	if !promise.ts.Less(p.ts) {
		t.Errorf("side-channel promise %v with an abandoned command at %v in flight; want below it", promise.ts, p.ts)
	}
	waitFor(t, 10*time.Second, "the abandoned command applied and forgotten", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.mu.pending[p.seq] == nil
	})
	if v, found, err := c.get(ctx, "abandoned"); err != nil || !found || v != "v" {
		t.Errorf("get abandoned = %q, %v, %v; want v", v, found, err)
	}
	r.mu.Lock()
	after, ok := r.closeSideLocked(s.d.Clock.Now(), time.Now())
	r.mu.Unlock()
	if !ok || !p.ts.Less(after.ts) {
		t.Errorf("promise after the command applied: %v, %v; want above %v", after.ts, ok, p.ts)
	}
}
