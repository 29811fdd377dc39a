package multiraft

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
)

// A full disk
//
// stored refuses writes (storage.IsDiskFull) while its disk is below its
// free-space floor, except reserve writes (Engine.WriteReserve), which it
// takes down to half the floor. The store learns of it from stored's
// status (SetDiskStatus, which raftd feeds from stored's WatchDisk stream)
// and from the refusals themselves, and then:
//
//   - a leader on the node refuses new proposals at once with
//     ResourceExhausted, reason kvpb.ReasonDiskFull: in route, and the
//     proposals waiting in a replica's inbox. Nothing of them happened.
//   - a round's write refused for want of space is not fatal. The works
//     of the ranges this node leads (their entries are only what was
//     proposed before the refusal) and of the ranges whose work adds no
//     user data (hard state and votes, empty entries, conf changes, the
//     applied index, an installed snapshot's bookkeeping) are written
//     again as reserve writes. The others (a follower's appended entries,
//     its applied data) are held: the replica sits the rounds out holding
//     its Ready, sending nothing of it (no append acknowledgement, vote or
//     heartbeat answer: nothing that is not durable is answered), its
//     inbox waiting and its raft timers stopped. Its leader sees a
//     follower that does not answer while a quorum of the others keeps
//     committing.
//   - a held work is written again once stored reports room (or every
//     heldRetry, in case its status is stale); the replica then goes on,
//     and raft catches it up with appends, or a snapshot if its leader's
//     log was truncated meanwhile.
//   - log truncations, the incarnation written at start and a snapshot's
//     marker use the reserve; a truncation refused waits for the next.
//
// A refusal alone marks the disk full for heldRetry: without stored's
// status (the stream broken), writes are tried again after that.

// heldRetry is how often a held write is tried again whatever stored's
// last status said, and how long a refusal alone marks the disk full.
const heldRetry = time.Second

// diskState is what the store knows of its node's disk.
type diskState struct {
	mu struct {
		sync.Mutex
		// st is stored's last status (nil before the first).
		st *storepb.DiskStatus
		// refusedUntil and reserveRefusedUntil: a write refused for want
		// of space marks the disk full until then.
		refusedUntil, reserveRefusedUntil time.Time
		// reason describes the last refusal.
		reason string
		// retries are held works taken again because heldRetry passed,
		// not because the disk was reported to have room: they are
		// written whatever the disk is believed to be (the belief may be
		// stale).
		retries map[*readyWork]struct{}
	}
}

// heldWork is a replica's round work whose write was refused for want of
// space; the replica sits the rounds out until it is written.
type heldWork struct {
	w *readyWork
	// reserve: the work may go as a reserve write.
	reserve bool
	// tried is when its write was last refused.
	tried time.Time
}

// SetDiskStatus records stored's disk status (from its WatchDisk stream).
// Once it reports room, the held writes are tried again at once.
func (s *Store) SetDiskStatus(st *storepb.DiskStatus) {
	s.disk.mu.Lock()
	s.disk.mu.st = st
	s.disk.mu.Unlock()
	if !st.GetFull() || !st.GetReserveFull() {
		s.enqueueHeld()
	}
}

// DiskFull returns why writes are refused on this node, or "" while they
// are not.
func (s *Store) DiskFull() string {
	full, _, reason := s.diskFull(time.Now())
	if !full {
		return ""
	}
	return reason
}

// diskFull reports whether ordinary writes, and reserve writes, are known
// to be refused at now, and why.
func (s *Store) diskFull(now time.Time) (full, reserveFull bool, reason string) {
	s.disk.mu.Lock()
	defer s.disk.mu.Unlock()
	st := s.disk.mu.st
	full = st.GetFull() || now.Before(s.disk.mu.refusedUntil)
	reserveFull = st.GetReserveFull() || now.Before(s.disk.mu.reserveRefusedUntil)
	switch {
	case !full:
	case st.GetFull():
		reason = st.Describe()
	default:
		reason = s.disk.mu.reason
	}
	return full, reserveFull, reason
}

// diskFullErr is the answer to a write proposed while this node's disk is
// full; nil while it is not.
func (s *Store) diskFullErr() error {
	full, _, reason := s.diskFull(time.Now())
	if !full {
		return nil
	}
	return bus.WithReason(bus.CodeResourceExhausted, kvpb.ReasonDiskFull, "kv: %s; writes refused, reads served", reason)
}

// noteRefusal records a write refused for want of space.
func (s *Store) noteRefusal(err error, reserve bool) {
	now := time.Now()
	reason := fmt.Sprintf("disk full on node %d", s.d.NodeID)
	if be := (*bus.Error)(nil); errors.As(err, &be) && be.Message != "" {
		reason = strings.TrimPrefix(be.Message, "stored: ")
	}
	s.disk.mu.Lock()
	was := now.Before(s.disk.mu.refusedUntil) || s.disk.mu.st.GetFull()
	s.disk.mu.refusedUntil, s.disk.mu.reason = now.Add(heldRetry), reason
	if reserve {
		s.disk.mu.reserveRefusedUntil = now.Add(heldRetry)
	}
	s.disk.mu.Unlock()
	s.metrics.diskRefusals.Add(1)
	if !was {
		s.log.Warn("disk full: proposals refused, followers' appends held until stored has room", slog.String("reason", reason))
	}
}

// noteWritten records an ordinary write that went through: the disk has
// room, whatever the last refusal said.
func (s *Store) noteWritten() {
	s.disk.mu.Lock()
	s.disk.mu.refusedUntil, s.disk.mu.reserveRefusedUntil = time.Time{}, time.Time{}
	s.disk.mu.Unlock()
}

// enqueueHeld schedules the replicas holding a write.
func (s *Store) enqueueHeld() {
	for _, r := range s.Replicas() {
		if r.held.Load() != nil {
			s.enqueue(r.rangeID)
		}
	}
}

// reserveEligible reports whether w may go as a reserve write: a leader's
// (sent early: its entries are what it proposed before the refusal), or
// one that adds no user data (no entry carrying a command, no data put).
func reserveEligible(w *readyWork) bool {
	if w.sentEarly {
		return true
	}
	for _, e := range w.rd.Entries {
		if e.GetType() == raftpb.EntryNormal && len(e.GetData()) > 0 {
			return false
		}
	}
	for _, op := range w.ops {
		if op.CF == storage.Data && op.Kind == storage.OpPut {
			return false
		}
	}
	return true
}

// takeHeld returns the replica's held work when it is due to be written
// again (stored reports room for its class, or heldRetry passed); holding
// reports whether the replica held one at all (with a nil work: not due,
// the replica sits this round out).
func (r *Replica) takeHeld(now time.Time) (w *readyWork, holding bool) {
	h := r.held.Load()
	if h == nil {
		return nil, false
	}
	full, reserveFull, _ := r.s.diskFull(now)
	if refused := h.reserve && reserveFull || !h.reserve && full; refused {
		if now.Sub(h.tried) < heldRetry {
			return nil, true
		}
		r.s.disk.mu.Lock()
		if r.s.disk.mu.retries == nil {
			r.s.disk.mu.retries = map[*readyWork]struct{}{}
		}
		r.s.disk.mu.retries[h.w] = struct{}{}
		r.s.disk.mu.Unlock()
	}
	r.held.Store(nil)
	r.s.metrics.heldReplicas.Add(-1)
	return h.w, true
}

// takeRetries returns (and forgets) the held works taken again because
// heldRetry passed.
func (s *Store) takeRetries() map[*readyWork]struct{} {
	s.disk.mu.Lock()
	defer s.disk.mu.Unlock()
	r := s.disk.mu.retries
	s.disk.mu.retries = nil
	return r
}

// hold keeps w for a later round.
func (r *Replica) hold(w *readyWork, now time.Time) {
	if r.held.Swap(&heldWork{w: w, reserve: reserveEligible(w), tried: now}) == nil {
		r.s.metrics.heldReplicas.Add(1)
	}
}

// writeWorks writes the round's works (one per replica, nil for none) in
// batches cut between ranges. A batch refused for want of space is not
// fatal: its works that may use the reserve are written again so, the
// others are held (see above) and set to nil in works, so phase2 skips
// them. Any other failure is returned.
func (s *Store) writeWorks(reps []*Replica, works []*readyWork) error {
	now := time.Now()
	full, reserveFull, _ := s.diskFull(now)
	retries := s.takeRetries()
	var normal, reserve []int
	for i, w := range works {
		_, retry := retries[w]
		switch {
		case w == nil || len(w.ops) == 0:
		case !full || retry:
			normal = append(normal, i)
		case reserveEligible(w) && !reserveFull:
			reserve = append(reserve, i)
		default:
			reps[i].hold(w, now)
			works[i] = nil
		}
	}
	refused, err := s.writeBatches(works, normal, false, len(reps))
	if err != nil {
		return err
	}
	if len(normal) > 0 && len(refused) < len(normal) {
		s.noteWritten()
	}
	for _, i := range refused {
		if reserveEligible(works[i]) {
			reserve = append(reserve, i)
		} else {
			reps[i].hold(works[i], now)
			works[i] = nil
		}
	}
	refused, err = s.writeBatches(works, reserve, true, len(reps))
	if err != nil {
		return err
	}
	for _, i := range refused {
		reps[i].hold(works[i], now)
		works[i] = nil
	}
	return nil
}

// writeBatches writes the works of idx, at most MaxRoundWriteBytes a
// batch (a range's writes never cut), and returns those whose batch was
// refused for want of space.
func (s *Store) writeBatches(works []*readyWork, idx []int, reserve bool, ranges int) (refused []int, err error) {
	var ops, ahead []storage.Op
	var batch []int
	var size uint64
	sync := false
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		err := s.writeRound(ops, ahead, sync, ranges, reserve)
		switch {
		case storage.IsDiskFull(err):
			s.noteRefusal(err, reserve)
			refused = append(refused, batch...)
		case err != nil:
			return err
		}
		ops, ahead, batch, size, sync = nil, nil, nil, 0, false
		return nil
	}
	for _, i := range idx {
		w := works[i]
		n := opsBytes(w.ops)
		if len(ops) > 0 && size+n > s.cfg.MaxRoundWriteBytes {
			// Cut between ranges: each range's writes stay atomic.
			if err := flush(); err != nil {
				return nil, err
			}
		}
		ops = append(ops, w.ops...)
		ahead = append(ahead, w.ahead...)
		batch = append(batch, i)
		size += n
		sync = sync || w.sync
	}
	return refused, flush()
}
