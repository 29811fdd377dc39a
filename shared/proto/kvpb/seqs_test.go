package kvpb_test

import (
	"testing"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

func TestSeqs(t *testing.T) {
	var s kvpb.Seqs
	if got := s.FirstUnacked(); got != 1 {
		t.Fatalf("FirstUnacked of a new session = %d; want 1", got)
	}
	a, b, c := s.Begin(), s.Begin(), s.Begin()
	if a != 1 || b != 2 || c != 3 {
		t.Fatalf("Begin = %d, %d, %d; want 1, 2, 3", a, b, c)
	}
	steps := []struct {
		end        uint64
		first, spn uint64
	}{
		{end: b, first: 1, spn: 3}, // 1 still in flight
		{end: b, first: 1, spn: 3}, // ending twice changes nothing
		{end: 7, first: 1, spn: 3}, // never begun
		{end: a, first: 3, spn: 1}, // 1 and 2 done: 3 is the first in flight
		{end: c, first: 4, spn: 0}, // none in flight: the next seq
	}
	for i, st := range steps {
		s.End(st.end)
		if got := s.FirstUnacked(); got != st.first {
			t.Errorf("step %d: after End(%d) FirstUnacked = %d; want %d", i, st.end, got, st.first)
		}
		if got := s.Span(); got != st.spn {
			t.Errorf("step %d: after End(%d) Span = %d; want %d", i, st.end, got, st.spn)
		}
	}
	if got := s.Begin(); got != 4 {
		t.Errorf("Begin after three = %d; want 4", got)
	}
}
