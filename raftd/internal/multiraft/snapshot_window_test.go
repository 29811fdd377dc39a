package multiraft

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// TestSnapshotChunksTakenInOrder delays every chunk whose seq is 1 modulo
// the window, so that the ones after it arrive first: the receiver must
// take them in seq order (its ingest refuses keys out of order) and the
// lagging follower must end with the others' data.
func TestSnapshotChunksTakenInOrder(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.SnapshotChunkBytes = 128 })
	lagger, n := laggingFollower(t, c)
	var numbered, maxSeq atomic.Uint64
	c.net.SetSnapshotHook(func(ctx context.Context, to uint64, ch *raftmsgpb.SnapshotChunk) error {
		if ch.GetSeq() == 0 {
			return nil
		}
		numbered.Add(1)
		for {
			m := maxSeq.Load()
			if ch.GetSeq() <= m || maxSeq.CompareAndSwap(m, ch.GetSeq()) {
				break
			}
		}
		if ch.GetSeq()%snapshotWindow == 1 {
			select {
			case <-time.After(5 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		return nil
	})
	c.net.Heal()
	waitFor(t, 20*time.Second, "the snapshot install to be recorded", func() bool {
		return c.store(lagger).Stats().SnapshotsApplied > 0
	})
	c.waitSameData(lagger)
	if v, ok := c.staleGet(lagger, fmt.Sprintf("k%04d", n-1)); !ok || v != fmt.Sprintf("value-%d", n-1) {
		t.Errorf("follower's last key = %q, %v", v, ok)
	}
	if numbered.Load() < snapshotWindow || maxSeq.Load() < snapshotWindow {
		t.Errorf("%d numbered chunks seen, highest seq %d: the snapshot was not sent with a window", numbered.Load(), maxSeq.Load())
	}
}

// TestSnapshotSendFailsMidStream fails the send of one chunk in the
// middle of the first snapshot (a sender that dies, a connection that
// breaks): the sender gives that snapshot up, and a later one brings the
// follower up to date. (That a dropped session writes nothing is
// TestSnapshotChunkStreamRefused's.)
func TestSnapshotSendFailsMidStream(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.SnapshotChunkBytes = 128 })
	lagger, _ := laggingFollower(t, c)
	var failed atomic.Bool
	c.net.SetSnapshotHook(func(ctx context.Context, to uint64, ch *raftmsgpb.SnapshotChunk) error {
		if ch.GetSeq() == 3 && failed.CompareAndSwap(false, true) {
			return errors.New("connection lost (test)")
		}
		return nil
	})
	c.net.Heal()
	waitFor(t, 10*time.Second, "a chunk send to fail", failed.Load)
	waitFor(t, 20*time.Second, "a later snapshot to be installed", func() bool {
		return c.store(lagger).Stats().SnapshotsApplied > 0
	})
	c.waitSameData(lagger)
	waitFor(t, 10*time.Second, "the snapshot marker removed", func() bool { return !c.hasMarker(lagger, 2) })
}

// snapshotChunksOf reads the chunks of range 2's snapshot from node id's
// replica, as its sender would, unnumbered.
func snapshotChunksOf(t *testing.T, c *testCluster, id uint64) (*kvpb.RangeDescriptor, []*raftmsgpb.SnapshotChunk) {
	t.Helper()
	ctx := t.Context()
	r := c.store(id).Replica(2)
	snap, err := c.engines[id].OpenSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = snap.Release(ctx) }()
	desc := r.desc.Load()
	var out []*raftmsgpb.SnapshotChunk
	if err := r.readSnapshotChunks(ctx, snap, desc, func(ch *raftmsgpb.SnapshotChunk) error {
		out = append(out, ch)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return desc, out
}

// TestSnapshotChunkStreamRefused hands a follower's store numbered chunk
// streams that are out of order, have gaps or repeats, or carry a
// corrupted entry: each bad chunk is refused, drops the session (every
// later chunk is refused too) and leaves the follower's data and raft
// state as they were; chunks that only arrive out of order within the
// window are taken.
func TestSnapshotChunkStreamRefused(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.SnapshotChunkBytes = 256 })
	lagger, _ := laggingFollower(t, c)
	desc, chunks := snapshotChunksOf(t, c, c.leaderOf(2))
	if len(chunks) < 8 {
		t.Fatalf("%d chunks, want at least 8", len(chunks))
	}
	firstVersions := -1
	for i, ch := range chunks {
		if len(ch.GetVersions()) > 0 {
			firstVersions = i
			break
		}
	}
	if firstVersions < 0 {
		t.Fatal("no chunk of versions")
	}
	corrupt := func(ch *raftmsgpb.SnapshotChunk) *raftmsgpb.SnapshotChunk {
		ch = proto.Clone(ch).(*raftmsgpb.SnapshotChunk)
		switch {
		case len(ch.GetKvs()) > 0:
			ch.Kvs[0].Value.Timestamp = nil
		case len(ch.GetVersions()) > 0:
			ch.Versions[0].Value = ch.Versions[0].Value[:1]
		default:
			t.Fatal("chunk without entries")
		}
		return ch
	}
	type send struct {
		seq     uint64
		chunk   int  // index into chunks
		corrupt bool // the chunk's first entry corrupted
		wantErr bool
	}
	tests := []struct {
		name  string
		sends []send
		// concurrent: the sends run concurrently, each started after
		// the one before it is waiting for its turn.
		concurrent bool
	}{
		{name: "in order", sends: []send{{seq: 1, chunk: 0}, {seq: 2, chunk: 1}, {seq: 3, chunk: 2}}},
		{name: "repeat", sends: []send{{seq: 1, chunk: 0}, {seq: 1, chunk: 0, wantErr: true}, {seq: 2, chunk: 1, wantErr: true}}},
		{name: "beyond the window", sends: []send{{seq: 1, chunk: 0}, {seq: 2 + snapshotWindow, chunk: 1, wantErr: true}, {seq: 2, chunk: 1, wantErr: true}}},
		{name: "unnumbered after numbered", sends: []send{{seq: 1, chunk: 0}, {seq: 0, chunk: 1, wantErr: true}}},
		{name: "numbered after unnumbered", sends: []send{{seq: 0, chunk: 0}, {seq: 2, chunk: 1, wantErr: true}}},
		{name: "corrupted chunk", sends: []send{{seq: 1, chunk: 0}, {seq: 2, chunk: 1, corrupt: true, wantErr: true}, {seq: 3, chunk: 2, wantErr: true}}},
		{name: "corrupted version entry", sends: []send{{seq: 1, chunk: firstVersions, corrupt: true, wantErr: true}}},
		// A gap: chunk 2 never comes; 3 waits for it until its sender
		// gives up (its context ends), which drops the session.
		{name: "gap", sends: []send{{seq: 1, chunk: 0}, {seq: 3, chunk: 2, wantErr: true}, {seq: 2, chunk: 1, wantErr: true}}},
		{name: "reversed within the window", concurrent: true, sends: []send{{seq: 4, chunk: 3}, {seq: 3, chunk: 2}, {seq: 2, chunk: 1}, {seq: 1, chunk: 0}}},
	}
	st := c.store(lagger)
	before := c.dataOf(lagger)
	applied := c.appliedIndexInEngine(lagger, 2)
	leader := c.leaderOf(2)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := uint64(1000 + i)
			chunk := func(s send) *raftmsgpb.SnapshotChunk {
				ch := proto.Clone(chunks[s.chunk]).(*raftmsgpb.SnapshotChunk)
				if s.corrupt {
					ch = corrupt(ch)
				}
				ch.SnapshotId, ch.RangeId, ch.FromNode, ch.Seq = id, 2, leader, s.seq
				return ch
			}
			ack, err := st.HandleSnapshot(t.Context(), &raftmsgpb.SnapshotChunk{SnapshotId: id, RangeId: 2, FromNode: leader, RangeDescriptor: desc})
			if err != nil {
				t.Fatal(err)
			}
			if ack.GetWindow() != snapshotWindow {
				t.Fatalf("start chunk's window = %d, want %d", ack.GetWindow(), snapshotWindow)
			}
			if !tt.concurrent {
				for _, s := range tt.sends {
					ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
					_, err := st.HandleSnapshot(ctx, chunk(s))
					cancel()
					if (err != nil) != s.wantErr {
						t.Fatalf("chunk seq %d: error %v, want error %v", s.seq, err, s.wantErr)
					}
				}
			} else {
				var wg sync.WaitGroup
				errs := make([]error, len(tt.sends))
				for j, s := range tt.sends {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, errs[j] = st.HandleSnapshot(t.Context(), chunk(s))
					}()
					time.Sleep(20 * time.Millisecond) // it waits for its turn meanwhile
				}
				wg.Wait()
				for j, err := range errs {
					if (err != nil) != tt.sends[j].wantErr {
						t.Fatalf("chunk seq %d: error %v, want error %v", tt.sends[j].seq, err, tt.sends[j].wantErr)
					}
				}
			}
			// No done chunk: nothing may have been installed.
			if got := c.dataOf(lagger); !reflect.DeepEqual(got, before) {
				t.Errorf("the follower's data changed: %d entries, had %d", len(got), len(before))
			}
			if got := c.appliedIndexInEngine(lagger, 2); got != applied {
				t.Errorf("applied index %d, was %d", got, applied)
			}
			if c.hasMarker(lagger, 2) {
				t.Error("a snapshot marker was written")
			}
		})
	}
	if st.Stats().SnapshotsApplied != 0 {
		t.Errorf("%d snapshots applied", st.Stats().SnapshotsApplied)
	}
}

// bothChainsSnapshot is an engine snapshot whose data and versions reads
// each wait, before reading, for the other to be in flight too (or for
// wait to pass): it records whether the two were in flight together.
type bothChainsSnapshot struct {
	storage.Snapshot
	wait     time.Duration
	inflight atomic.Int32 // data and versions reads in flight
	together atomic.Bool
}

func (s *bothChainsSnapshot) StreamRange(ctx context.Context, cf storage.CF, start, end []byte, chunkBytes int, fn func([]storage.KV) error) error {
	if cf == storage.Data || cf == storage.Versions {
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		for deadline := time.Now().Add(s.wait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if s.inflight.Load() == 2 {
				s.together.Store(true)
				break
			}
		}
	}
	return s.Snapshot.StreamRange(ctx, cf, start, end, chunkBytes, fn)
}

// TestSnapshotReadsDataAndVersionsTogether: a sender reads a snapshot's
// data and versions from its engine at the same time (two reads in
// flight), and the chunks keep each one's order: the data chunks are
// those of a read of the data alone, in order, the same for the versions.
func TestSnapshotReadsDataAndVersionsTogether(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.SnapshotChunkBytes = 256 })
	laggingFollower(t, c) // writes enough for several chunks of each
	_, ref := snapshotChunksOf(t, c, c.leaderOf(2))
	ctx := t.Context()
	r := c.store(c.leaderOf(2)).Replica(2)
	snap, err := c.engines[c.leaderOf(2)].OpenSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = snap.Release(ctx) }()
	both := &bothChainsSnapshot{Snapshot: snap, wait: 3 * time.Second}
	var got []*raftmsgpb.SnapshotChunk
	if err := r.readSnapshotChunks(ctx, both, r.desc.Load(), func(ch *raftmsgpb.SnapshotChunk) error {
		got = append(got, ch)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !both.together.Load() {
		t.Error("the data and versions reads were not in flight together")
	}
	split := func(chs []*raftmsgpb.SnapshotChunk) (data, versions, sessions []*raftmsgpb.SnapshotChunk) {
		for _, ch := range chs {
			switch {
			case len(ch.GetKvs()) > 0:
				data = append(data, ch)
			case len(ch.GetVersions()) > 0:
				versions = append(versions, ch)
			default:
				sessions = append(sessions, ch)
			}
		}
		return data, versions, sessions
	}
	gd, gv, gs := split(got)
	sd, sv, ss := split(ref)
	if len(sd) < 2 || len(sv) < 2 {
		t.Fatalf("%d data and %d version chunks; want at least 2 of each", len(sd), len(sv))
	}
	for _, tt := range []struct {
		name      string
		got, want []*raftmsgpb.SnapshotChunk
	}{{"data", gd, sd}, {"versions", gv, sv}, {"sessions", gs, ss}} {
		if len(tt.got) != len(tt.want) {
			t.Fatalf("%s: %d chunks; want %d", tt.name, len(tt.got), len(tt.want))
		}
		for i := range tt.got {
			if !proto.Equal(tt.got[i], tt.want[i]) {
				t.Fatalf("%s chunk %d differs from a read of its own", tt.name, i)
			}
		}
	}
}

// failingSnapshot fails its reads of one column family.
type failingSnapshot struct {
	storage.Snapshot
	cf storage.CF
}

var errReadTest = errors.New("read failed (test)")

func (s failingSnapshot) StreamRange(ctx context.Context, cf storage.CF, start, end []byte, chunkBytes int, fn func([]storage.KV) error) error {
	if cf == s.cf {
		return errReadTest
	}
	return s.Snapshot.StreamRange(ctx, cf, start, end, chunkBytes, fn)
}

// TestSnapshotReadFailure: a failed read of either the data or the
// versions ends the snapshot's read with that failure (not the other
// read's cancellation) and emits no session chunk.
func TestSnapshotReadFailure(t *testing.T) {
	c := newTestCluster(t, 3, &kvpb.InitRequest{}, func(cfg *Config) { cfg.SnapshotChunkBytes = 256 })
	laggingFollower(t, c)
	ctx := t.Context()
	r := c.store(c.leaderOf(2)).Replica(2)
	snap, err := c.engines[c.leaderOf(2)].OpenSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = snap.Release(ctx) }()
	for _, cf := range []storage.CF{storage.Data, storage.Versions} {
		sessions := 0
		err := r.readSnapshotChunks(ctx, failingSnapshot{snap, cf}, r.desc.Load(), func(ch *raftmsgpb.SnapshotChunk) error {
			if len(ch.GetKvs()) == 0 && len(ch.GetVersions()) == 0 {
				sessions++
			}
			return nil
		})
		if !errors.Is(err, errReadTest) {
			t.Errorf("cf %v failing: %v; want its failure", cf, err)
		}
		if sessions != 0 {
			t.Errorf("cf %v failing: %d session chunks emitted", cf, sessions)
		}
	}
}
