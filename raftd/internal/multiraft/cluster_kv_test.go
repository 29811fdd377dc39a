package multiraft

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

func TestElectReplicateRead(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for i := range 20 {
		if err := c.put(ctx, fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	// Every node answers a linearizable read (forwarding to the leader).
	for _, id := range c.ids {
		resp, err := c.store(id).Get(ctx, &kvpb.GetRequest{Key: []byte("k07")})
		if err != nil || string(resp.GetValue().GetValue()) != "v7" || resp.GetValue().GetTimestamp().GetWallTime() == 0 {
			t.Errorf("node %d Get(k07) = %v, %v; want v7 with a timestamp", id, resp, err)
		}
	}
	// Every replica applies every write.
	waitFor(t, 5*time.Second, "replication to all nodes", func() bool {
		for _, id := range c.ids {
			if v, ok := c.staleGet(id, "k19"); !ok || v != "v19" {
				return false
			}
		}
		return true
	})
	// no_forward on a follower answers NotLeader with the leader's address.
	leader := c.leaderOf(2)
	for _, id := range c.ids {
		if id == leader {
			continue
		}
		_, err := c.store(id).Get(ctx, &kvpb.GetRequest{Header: &kvpb.Header{NoForward: true}, Key: []byte("k01")})
		if !errors.Is(err, bus.ErrNotLeader) || bus.LeaderHint(err) != c.addr(leader) {
			t.Errorf("node %d no_forward Get = %v (hint %q); want NotLeader hinting %s", id, err, bus.LeaderHint(err), c.addr(leader))
		}
		// A stale read is served locally.
		resp, err := c.store(id).Get(ctx, &kvpb.GetRequest{Header: &kvpb.Header{NoForward: true, ReadConsistency: kvpb.ReadConsistency_READ_CONSISTENCY_STALE}, Key: []byte("k01")})
		if err != nil || !resp.GetFound() {
			t.Errorf("node %d stale Get = %v, %v", id, resp, err)
		}
		break
	}
}

func TestLeaseReads(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := c.put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	leader := c.leaderOf(2)
	s := c.store(leader)
	for range 50 {
		resp, err := s.Get(ctx, &kvpb.GetRequest{Key: []byte("k")})
		if err != nil || string(resp.GetValue().GetValue()) != "v" {
			t.Fatalf("Get = %v, %v", resp, err)
		}
	}
	st := s.Stats()
	if st.LeaseReads == 0 {
		t.Errorf("stats %+v: no read used the lease", st)
	}
	if !s.Replica(2).Status().GetLeaseValid() {
		t.Error("lease not valid on a leader being read from")
	}
	// Suspended leases (an unhealthy clock): reads take ReadIndex rounds
	// until they are back.
	for _, off := range []bool{true, false} {
		s.SuspendLeases(off)
		before := s.Stats()
		for range 20 {
			resp, err := s.Get(ctx, &kvpb.GetRequest{Key: []byte("k")})
			if err != nil || string(resp.GetValue().GetValue()) != "v" {
				t.Fatalf("Get with leases suspended %v = %v, %v", off, resp, err)
			}
		}
		after := s.Stats()
		lease, ri := after.LeaseReads-before.LeaseReads, after.ReadIndexReads-before.ReadIndexReads
		if off && (lease != 0 || ri != 20 || s.Replica(2).Status().GetLeaseValid()) {
			t.Errorf("leases suspended: %d lease reads, %d ReadIndex reads, lease valid %v; want 0, 20, false", lease, ri, s.Replica(2).Status().GetLeaseValid())
		}
		if !off && lease == 0 {
			t.Errorf("leases back on: %d lease reads, %d ReadIndex reads; want lease reads", lease, ri)
		}
	}
	// A leader cut off from its followers loses its lease within the
	// lease duration and stops serving reads.
	c.net.Isolate(leader, c.ids)
	time.Sleep(s.leaseDuration() + 2*c.cfg.TickInterval)
	sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := s.Get(sctx, &kvpb.GetRequest{Key: []byte("k"), Header: &kvpb.Header{NoForward: true}})
	scancel()
	if err == nil {
		t.Error("isolated former leader served a linearizable read after its lease")
	}
	c.net.Heal()
}

// TestFiveNodes places 3 replicas of each range on 5 nodes: nodes without
// a replica of a key's range find it through the meta range and forward.
func TestFiveNodes(t *testing.T) {
	c := newTestCluster(t, 5, &kvpb.InitRequest{InitialRanges: 5})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	keys := []string{"\x10a", "Ab", "\x90c", "\xc0d", "\xf0e"}
	for _, id := range c.ids {
		for _, k := range keys {
			if err := c.do(ctx, func(ctx context.Context, _ *Store) error {
				_, err := c.store(id).Put(ctx, &kvpb.PutRequest{Key: []byte(k), Value: []byte(fmt.Sprint(id))})
				return err
			}); err != nil {
				t.Fatalf("node %d put %q: %v", id, k, err)
			}
		}
	}
	for _, id := range c.ids {
		var resp *kvpb.ScanResponse
		if err := c.do(ctx, func(ctx context.Context, _ *Store) error {
			var err error
			resp, err = c.store(id).Scan(ctx, &kvpb.ScanRequest{})
			return err
		}); err != nil || len(resp.GetKvs()) != len(keys) {
			t.Fatalf("node %d scan = %v, %v; want %d keys", id, resp, err, len(keys))
		}
		for _, kv := range resp.GetKvs() {
			if string(kv.GetValue().GetValue()) != "5" {
				t.Errorf("node %d: %q = %q; want 5 (last writer)", id, kv.GetKey(), kv.GetValue().GetValue())
			}
		}
	}
	old := c.leaderOf(3)
	c.stop(old)
	if err := c.put(ctx, "Ab", "after"); err != nil {
		t.Fatalf("put after stopping node %d: %v", old, err)
	}
}

func TestKVSemantics(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{SplitPoints: [][]byte{[]byte("c"), []byte("m"), []byte("t")}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var s *Store
	run := func(f func(ctx context.Context, s *Store) error) error { return c.do(ctx, f) }
	for _, k := range []string{"a", "b", "d", "k", "m", "n", "s", "t", "z"} {
		if err := c.put(ctx, k, "v"+k); err != nil {
			t.Fatal(err)
		}
	}
	s = c.store(1)
	t.Run("scan across ranges", func(t *testing.T) {
		var got []string
		err := run(func(ctx context.Context, s *Store) error {
			resp, err := s.Scan(ctx, &kvpb.ScanRequest{Start: []byte("b"), End: []byte("u")})
			got = nil
			for _, kv := range resp.GetKvs() {
				got = append(got, string(kv.GetKey()))
			}
			return err
		})
		if want := "[b d k m n s t]"; err != nil || fmt.Sprint(got) != want {
			t.Errorf("Scan = %v, %v; want %s", got, err, want)
		}
	})
	t.Run("reverse paged scan", func(t *testing.T) {
		var got []string
		end := []byte(nil)
		for page := 0; page < 10; page++ {
			var resp *kvpb.ScanResponse
			err := run(func(ctx context.Context, s *Store) error {
				var err error
				resp, err = s.Scan(ctx, &kvpb.ScanRequest{End: end, Limit: 4, Reverse: true, KeysOnly: true})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range resp.GetKvs() {
				got = append(got, string(kv.GetKey()))
				if len(kv.GetValue().GetValue()) != 0 {
					t.Errorf("keys_only returned a value for %q", kv.GetKey())
				}
			}
			if resp.GetResumeKey() == nil {
				break
			}
			end = resp.GetResumeKey()
		}
		if want := "[z t s n m k d b a]"; fmt.Sprint(got) != want {
			t.Errorf("reverse scan = %v; want %s", got, want)
		}
	})
	t.Run("pages bounded by bytes", func(t *testing.T) {
		// Ten values of 1,000 bytes over ranges [m, t) and [t, ∞): pages
		// of at most 2,500 bytes end with the entry that reaches it, 3
		// large entries each, forward and back, whichever node is asked
		// (followers forward), and keys only as well.
		var keys []string
		for i := range 10 {
			k := string(rune('p'+i)) + "big"
			keys = append(keys, k)
			if err := c.put(ctx, k, strings.Repeat("x", 1000)); err != nil {
				t.Fatal(err)
			}
		}
		defer func() { // the later subtests count keys
			for _, k := range keys {
				if err := run(func(ctx context.Context, s *Store) error {
					_, err := s.Delete(ctx, &kvpb.DeleteRequest{Key: []byte(k)})
					return err
				}); err != nil {
					t.Fatal(err)
				}
			}
		}()
		for _, id := range c.ids {
			for _, reverse := range []bool{false, true} {
				for _, keysOnly := range []bool{false, true} {
					var got []string
					var sizes []int
					start, end := []byte("pbig"), []byte("zz")
					for page := 0; page < 20; page++ {
						var resp *kvpb.ScanResponse
						err := run(func(ctx context.Context, _ *Store) error {
							var err error
							resp, err = c.store(id).Scan(ctx, &kvpb.ScanRequest{Start: start, End: end, MaxBytes: 2500, Reverse: reverse, KeysOnly: keysOnly})
							return err
						})
						if err != nil {
							t.Fatal(err)
						}
						big := 0 // small values of other subtests lie between
						for _, kv := range resp.GetKvs() {
							if k := string(kv.GetKey()); strings.HasSuffix(k, "big") {
								got = append(got, k)
								big++
							}
						}
						sizes = append(sizes, big)
						if resp.GetResumeKey() == nil {
							break
						}
						if reverse {
							end = resp.GetResumeKey()
						} else {
							start = resp.GetResumeKey()
						}
					}
					want := slices.Clone(keys)
					if reverse {
						slices.Reverse(want)
					}
					if !slices.Equal(got, want) || sizes[0] != 3 {
						t.Errorf("node %d, reverse %v, keys only %v: pages of %v large entries, keys %v; want pages of 3, keys %v", id, reverse, keysOnly, sizes, got, want)
					}
				}
			}
		}
	})
	t.Run("cas", func(t *testing.T) {
		var resp *kvpb.CompareAndSwapResponse
		cas := func(req *kvpb.CompareAndSwapRequest) {
			t.Helper()
			if err := run(func(ctx context.Context, s *Store) error {
				var err error
				resp, err = s.CompareAndSwap(ctx, req)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		cas(&kvpb.CompareAndSwapRequest{Key: []byte("a"), ExpectedValue: []byte("wrong"), NewValue: []byte("x")})
		if resp.GetSucceeded() || string(resp.GetCurrent().GetValue()) != "va" {
			t.Errorf("failed CAS = %v; want current va", resp)
		}
		cas(&kvpb.CompareAndSwapRequest{Key: []byte("a"), ExpectedValue: []byte("va"), NewValue: []byte("x")})
		if !resp.GetSucceeded() {
			t.Errorf("CAS = %v; want success", resp)
		}
		cas(&kvpb.CompareAndSwapRequest{Key: []byte("new"), ExpectAbsent: true, NewValue: []byte("y")})
		if !resp.GetSucceeded() {
			t.Errorf("CAS absent = %v; want success", resp)
		}
		cas(&kvpb.CompareAndSwapRequest{Key: []byte("new"), ExpectAbsent: true, NewValue: []byte("z")})
		if resp.GetSucceeded() || string(resp.GetCurrent().GetValue()) != "y" {
			t.Errorf("second CAS absent = %v; want failure with y", resp)
		}
		cas(&kvpb.CompareAndSwapRequest{Key: []byte("new"), ExpectedValue: []byte("y"), Delete: true})
		if v, ok, _ := c.get(ctx, "new"); !resp.GetSucceeded() || ok {
			t.Errorf("CAS delete = %v; key still %q", resp, v)
		}
	})
	t.Run("batch", func(t *testing.T) {
		var resp *kvpb.BatchResponse
		batch := func(ops ...*kvpb.BatchOp) error {
			return run(func(ctx context.Context, s *Store) error {
				var err error
				resp, err = s.Batch(ctx, &kvpb.BatchRequest{Ops: ops})
				return err
			})
		}
		put := func(k, v string) *kvpb.BatchOp {
			return &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
		}
		if err := batch(put("d1", "1"), put("d2", "2"), &kvpb.BatchOp{Op: &kvpb.BatchOp_Cas{Cas: &kvpb.CompareAndSwapRequest{Key: []byte("d"), ExpectedValue: []byte("nope")}}}); err != nil {
			t.Fatal(err)
		}
		if resp.GetSucceeded() || resp.GetFailedOp() != 2 {
			t.Errorf("batch with failing CAS = %v; want failed op 2", resp)
		}
		if _, ok, _ := c.get(ctx, "d1"); ok {
			t.Error("failed batch wrote d1")
		}
		if err := batch(put("d1", "1"), &kvpb.BatchOp{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: []byte("d")}}}); err != nil || !resp.GetSucceeded() {
			t.Fatalf("batch = %v, %v", resp, err)
		}
		if v, _, _ := c.get(ctx, "d1"); v != "1" {
			t.Errorf("d1 = %q after batch", v)
		}
		if _, ok, _ := c.get(ctx, "d"); ok {
			t.Error("batch delete left d")
		}
		err := batch(put("a1", "1"), put("z1", "2"))
		if !errors.Is(err, bus.ErrInvalidArgument) {
			t.Errorf("batch across ranges = %v; want InvalidArgument", err)
		}
	})
	t.Run("delete and delete range", func(t *testing.T) {
		var dr *kvpb.DeleteRangeResponse
		if err := run(func(ctx context.Context, s *Store) error {
			var err error
			dr, err = s.DeleteRange(ctx, &kvpb.DeleteRangeRequest{Start: []byte("k"), End: []byte("u")})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if dr.GetDeleted() != 5 {
			t.Errorf("DeleteRange deleted %d; want 5 (k m n s t)", dr.GetDeleted())
		}
		var del *kvpb.DeleteResponse
		for _, want := range []bool{true, false} {
			if err := run(func(ctx context.Context, s *Store) error {
				var err error
				del, err = s.Delete(ctx, &kvpb.DeleteRequest{Key: []byte("z")})
				return err
			}); err != nil || del.GetDeleted() != want {
				t.Errorf("Delete(z) = %v, %v; want deleted=%v", del, err, want)
			}
		}
	})
	t.Run("system keys", func(t *testing.T) {
		sys := &kvpb.Header{System: true}
		wf := func(k string) []byte { return append(bytes.Clone(kvpb.WorkflowPrefix), k...) }
		for _, k := range []string{"i/2", "i/1", "j"} {
			if err := run(func(ctx context.Context, s *Store) error {
				_, err := s.Put(ctx, &kvpb.PutRequest{Header: sys, Key: wf(k), Value: []byte(k)})
				return err
			}); err != nil {
				t.Fatalf("system put %q: %v", k, err)
			}
		}
		var batch *kvpb.BatchResponse
		if err := run(func(ctx context.Context, s *Store) error {
			var err error
			batch, err = s.Batch(ctx, &kvpb.BatchRequest{Header: sys, Ops: []*kvpb.BatchOp{
				{Op: &kvpb.BatchOp_Cas{Cas: &kvpb.CompareAndSwapRequest{Key: wf("j"), ExpectedValue: []byte("j"), NewValue: []byte("j2")}}},
				{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: wf("i/2")}}},
			}})
			return err
		}); err != nil || !batch.GetSucceeded() {
			t.Fatalf("system batch = %v, %v", batch, err)
		}
		var scan *kvpb.ScanResponse
		if err := run(func(ctx context.Context, s *Store) error {
			var err error
			scan, err = s.Scan(ctx, &kvpb.ScanRequest{Header: sys, Start: kvpb.WorkflowPrefix, End: kvpb.PrefixEnd(kvpb.WorkflowPrefix)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, kv := range scan.GetKvs() {
			got = append(got, fmt.Sprintf("%s=%s", kv.GetKey()[len(kvpb.WorkflowPrefix):], kv.GetValue().GetValue()))
		}
		if want := []string{"i/1=i/1", "j=j2"}; !slices.Equal(got, want) {
			t.Errorf("system scan = %q; want %q", got, want)
		}
		// A user scan from the start never sees them.
		if err := run(func(ctx context.Context, s *Store) error {
			var err error
			scan, err = s.Scan(ctx, &kvpb.ScanRequest{Header: sys})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for _, kv := range scan.GetKvs() {
			if kv.GetKey()[0] == 0 {
				t.Errorf("user scan returned system key %q", kv.GetKey())
			}
		}
		for _, tt := range []struct {
			name string
			f    func() error
		}{
			{"no header", func() error { _, err := s.Get(ctx, &kvpb.GetRequest{Key: wf("j")}); return err }},
			{"meta prefix", func() error {
				_, err := s.Put(ctx, &kvpb.PutRequest{Header: sys, Key: []byte("\x00meta/x"), Value: []byte("v")})
				return err
			}},
			{"meta in batch", func() error {
				_, err := s.Batch(ctx, &kvpb.BatchRequest{Header: sys, Ops: []*kvpb.BatchOp{{Op: &kvpb.BatchOp_Delete{Delete: &kvpb.DeleteRequest{Key: []byte("\x00meta/x")}}}}})
				return err
			}},
			{"scan leaving the prefix", func() error {
				_, err := s.Scan(ctx, &kvpb.ScanRequest{Header: sys, Start: kvpb.WorkflowPrefix})
				return err
			}},
			{"delete range of meta", func() error {
				_, err := s.DeleteRange(ctx, &kvpb.DeleteRangeRequest{Header: sys, Start: []byte("\x00meta/"), End: []byte("\x00meta0")})
				return err
			}},
		} {
			if err := tt.f(); !errors.Is(err, bus.ErrInvalidArgument) {
				t.Errorf("%s: err = %v; want InvalidArgument", tt.name, err)
			}
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			f    func() error
		}{
			{"empty key", func() error { _, err := s.Put(ctx, &kvpb.PutRequest{Value: []byte("v")}); return err }},
			{"system key", func() error { _, err := s.Put(ctx, &kvpb.PutRequest{Key: []byte{0, 1}}); return err }},
			{"key too long", func() error {
				_, err := s.Get(ctx, &kvpb.GetRequest{Key: make([]byte, c.cfg.MaxKeyBytes+1)})
				return err
			}},
			{"value too long", func() error {
				_, err := s.Put(ctx, &kvpb.PutRequest{Key: []byte("x"), Value: make([]byte, c.cfg.MaxValueBytes+1)})
				return err
			}},
			{"inverted scan", func() error {
				_, err := s.Scan(ctx, &kvpb.ScanRequest{Start: []byte("b"), End: []byte("a")})
				return err
			}},
			{"empty batch", func() error { _, err := s.Batch(ctx, &kvpb.BatchRequest{}); return err }},
			{"batch too large", func() error {
				var ops []*kvpb.BatchOp
				for i := 0; i*c.cfg.MaxValueBytes <= c.cfg.MaxCommandBytes; i++ {
					ops = append(ops, &kvpb.BatchOp{Op: &kvpb.BatchOp_Put{Put: &kvpb.PutRequest{Key: fmt.Appendf(nil, "big%d", i), Value: make([]byte, c.cfg.MaxValueBytes)}}})
				}
				_, err := s.Batch(ctx, &kvpb.BatchRequest{Ops: ops})
				return err
			}},
		} {
			if err := tt.f(); !errors.Is(err, bus.ErrInvalidArgument) {
				t.Errorf("%s: err = %v; want InvalidArgument", tt.name, err)
			}
		}
	})
}
