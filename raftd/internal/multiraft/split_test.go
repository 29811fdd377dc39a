package multiraft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

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
	resp, err := c.store(id).Descriptors(ctx, &kvpb.DescriptorsRequest{})
	if err != nil {
		c.t.Fatalf("Descriptors on node %d: %v", id, err)
	}
	return resp.GetDescriptors()
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
	// The meta range agrees and still tiles the keyspace.
	after := c.metaDescs(ctx, 2)
	if len(after) != len(before)+1 {
		t.Fatalf("meta holds %d descriptors after the split, %d before", len(after), len(before))
	}
	checkCover(t, after)
	for _, d := range after {
		if d.GetRangeId() == left.GetRangeId() && !proto.Equal(d, left) || d.GetRangeId() == right.GetRangeId() && !proto.Equal(d, right) {
			t.Fatalf("meta has %v; split made %v and %v", d, left, right)
		}
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
	for _, key := range []string{"m", "\x01", "", "\x00meta/x", "\xff\xff\x01"} {
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
	descs := c.metaDescs(ctx, 1)
	checkCover(t, descs)
	if len(descs) != 4 {
		t.Fatalf("meta holds %d ranges, want 4", len(descs))
	}
}
