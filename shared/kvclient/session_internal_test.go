package kvclient

import (
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/hlc"
)

// anchored returns a client whose clock reading is fresh, so writes need
// no server.
func anchored(wall int64) *Client {
	c := &Client{cache: newRangeCache()}
	c.sess.wall, c.sess.at = wall, time.Now()
	return c
}

// TestSessionWindow: one write held in flight keeps its session's
// first_unacked; once the session's seqs run sessionWindow past it, new
// writes go to a new session, starting at seq 1.
func TestSessionWindow(t *testing.T) {
	c := anchored(time.Now().UnixNano())
	held, err := c.beginWrite(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i := range sessionWindow - 1 {
		w, err := c.beginWrite(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if w.s != held.s || w.pb.GetSeq() != uint64(i+2) || w.pb.GetFirstUnacked() != 1 {
			t.Fatalf("write %d: seq %d, first_unacked %d, same session %v; want seq %d, first_unacked 1 (seq 1 in flight)",
				i, w.pb.GetSeq(), w.pb.GetFirstUnacked(), w.s == held.s, i+2)
		}
		w.end()
	}
	w, err := c.beginWrite(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if w.s == held.s || w.pb.GetSeq() != 1 || string(w.pb.GetId()) == string(held.pb.GetId()) {
		t.Fatalf("write past the window: seq %d in the same session %v; want seq 1 of a new session", w.pb.GetSeq(), w.s == held.s)
	}
	w.end()
	held.refresh()
	if held.pb.GetFirstUnacked() != 1 {
		t.Errorf("held write's first_unacked = %d; want 1", held.pb.GetFirstUnacked())
	}
	held.end()
	if got := held.s.seqs.FirstUnacked(); got != sessionWindow+1 {
		t.Errorf("old session's first_unacked after its last write = %d; want %d", got, sessionWindow+1)
	}
}

// TestIssueTimes: issue times follow the cluster's clock read from
// Descriptors and the client's monotonic clock, move forward to a later
// write timestamp, and never go back, even when a new reading is behind.
func TestIssueTimes(t *testing.T) {
	base := time.Now().UnixNano()
	c := anchored(base)
	issue := func() int64 {
		t.Helper()
		ts, ok, err := c.issueTime(t.Context())
		if err != nil || !ok {
			t.Fatalf("issueTime: %v, %v", ok, err)
		}
		return ts
	}
	a := issue()
	if a < base {
		t.Fatalf("issue time %d before the reading %d", a, base)
	}
	c.observeClock(hlc.Timestamp{WallTime: a + int64(time.Hour)}, false)
	if b := issue(); b < a+int64(time.Hour) {
		t.Fatalf("issue time %d did not follow a write timestamp an hour ahead", b)
	}
	c.observeClock(hlc.Timestamp{WallTime: base}, false)
	c.observeClock(hlc.Timestamp{WallTime: base}, true)
	if d := issue(); d < a+int64(time.Hour) {
		t.Fatalf("issue time went back to %d after an older reading", d)
	}
	c.observeClock(hlc.Timestamp{}, true)
	if _, ok, err := c.issueTime(t.Context()); ok || err != nil {
		t.Fatalf("after a Descriptors answer without a clock: sessions on %v, %v; want off", ok, err)
	}
}
