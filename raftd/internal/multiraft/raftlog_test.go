package multiraft

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
)

// TestEntryCacheBounds checks that a log's entry cache keeps at most
// cacheMax entries and about cacheBytes of entry data, at least the last
// entry, both as entries are appended and when the log is loaded again,
// and that entries out of the cache are read back from the engine.
func TestEntryCacheBounds(t *testing.T) {
	eng := storage.NewMem()
	const rangeID = 7
	load := func() *raftLog {
		t.Helper()
		l, err := loadRaftLog(eng, rangeID, &raftpb.ConfState{}, 8, 3000, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := load()
	appendEnts := func(from uint64, sizes ...int) {
		t.Helper()
		var ents []*raftpb.Entry
		for i, n := range sizes {
			ents = append(ents, &raftpb.Entry{Index: proto.Uint64(from + uint64(i)), Term: proto.Uint64(1), Data: make([]byte, n)})
		}
		ops, err := l.appendOps(ents)
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Write(context.Background(), ops, true); err != nil {
			t.Fatal(err)
		}
	}
	cachedRange := func(l *raftLog) (first, n int) {
		t.Helper()
		sum := 0
		for _, e := range l.cache {
			sum += len(e.GetData())
		}
		if sum != l.cacheData {
			t.Errorf("cache holds %d bytes of data, counted %d", sum, l.cacheData)
		}
		if len(l.cache) == 0 {
			return 0, 0
		}
		return int(l.cache[0].GetIndex()), len(l.cache)
	}
	for _, tt := range []struct {
		name        string
		from        uint64
		sizes       []int
		first, n    int
		loadedFirst int
	}{
		{"small entries: the count bounds", 1, []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}, 3, 8, 3},
		{"large entries: the bytes bound", 11, []int{1000, 1000, 1000, 1000}, 12, 3, 12},
		{"one over the bytes: kept alone", 15, []int{5000}, 15, 1, 15},
	} {
		appendEnts(tt.from, tt.sizes...)
		if first, n := cachedRange(l); first != tt.first || n != tt.n {
			t.Errorf("%s: cache holds %d entries from %d; want %d from %d", tt.name, n, first, tt.n, tt.first)
		}
		if l2 := load(); l2.last != l.last {
			t.Errorf("%s: loaded log ends at %d; want %d", tt.name, l2.last, l.last)
		} else if first, _ := cachedRange(l2); first != tt.loadedFirst {
			t.Errorf("%s: loaded cache starts at %d; want %d", tt.name, first, tt.loadedFirst)
		}
	}
	// A conflicting append replaces the tail; a truncation drops the head.
	appendEnts(15, 100, 100)
	if first, n := cachedRange(l); first != 15 || n != 2 {
		t.Errorf("after a conflicting append: cache holds %d entries from %d; want 2 from 15", n, first)
	}
	if _, err := l.truncateOps(15); err != nil { // (its ops are not written)
		t.Fatal(err)
	}
	if first, n := cachedRange(l); first != 16 || n != 1 {
		t.Errorf("after truncating to 15: cache holds %d entries from %d; want 1 from 16", n, first)
	}
	l = load()
	// Entries out of the cache come from the engine.
	ents, err := l.Entries(1, 17, 1<<30)
	if err != nil || len(ents) != 16 || len(ents[12].GetData()) != 1000 || len(ents[14].GetData()) != 100 {
		t.Fatalf("Entries(1, 17) = %d entries, %v; want 16", len(ents), err)
	}
}
