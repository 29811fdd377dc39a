package engine

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/linxGnu/grocksdb"
)

// syncer is the commit queue of sync writes. A sync writer queues its
// batch; the first queued writer finding no leader leads one group: it
// takes every batch queued so far (up to maxGroupBytes), writes them to
// RocksDB as one merged batch, fsyncs the WAL once and wakes the group.
// Writers that queue meanwhile form the next group, led by one of them as
// soon as the current leader is done. So one RocksDB write and one fsync
// serve a whole group, and writes without sync (which bypass the queue)
// never wait for an fsync. No goroutine is involved: the leader is a
// caller.
//
// Each batch of a group keeps its atomicity: the merged batch is one WAL
// record, applied and recovered whole or not at all. A failed write fails
// the group and changes nothing; a failed fsync is sticky (the WAL's state
// on disk is unknown), so every later write fails until the engine is
// reopened.
type syncer struct {
	w      groupWriter // unsynced write options: the fsync follows
	before func()      // test knob, may be nil

	mu      sync.Mutex
	cond    sync.Cond
	queue   []*commit
	leading bool
	err     error

	// syncs counts fsyncs, groups merged writes and requests sync writes
	// (each once queued).
	syncs, groups, requests atomic.Uint64
}

// commit is one queued sync write.
type commit struct {
	rep  []byte
	done bool
	err  error
}

// maxGroupBytes bounds a merged batch; a larger batch forms a group alone.
const maxGroupBytes = 16 << 20

func (s *syncer) init(db *grocksdb.DB, wo *grocksdb.WriteOptions, before func()) {
	s.w, s.before = newGroupWriter(db, wo), before
	s.cond.L = &s.mu
}

func (s *syncer) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// commit writes rep (a WriteBatch encoding) durably, in a group with the
// sync writes queued alongside it.
func (s *syncer) commit(rep []byte) error {
	c := &commit{rep: rep}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.queue = append(s.queue, c)
	s.requests.Add(1)
	for !c.done {
		if s.leading {
			s.cond.Wait()
			continue
		}
		if s.err != nil {
			// An fsync failed after this writer queued: fail the queue.
			for _, g := range s.queue {
				g.done, g.err = true, s.err
			}
			s.queue = nil
			s.cond.Broadcast()
			continue
		}
		group := s.takeGroupLocked()
		s.leading = true
		s.mu.Unlock()
		err, sticky := s.apply(group)
		s.mu.Lock()
		s.leading = false
		if sticky {
			s.err = err
		}
		for _, g := range group {
			g.done, g.err = true, err
		}
		s.cond.Broadcast()
	}
	return c.err
}

// takeGroupLocked removes the queue's head batches, up to maxGroupBytes
// (at least one), and returns them.
func (s *syncer) takeGroupLocked() []*commit {
	n, size := 0, 0
	for n < len(s.queue) && (n == 0 || size+len(s.queue[n].rep) <= maxGroupBytes) {
		size += len(s.queue[n].rep)
		n++
	}
	group := s.queue[:n:n]
	s.queue = append([]*commit(nil), s.queue[n:]...)
	return group
}

// apply writes the group as one merged batch, then fsyncs the WAL. sticky
// reports a failed fsync.
func (s *syncer) apply(group []*commit) (err error, sticky bool) {
	rep := group[0].rep
	if len(group) > 1 {
		size, count := batchHeader, uint32(0)
		for _, g := range group {
			size += len(g.rep) - batchHeader
			count += binary.LittleEndian.Uint32(g.rep[8:batchHeader])
		}
		rep = make([]byte, batchHeader, size)
		binary.LittleEndian.PutUint32(rep[8:], count)
		for _, g := range group {
			rep = append(rep, g.rep[batchHeader:]...)
		}
	}
	if s.before != nil {
		s.before()
	}
	wrote, err := s.w.writeSync(rep)
	s.groups.Add(1)
	if !wrote {
		return fmt.Errorf("engine: write: %w", err), false
	}
	s.syncs.Add(1)
	if err != nil {
		return fmt.Errorf("engine: WAL sync failed, writes refused until reopen: %w", err), true
	}
	return nil, false
}
