package engine

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/linxGnu/grocksdb"
)

// syncer is the group commit of sync writes. Every write reaches the WAL
// unsynced; a sync writer then takes a ticket and waits until a WAL fsync
// that started after its ticket completes. The first waiter with no fsync
// running becomes the leader: it fsyncs for every ticket taken so far, and
// writers arriving meanwhile queue for the next fsync, which their next
// leader runs as soon as the current one ends. So one fsync serves every
// sync write that reached the WAL before it began, and writes without sync
// never wait. No goroutine is involved: the leader is a caller.
//
// A failed fsync is sticky: the WAL's state on disk is unknown, so every
// later write fails until the engine is reopened.
type syncer struct {
	db     *grocksdb.DB
	before func() // test knob, may be nil

	mu      sync.Mutex
	cond    sync.Cond
	issued  uint64 // last ticket handed out
	synced  uint64 // every ticket <= synced is durable
	running bool
	err     error

	// syncs counts fsyncs; requests counts sync writes, each once it
	// holds its ticket.
	syncs, requests atomic.Uint64
}

func (s *syncer) init(db *grocksdb.DB, before func()) {
	s.db, s.before = db, before
	s.cond.L = &s.mu
}

func (s *syncer) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// sync returns once every write that reached the WAL before the call is
// durable.
func (s *syncer) sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issued++
	ticket := s.issued
	s.requests.Add(1)
	for s.synced < ticket && s.err == nil {
		if s.running {
			s.cond.Wait()
			continue
		}
		// Lead: every ticket issued so far belongs to a write already in
		// the WAL, so one fsync now covers them all.
		target := s.issued
		s.running = true
		s.mu.Unlock()
		if s.before != nil {
			s.before()
		}
		err := s.db.FlushWAL(true)
		s.mu.Lock()
		s.running = false
		s.syncs.Add(1)
		if err != nil {
			s.err = fmt.Errorf("engine: WAL sync failed, writes refused until reopen: %w", err)
		} else {
			s.synced = target
		}
		s.cond.Broadcast()
	}
	return s.err
}
