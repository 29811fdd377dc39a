package kvpb

import "sync"

// Seqs numbers the writes of one session (Session.seq, from 1) and keeps
// track of those still in flight, for Session.first_unacked. The zero
// value is ready; it is safe for concurrent use.
type Seqs struct {
	mu sync.Mutex
	// last is the last seq handed out; first the lowest not ended
	// (last+1 when none is in flight).
	last, first uint64
	// ended holds the seqs above first that have ended.
	ended map[uint64]struct{}
}

// Begin returns the next seq; it is in flight until End.
func (s *Seqs) Begin() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == 0 {
		s.first = 1
	}
	s.last++
	return s.last
}

// End marks seq as answered or given up: the session no longer waits for
// it.
func (s *Seqs) End(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq < s.first || seq > s.last {
		return
	}
	if s.ended == nil {
		s.ended = make(map[uint64]struct{})
	}
	s.ended[seq] = struct{}{}
	for {
		if _, ok := s.ended[s.first]; !ok {
			return
		}
		delete(s.ended, s.first)
		s.first++
	}
}

// FirstUnacked returns the lowest seq still in flight, or the next seq
// when none is (Session.first_unacked).
func (s *Seqs) FirstUnacked() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.first, 1)
}

// Span returns how many seqs, from the first in flight to the last
// handed out, a range may have to remember answers for.
func (s *Seqs) Span() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last + 1 - max(s.first, 1)
}
