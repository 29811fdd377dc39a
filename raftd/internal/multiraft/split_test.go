package multiraft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// split runs AdminSplit at key through any node, retrying what a client
// retries.
func (c *testCluster) split(ctx context.Context, key string) (*kvpb.AdminSplitResponse, error) {
	var resp *kvpb.AdminSplitResponse
	err := c.do(ctx, func(ctx context.Context, s *Store) error {
		var err error
		resp, err = s.AdminSplit(ctx, &kvpb.AdminSplitRequest{Key: []byte(key)})
		return err
	})
	return resp, err
}

// metaDescs reads the meta range's descriptors through node id.
func (c *testCluster) metaDescs(ctx context.Context, id uint64) []*kvpb.RangeDescriptor {
	c.t.Helper()
	// Linearizable, as clients read them: while the meta range elects a
	// leader (after a restart, say) the node answers "not leader"; wait
	// for one, as the client's retries do.
	for {
		resp, err := c.store(id).Descriptors(ctx, &kvpb.DescriptorsRequest{})
		if err == nil {
			return resp.GetDescriptors()
		}
		if !errors.Is(err, bus.ErrNotLeader) || ctx.Err() != nil {
			c.t.Fatalf("Descriptors on node %d: %v", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkCover fails unless descs cover the keyspace exactly once, in order.
func checkCover(t *testing.T, descs []*kvpb.RangeDescriptor) {
	t.Helper()
	var prev []byte
	for i, d := range descs {
		if i > 0 && !bytes.Equal(d.GetStartKey(), prev) {
			t.Fatalf("descriptors do not tile the keyspace: range %d starts at %q after an end at %q (%v)", d.GetRangeId(), d.GetStartKey(), prev, descs)
		}
		prev = d.GetEndKey()
	}
	if len(prev) != 0 {
		t.Fatalf("last range ends at %q, not at the end of the keyspace", prev)
	}
}

func TestAdminSplit(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := range 20 {
		if err := c.put(ctx, fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// A session's write applied before the split: its retry after the
	// split, on either side, answers as it did and applies nothing more.
	sess := &kvpb.Session{Id: bytes.Repeat([]byte{7}, 16), Seq: 1, FirstUnacked: 1, IssuedNanos: c.clocks[1].Now().WallTime}
	var first *kvpb.PutResponse
	if err := c.do(ctx, func(ctx context.Context, s *Store) error {
		var err error
		first, err = s.Put(ctx, &kvpb.PutRequest{Header: &kvpb.Header{Session: sess}, Key: []byte("k15"), Value: []byte("once")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	before := c.metaDescs(ctx, 1)
	resp, err := c.split(ctx, "k10")
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	left, right := resp.GetLeft(), resp.GetRight()
	if left.GetRangeId() != 2 || string(left.GetEndKey()) != "k10" || string(right.GetStartKey()) != "k10" || len(right.GetEndKey()) != 0 ||
		left.GetGeneration() != 2 || right.GetGeneration() != 2 || right.GetRangeId() <= 2 {
		t.Fatalf("split answered left %v right %v", left, right)
	}
	if len(right.GetReplicas()) != 3 {
		t.Fatalf("right range replicas %v; want the left's 3", right.GetReplicas())
	}
	// Every node holds both sides, with the new descriptors.
	waitFor(t, 5*time.Second, "both sides on every node", func() bool {
		for _, id := range c.ids {
			l, r := c.store(id).Replica(left.GetRangeId()), c.store(id).Replica(right.GetRangeId())
			if l == nil || r == nil || !proto.Equal(l.Descriptor(), left) || !proto.Equal(r.Descriptor(), right) {
				return false
			}
		}
		return true
	})
	// The meta range agrees and still tiles the keyspace (node 2's meta
	// replica may apply the split's meta update a moment later).
	var after []*kvpb.RangeDescriptor
	waitFor(t, 5*time.Second, "meta on node 2 to hold the split's two sides", func() bool {
		after = c.metaDescs(ctx, 2)
		return len(after) == len(before)+1
	})
	checkCover(t, after)
	for _, d := range after {
		if d.GetRangeId() == left.GetRangeId() && !proto.Equal(d, left) || d.GetRangeId() == right.GetRangeId() && !proto.Equal(d, right) {
			t.Fatalf("meta has %v; split made %v and %v", d, left, right)
		}
	}
	// A command for a right-side key that reaches the left range (routed
	// before the split) is refused at apply with the left's descriptor,
	// and changes nothing.
	waitFor(t, 5*time.Second, "a leader for the left range", func() bool { return c.leaderOf(left.GetRangeId()) != 0 })
	lr := c.store(c.leaderOf(left.GetRangeId())).Replica(left.GetRangeId())
	_, err = lr.Propose(ctx, []*raftmsgpb.Op{{Op: &raftmsgpb.Op_Put{Put: &kvpb.PutRequest{Key: []byte("k19"), Value: []byte("stray")}}}}, nil)
	if !isMismatch(err) {
		t.Fatalf("left range's put of a right-side key = %v; want RangeKeyMismatch", err)
	}
	detail := &kvpb.DescriptorsResponse{}
	if err := proto.Unmarshal(bus.DetailOf(err), detail); err != nil || len(detail.GetDescriptors()) != 1 || !proto.Equal(detail.GetDescriptors()[0], left) {
		t.Fatalf("mismatch detail = %v, %v; want the left descriptor", detail, err)
	}
	if v, _, err := c.get(ctx, "k19"); err != nil || v != "v19" {
		t.Fatalf("k19 = %q, %v after a refused stray write", v, err)
	}
	// Reads and writes on both sides, from every node.
	for _, id := range c.ids {
		for _, k := range []string{"k03", "k17"} {
			resp, err := c.store(id).Get(ctx, &kvpb.GetRequest{Key: []byte(k)})
			if err != nil || !resp.GetFound() {
				t.Fatalf("node %d Get(%s) after split = %v, %v", id, k, resp, err)
			}
		}
	}
	if err := c.put(ctx, "k18", "right"); err != nil {
		t.Fatal(err)
	}
	if err := c.put(ctx, "k01", "left"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a leader for the right range", func() bool { return c.leaderOf(right.GetRangeId()) != 0 })
	// The retry of the session's write is answered from the right side's
	// copy of the session: same timestamp, nothing applied again.
	if err := c.put(ctx, "k15", "overwritten"); err != nil {
		t.Fatal(err)
	}
	var again *kvpb.PutResponse
	if err := c.do(ctx, func(ctx context.Context, s *Store) error {
		var err error
		again, err = s.Put(ctx, &kvpb.PutRequest{Header: &kvpb.Header{Session: sess}, Key: []byte("k15"), Value: []byte("once")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(again.GetTimestamp(), first.GetTimestamp()) {
		t.Fatalf("retried write answered %v, first answer %v: applied twice", again.GetTimestamp(), first.GetTimestamp())
	}
	if v, _, err := c.get(ctx, "k15"); err != nil || v != "overwritten" {
		t.Fatalf("k15 = %q, %v; the retried write applied again", v, err)
	}
	// Writes after the split carry timestamps above every earlier write
	// of the left range on the right side.
	// A scan across the split sees both sides in order.
	var scan *kvpb.ScanResponse
	if err := c.do(ctx, func(ctx context.Context, s *Store) error {
		var err error
		scan, err = s.Scan(ctx, &kvpb.ScanRequest{Start: []byte("k"), End: []byte("l")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(scan.GetKvs()) != 20 {
		t.Fatalf("scan across the split returned %d keys, want 20", len(scan.GetKvs()))
	}
	for i, kv := range scan.GetKvs() {
		if want := fmt.Sprintf("k%02d", i); string(kv.GetKey()) != want {
			t.Fatalf("scan key %d = %q, want %q", i, kv.GetKey(), want)
		}
	}
	// A reverse scan pages across the split too.
	var rev *kvpb.ScanResponse
	if err := c.do(ctx, func(ctx context.Context, s *Store) error {
		var err error
		rev, err = s.Scan(ctx, &kvpb.ScanRequest{Start: []byte("k05"), End: []byte("k15"), Reverse: true, Limit: 7})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(rev.GetKvs()) != 7 || string(rev.GetKvs()[0].GetKey()) != "k14" || string(rev.GetKvs()[6].GetKey()) != "k08" || string(rev.GetResumeKey()) != "k08" {
		t.Fatalf("reverse scan = %d keys from %q, resume %q", len(rev.GetKvs()), rev.GetKvs()[0].GetKey(), rev.GetResumeKey())
	}
	// A delete range across the split removes both sides' keys.
	var del *kvpb.DeleteRangeResponse
	if err := c.do(ctx, func(ctx context.Context, s *Store) error {
		var err error
		del, err = s.DeleteRange(ctx, &kvpb.DeleteRangeRequest{Start: []byte("k08"), End: []byte("k12")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if del.GetDeleted() != 4 {
		t.Fatalf("DeleteRange across the split deleted %d, want 4", del.GetDeleted())
	}
	st := c.store(1).Stats()
	if st.Splits != 1 {
		t.Fatalf("node 1 counts %d splits, want 1", st.Splits)
	}
}

func TestAdminSplitBadInput(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("m")}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "a", "x"); err != nil {
		t.Fatal(err)
	}
	before := c.metaDescs(ctx, 1)
	for _, key := range []string{"\x01", "", "\x00meta/x", "\xff\xff\x01"} {
		_, err := c.split(ctx, key)
		if !errors.Is(err, bus.ErrInvalidArgument) {
			t.Errorf("split at %q = %v; want InvalidArgument", key, err)
		}
	}
	after := c.metaDescs(ctx, 2)
	if len(after) != len(before) {
		t.Fatalf("refused splits changed meta: %v -> %v", before, after)
	}
	for _, id := range c.ids {
		if n := len(c.store(id).Replicas()); n != 3 {
			t.Fatalf("node %d has %d replicas after refused splits, want 3", id, n)
		}
	}
}

// TestAdminSplitIdempotent splits twice at one key, as a client retrying
// a split whose answer was lost does: the second answers the same
// descriptors and changes nothing. A split at an initial split point is
// the same no-op.
func TestAdminSplitIdempotent(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("m")}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	first, err := c.split(ctx, "g")
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	// Every node applied it, so any node may serve the retry.
	waitFor(t, 5*time.Second, "both sides on every node", func() bool {
		for _, id := range c.ids {
			l, r := c.store(id).Replica(first.GetLeft().GetRangeId()), c.store(id).Replica(first.GetRight().GetRangeId())
			if l == nil || r == nil || !proto.Equal(l.Descriptor(), first.GetLeft()) || !proto.Equal(r.Descriptor(), first.GetRight()) {
				return false
			}
		}
		return true
	})
	before := c.metaDescs(ctx, 1)
	again, err := c.split(ctx, "g")
	if err != nil {
		t.Fatalf("retried split: %v", err)
	}
	if !proto.Equal(again.GetLeft(), first.GetLeft()) || !proto.Equal(again.GetRight(), first.GetRight()) {
		t.Fatalf("retried split answered %v / %v; first answered %v / %v", again.GetLeft(), again.GetRight(), first.GetLeft(), first.GetRight())
	}
	atM, err := c.split(ctx, "m")
	if err != nil {
		t.Fatalf("split at the initial split point: %v", err)
	}
	if string(atM.GetLeft().GetEndKey()) != "m" || string(atM.GetRight().GetStartKey()) != "m" || atM.GetLeft().GetRangeId() != first.GetRight().GetRangeId() {
		t.Fatalf("split at an existing boundary answered %v / %v", atM.GetLeft(), atM.GetRight())
	}
	after := c.metaDescs(ctx, 2)
	if len(after) != len(before) {
		t.Fatalf("no-op splits changed meta: %v -> %v", before, after)
	}
	for i := range after {
		if !proto.Equal(after[i], before[i]) {
			t.Fatalf("no-op splits changed meta: %v -> %v", before[i], after[i])
		}
	}
	for _, id := range c.ids {
		if n := len(c.store(id).Replicas()); n != len(before) {
			t.Fatalf("node %d has %d replicas after no-op splits, want %d", id, n, len(before))
		}
		if st := c.store(id).Stats(); st.Splits != 1 {
			t.Fatalf("node %d counts %d splits, want 1", id, st.Splits)
		}
	}
	// Ranges gives each range's size on its leader: [g, m) holds the
	// only user data (the meta range holds the descriptors).
	if err := c.put(ctx, "h", "a value of some size"); err != nil {
		t.Fatal(err)
	}
	mid := first.GetRight().GetRangeId()
	waitFor(t, 5*time.Second, "a leader for the middle range", func() bool { return c.leaderOf(mid) != 0 })
	// A leader elected since the put may not have applied it yet: wait
	// for every answer to agree.
	var wrong string
	defer func() {
		if t.Failed() && wrong != "" {
			t.Log("last disagreement:", wrong)
		}
	}()
	waitFor(t, 10*time.Second, "sizes on the leaders of the ranges holding data only", func() bool {
		wrong = ""
		for _, id := range c.ids {
			resp, err := c.store(id).Ranges(ctx, &kvpb.RangesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.GetReplicas() {
				rid, leader := r.GetDescriptor_().GetRangeId(), r.GetRaftState() == "leader"
				if want := leader && (rid == mid || rid == MetaRangeID); (r.GetApproximateBytes() > 0) != want {
					wrong = fmt.Sprintf("node %d range %d (leader %v) approximate bytes %d", id, rid, leader, r.GetApproximateBytes())
					return false
				}
			}
		}
		return true
	})
}

// TestSplitRestart splits, crashes every node and checks both sides come
// back from the engines.
func TestSplitRestart(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := c.put(ctx, k, "v-"+k); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := c.split(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.split(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	for _, id := range c.ids {
		c.crash(id)
	}
	for _, id := range c.ids {
		c.start(id)
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		if v, ok, err := c.get(ctx, k); err != nil || !ok || v != "v-"+k {
			t.Fatalf("after restart Get(%s) = %q %v %v", k, v, ok, err)
		}
	}
	for _, id := range c.ids {
		if r := c.store(id).Replica(resp.GetRight().GetRangeId()); r == nil || !proto.Equal(r.Descriptor(), resp.GetRight()) {
			t.Fatalf("node %d lost the right range across a restart", id)
		}
		if n := len(c.store(id).Replicas()); n != 4 {
			t.Fatalf("node %d has %d replicas after restart, want 4", id, n)
		}
	}
	// Node 1's meta replica serves its applied state: it may still be
	// replaying its log.
	waitFor(t, 10*time.Second, "meta to list the 4 ranges", func() bool { return len(c.metaDescs(ctx, 1)) == 4 })
	checkCover(t, c.metaDescs(ctx, 1))
}

// TestSplitLinearizable records gets and puts from concurrent clients on
// every node while ranges split under them (one of the splits with its
// range's leader crashed right after, one with its leadership moved) and
// checks the history with porcupine.
func TestSplitLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("fault run")
	}
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := c.put(ctx, "warm", "x"); err != nil {
		t.Fatal(err)
	}
	keys := []string{"a1", "a7", "m1", "m7", "t1", "z1"}
	h, stop, wait := c.recordHistory(ctx, keys, 6)
	restarted := make(chan struct{})
	for i, key := range []string{"m", "t", "a5", "m5", "z"} {
		time.Sleep(150 * time.Millisecond)
		if i == 4 {
			// kill -9 of the splitting range's leader while the split is
			// under way: before or after the trigger applies, the split
			// happens once or not at all, and a retry finishes it.
			victim := c.leaderOf(rangeOf(c, key))
			go func() {
				defer close(restarted)
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
				c.crash(victim)
				time.Sleep(200 * time.Millisecond)
				c.start(victim)
			}()
		}
		resp, err := c.split(ctx, key)
		for err != nil && i == 4 && ctx.Err() == nil {
			// Refused as done already, or cut by the crash: look.
			if d := c.descOf(rangeOf(c, key)); d != nil && bytes.Equal(d.GetStartKey(), []byte(key)) {
				resp, err = &kvpb.AdminSplitResponse{Right: d, Left: d}, nil
				break
			}
			time.Sleep(50 * time.Millisecond)
			resp, err = c.split(ctx, key)
		}
		if err != nil {
			t.Fatalf("split at %q: %v", key, err)
		}
		switch i {
		case 1:
			// The leader of the new right range goes down at once.
			waitFor(t, 5*time.Second, "a leader of the new range", func() bool { return c.leaderOf(resp.GetRight().GetRangeId()) != 0 })
			victim := c.leaderOf(resp.GetRight().GetRangeId())
			c.crash(victim)
			time.Sleep(200 * time.Millisecond)
			c.start(victim)
		case 3:
			// The left side's leadership moves while it is written.
			leader := c.leaderOf(resp.GetLeft().GetRangeId())
			to := c.ids[0]
			if to == leader {
				to = c.ids[1]
			}
			if leader != 0 {
				tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
				if _, err := c.store(leader).TransferLeader(tctx, &kvpb.TransferLeaderRequest{RangeId: resp.GetLeft().GetRangeId(), NodeId: to}); err != nil {
					t.Errorf("transfer leader of range %d from %d to %d: %v", resp.GetLeft().GetRangeId(), leader, to, err)
				}
				tcancel()
			}
		}
	}
	<-restarted
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wait()
	waitFor(t, 10*time.Second, "meta to list the 7 ranges", func() bool { return len(c.metaDescs(ctx, 1)) == 7 })
	checkCover(t, c.metaDescs(ctx, 1))
	c.checkHistory(t, h)
}

// checkHistory fails unless h (recorded by c.recordHistory) is big
// enough to mean something and linearizable. On a violation it logs each
// bad key's operations, the puts refused with an error taken as "nothing
// applied" whose value a get returned anyway, and the path of an HTML
// visualization of the check.
func (c *testCluster) checkHistory(t *testing.T, h *kvclienttest.History) {
	t.Helper()
	gets, puts, _, unknown := h.Counts()
	t.Logf("history: %d puts (%d of unknown outcome), %d gets", puts, unknown, gets)
	if gets < 50 || puts < 50 {
		t.Fatalf("history too small to mean anything: %d puts, %d gets", puts, gets)
	}
	switch res, bad := h.Check(30 * time.Second); res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Log("linearizability check timed out (no violation found)")
	default:
		for _, key := range bad {
			var sb strings.Builder
			if err := h.Dump(&sb, key); err == nil {
				t.Logf("operations on %s:\n%s", key, sb.String())
			}
		}
		c.refused.Lock()
		for v, why := range c.refused.puts {
			if c.refused.read[v] {
				t.Logf("a get returned %q, written by a put refused (not in the history): %s", v, why)
			}
		}
		c.refused.Unlock()
		path := filepath.Join(os.TempDir(), fmt.Sprintf("pleiades-%s-%d.html", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano()))
		if err := h.Visualize(path, 30*time.Second); err != nil {
			t.Logf("visualize the history: %v", err)
		} else {
			t.Logf("history visualization: %s", path)
		}
		t.Fatalf("history is not linearizable (%s) on keys %v", res, bad)
	}
}

// recordHistory runs clients doing gets and puts of keys through random
// nodes until stop is closed (then call wait), recording what they saw
// (and, in c.refused, the puts refused as not applied and the values
// gets returned, for checkHistory's post-mortem).
func (c *testCluster) recordHistory(ctx context.Context, keys []string, clients int) (h *kvclienttest.History, stop chan struct{}, wait func()) {
	h = kvclienttest.NewHistory()
	start := time.Now() // the history's start, within microseconds
	stop = make(chan struct{})
	c.refused.Lock()
	c.refused.puts, c.refused.read = map[string]string{}, map[string]bool{}
	c.refused.Unlock()
	var wg sync.WaitGroup
	for client := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(client), 7))
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				s := c.store(c.ids[rng.IntN(len(c.ids))])
				if s == nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				op := kvclienttest.Op{Kind: kvclienttest.OpGet, Key: keys[rng.IntN(len(keys))]}
				if rng.IntN(2) == 0 {
					op.Kind, op.Value = kvclienttest.OpPut, fmt.Sprintf("c%d-%d", client, seq)
				}
				actx, acancel := context.WithTimeout(ctx, 300*time.Millisecond)
				call := time.Now()
				var out kvclienttest.Outcome
				var err error
				if op.Kind == kvclienttest.OpPut {
					_, err = s.Put(actx, &kvpb.PutRequest{Key: []byte(op.Key), Value: []byte(op.Value)})
				} else {
					var resp *kvpb.GetResponse
					resp, err = s.Get(actx, &kvpb.GetRequest{Key: []byte(op.Key)})
					out = kvclienttest.Outcome{Value: string(resp.GetValue().GetValue()), Found: resp.GetFound()}
				}
				ret := time.Now()
				acancel()
				if err != nil {
					// Refused before proposing, or refused at apply
					// because a split moved the key: nothing applied.
					definite := (errors.Is(err, bus.ErrUnavailable) || errors.Is(err, bus.ErrNotLeader) || isMismatch(err)) && !errors.Is(err, ErrStopped)
					if op.Kind == kvclienttest.OpPut && definite {
						c.refused.Lock()
						c.refused.puts[op.Value] = fmt.Sprintf("put(%s, %q) at node %d, %dus..%dus into the history: %v",
							op.Key, op.Value, s.d.NodeID, call.Sub(start).Microseconds(), ret.Sub(start).Microseconds(), err)
						c.refused.Unlock()
					}
					if op.Kind == kvclienttest.OpGet || definite {
						time.Sleep(2 * time.Millisecond)
						continue
					}
					out.Unknown = true
				}
				if op.Kind == kvclienttest.OpGet && out.Found {
					c.refused.Lock()
					c.refused.read[out.Value] = true
					c.refused.Unlock()
				}
				h.Add(client, op, out, call, ret)
			}
		}()
	}
	return h, stop, wg.Wait
}

// TestSplitBySize writes sequential keys into one range with a small
// SplitBytes: leaders split it by size, at the middle, as it grows; every
// key stays readable and meta tiles the keyspace.
func TestSplitBySize(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.SplitBytes = 32 << 10 })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	value := string(bytes.Repeat([]byte("v"), 1000))
	for i := range 200 {
		if err := c.put(ctx, fmt.Sprintf("k%04d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	// No range keeps much more than the threshold (64 keys of 1 KB).
	biggest := func() int {
		most := 0
		for _, d := range c.metaDescs(ctx, 1)[1:] {
			var resp *kvpb.ScanResponse
			if err := c.do(ctx, func(ctx context.Context, s *Store) error {
				var err error
				resp, err = s.Scan(ctx, &kvpb.ScanRequest{Start: d.GetStartKey(), End: d.GetEndKey(), KeysOnly: true, Limit: 1000})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			most = max(most, len(resp.GetKvs()))
		}
		return most
	}
	waitFor(t, 20*time.Second, "the range to split by size until every range is below 64 KB", func() bool { return biggest() <= 64 })
	descs := c.metaDescs(ctx, 1)
	checkCover(t, descs)
	if len(descs) < 5 {
		t.Fatalf("%d ranges after writing 200 KB with splits at 32 KiB", len(descs))
	}
	var auto uint64
	for _, id := range c.ids {
		auto += c.store(id).Stats().AutoSplits
	}
	if auto == 0 {
		t.Fatal("no split counted as automatic")
	}
	for i := range 200 {
		if v, ok, err := c.get(ctx, fmt.Sprintf("k%04d", i)); err != nil || !ok || v != value {
			t.Fatalf("k%04d after automatic splits: %v %v", i, ok, err)
		}
	}
}

// rangeOf returns the id of the range holding key, as a live node's
// replicas know it (0: none found).
func rangeOf(c *testCluster, key string) uint64 {
	for _, id := range c.ids {
		if s := c.store(id); s != nil {
			if r := s.ReplicaForKey([]byte(key)); r != nil {
				return r.rangeID
			}
		}
	}
	return 0
}

// descOf returns the descriptor of rangeID held by its leader, or nil.
func (c *testCluster) descOf(rangeID uint64) *kvpb.RangeDescriptor {
	for _, id := range c.ids {
		if s := c.store(id); s != nil {
			if r := s.Replica(rangeID); r != nil && r.IsLeader() {
				return r.Descriptor()
			}
		}
	}
	return nil
}

// TestSplitByLoad sends a steady stream of reads and writes over keys a to
// z to one range with a low SplitQPS: its leader splits it at the median
// of the keys it sampled, and the data stays whole.
func TestSplitByLoad(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.SplitQPS = 200 })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var loads uint64
	for i := 0; loads == 0 && ctx.Err() == nil; i++ {
		key := fmt.Sprintf("%c%03d", 'a'+i%26, i%100)
		if err := c.put(ctx, key, "v"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.get(ctx, key); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			loads = 0
			for _, id := range c.ids {
				loads += c.store(id).Stats().LoadSplits
			}
		}
	}
	if loads == 0 {
		t.Fatalf("no split by load: %v", ctx.Err())
	}
	checkCover(t, c.metaDescs(ctx, 1))
	waitFor(t, 10*time.Second, "meta to show the split", func() bool { return len(c.metaDescs(ctx, 1)) >= 3 })
	// The split key came from the keys requested: strictly inside a..z.
	for _, d := range c.metaDescs(ctx, 1)[2:] {
		if k := d.GetStartKey(); len(k) == 0 || k[0] < 'a' || k[0] > 'z' {
			t.Fatalf("split by load at %q, outside the keys requested", k)
		}
	}
	if v, ok, err := c.get(ctx, "a000"); err != nil || !ok || v != "v" {
		t.Fatalf("a000 after a split by load: %q %v %v", v, ok, err)
	}
}

// TestValidSplitBadInput: a split trigger whose key is outside the range,
// at either of its ends, or built on another generation or range id is
// refused; the well-formed one is taken. (AdminSplit routes a key to the
// range holding it, so a key outside reaches validSplit only when the
// range changed under the split; apply checks again.)
func TestValidSplitBadInput(t *testing.T) {
	cur := &kvpb.RangeDescriptor{RangeId: 4, StartKey: []byte("b"), EndKey: []byte("m"), Generation: 3}
	trigger := func(key string, f func(l, r *kvpb.RangeDescriptor)) *raftmsgpb.SplitTrigger {
		l := &kvpb.RangeDescriptor{RangeId: 4, StartKey: []byte("b"), EndKey: []byte(key), Generation: 4}
		r := &kvpb.RangeDescriptor{RangeId: 9, StartKey: []byte(key), EndKey: []byte("m"), Generation: 4}
		if f != nil {
			f(l, r)
		}
		return &raftmsgpb.SplitTrigger{Left: l, Right: r}
	}
	for _, tc := range []struct {
		name string
		t    *raftmsgpb.SplitTrigger
		want string // "" for accepted
	}{
		{"inside", trigger("f", nil), ""},
		{"before the range", trigger("a", nil), "not strictly inside"},
		{"after the range", trigger("q", nil), "not strictly inside"},
		{"at its start", trigger("b", nil), "not strictly inside"},
		{"at its end", trigger("m", nil), "not strictly inside"},
		{"older generation", trigger("f", func(l, r *kvpb.RangeDescriptor) { l.Generation, r.Generation = 3, 3 }), "generation"},
		{"right side's end moved", trigger("f", func(_, r *kvpb.RangeDescriptor) { r.EndKey = []byte("z") }), "malformed"},
		{"same range id on both sides", trigger("f", func(_, r *kvpb.RangeDescriptor) { r.RangeId = 4 }), "malformed"},
	} {
		err := validSplit(cur, tc.t)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestSplitRetryBeforeMetaKnowsTheLeftSide: the retry of a split whose
// meta update was lost (its leader crashed), answered by the right
// side's leader on a node that no longer holds the left side (removed
// from it since) before the meta range learns the new left descriptor,
// is told to retry (Unavailable), not that the key is no boundary
// (InvalidArgument, which a client does not retry): the split applied.
func TestSplitRetryBeforeMetaKnowsTheLeftSide(t *testing.T) {
	// No meta reconciliation during the test: meta keeps the range as
	// it was before the split.
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.ReplicaGCInterval = time.Hour })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := c.put(ctx, "warm", "x"); err != nil {
		t.Fatal(err)
	}
	rangeID := rangeOf(c, "m")
	var leader uint64
	waitFor(t, 10*time.Second, "a leader of the range of m", func() bool { leader = c.leaderOf(rangeID); return leader != 0 })
	s := c.store(leader)
	r := s.Replica(rangeID)
	// The split as AdminSplit makes it, without its meta update.
	alloc, err := s.metaCommand(ctx, &kvpb.UpdateMetaRequest{Header: &kvpb.Header{}, AllocRangeId: true})
	if err != nil {
		t.Fatal(err)
	}
	cur := r.Descriptor()
	left := proto.Clone(cur).(*kvpb.RangeDescriptor)
	left.EndKey = []byte("m")
	left.Generation++
	right := proto.Clone(cur).(*kvpb.RangeDescriptor)
	right.RangeId, right.StartKey, right.Generation = alloc.GetRangeId(), []byte("m"), left.GetGeneration()
	if _, err := r.Propose(ctx, []*raftmsgpb.Op{{Op: &raftmsgpb.Op_Split{Split: &raftmsgpb.SplitTrigger{Left: left, Right: right}}}}, nil); err != nil {
		t.Fatal(err)
	}
	// Another node leads the right side and loses its left replica.
	node := c.ids[0]
	if node == leader {
		node = c.ids[1]
	}
	waitFor(t, 10*time.Second, "the right side on the other node", func() bool { return c.store(node).Replica(right.GetRangeId()) != nil })
	waitFor(t, 10*time.Second, "the other node to lead the right side", func() bool {
		if c.leaderOf(right.GetRangeId()) == node {
			return true
		}
		tctx, tcancel := context.WithTimeout(ctx, time.Second)
		defer tcancel()
		_, _ = c.store(node).TransferLeader(tctx, &kvpb.TransferLeaderRequest{RangeId: right.GetRangeId(), NodeId: node})
		return c.leaderOf(right.GetRangeId()) == node
	})
	ns := c.store(node)
	ns.destroyReplica(ns.Replica(rangeID), "removed from its range")
	_, err = ns.AdminSplit(ctx, &kvpb.AdminSplitRequest{Key: []byte("m"), Header: &kvpb.Header{NoForward: true}})
	if code := bus.CodeOf(err); code != bus.CodeUnavailable {
		t.Fatalf("split retry before meta knows its left side: %v (code %v); want Unavailable (retry)", err, code)
	}
	// Once meta learns both sides, the retry finds the split done.
	if _, err := s.metaCommand(ctx, &kvpb.UpdateMetaRequest{Header: &kvpb.Header{}, Descriptors: []*kvpb.RangeDescriptor{left, right}}); err != nil {
		t.Fatal(err)
	}
	resp, err := ns.AdminSplit(ctx, &kvpb.AdminSplitRequest{Key: []byte("m"), Header: &kvpb.Header{NoForward: true}})
	if err != nil || resp.GetLeft().GetRangeId() != rangeID || resp.GetRight().GetRangeId() != right.GetRangeId() {
		t.Fatalf("split retry once meta knows both sides: %v, %v; want ranges %d and %d", resp, err, rangeID, right.GetRangeId())
	}
}
