package kvclient

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// sessionWindow is how far a session's seqs may run ahead of its first
// unacknowledged write before the client starts a new session: a write
// that takes long (a dead node's timeouts) would otherwise make ranges
// keep the answers of every later write until it ends. Far above the
// writes one client has in flight.
const sessionWindow = 4096

// clockFresh is how long an HLC reading from the cluster dates writes
// before the client reads the clock again (Descriptors): the client's own
// monotonic clock advances it meanwhile, so its rate error (and a machine
// suspended meanwhile) counts for at most this long.
const clockFresh = 30 * time.Second

// session is one client session: an id and its seqs (see kvpb.Session).
type session struct {
	id   [16]byte
	seqs kvpb.Seqs
}

func newSession() (*session, error) {
	s := &session{}
	if _, err := rand.Read(s.id[:]); err != nil {
		return nil, fmt.Errorf("session id: %w", err)
	}
	return s, nil
}

// write is one write operation of a session: every attempt carries the
// same session and seq (pb), with first_unacked refreshed per attempt.
type write struct {
	s  *session
	pb *kvpb.Session
}

// sessions are the client's sessions and its reading of the cluster's
// clock.
type sessions struct {
	mu  sync.Mutex
	cur *session
	// off is set when the servers predate sessions (no Descriptors, or
	// no clock in its answer): writes then carry none.
	off bool
	// wall is the cluster's HLC wall time read at local time at; last is
	// the last issue time handed out (they never go back).
	wall int64
	at   time.Time
	last int64
	// reading is closed when the clock read under way ends.
	reading chan struct{}
}

// beginWrite starts a write: a session seq and the write's issue time.
// End it with endWrite once the caller has its answer or gives up.
func (c *Client) beginWrite(ctx context.Context) (*write, error) {
	issued, ok, err := c.issueTime(ctx)
	if err != nil || !ok {
		return &write{}, err
	}
	c.sess.mu.Lock()
	s := c.sess.cur
	if s == nil || s.seqs.Span() >= sessionWindow {
		if s, err = newSession(); err != nil {
			c.sess.mu.Unlock()
			return nil, err
		}
		c.sess.cur = s
	}
	c.sess.mu.Unlock()
	seq := s.seqs.Begin()
	return &write{s: s, pb: &kvpb.Session{Id: s.id[:], Seq: seq, FirstUnacked: s.seqs.FirstUnacked(), IssuedNanos: issued}}, nil
}

// endWrite ends w: its session no longer waits for it.
func (w *write) end() {
	if w.s != nil {
		w.s.seqs.End(w.pb.GetSeq())
	}
}

// header returns a write request's header carrying w's session.
func (w *write) header() *kvpb.Header { return &kvpb.Header{Session: w.pb} }

// refresh updates the header's first_unacked before an attempt.
func (w *write) refresh() {
	if w != nil && w.s != nil {
		w.pb.FirstUnacked = w.s.seqs.FirstUnacked()
	}
}

// issueTime returns the cluster's HLC wall time now as this client
// estimates it, reading the clock (Descriptors) when its last reading is
// older than clockFresh. ok is false when the servers predate sessions.
func (c *Client) issueTime(ctx context.Context) (int64, bool, error) {
	for {
		c.sess.mu.Lock()
		if c.sess.off {
			c.sess.mu.Unlock()
			return 0, false, nil
		}
		now := time.Now()
		if !c.sess.at.IsZero() && now.Sub(c.sess.at) < clockFresh && now.Round(0).Sub(c.sess.at.Round(0)) < clockFresh {
			t := max(c.sess.wall+int64(now.Sub(c.sess.at)), c.sess.last)
			c.sess.last = t
			c.sess.mu.Unlock()
			return t, true, nil
		}
		if wait := c.sess.reading; wait != nil {
			c.sess.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return 0, false, fmt.Errorf("read the cluster's clock: %w", ctx.Err())
			}
		}
		done := make(chan struct{})
		c.sess.reading = done
		c.sess.mu.Unlock()
		// Only the clock is wanted: any node's copy of meta will do.
		_, err := c.Descriptors(ctx, nil, nil, WithConsistency(Stale))
		unsupported := errors.Is(err, bus.ErrUnimplemented)
		if unsupported {
			c.descriptorsUnsupported()
			err = nil
		}
		c.sess.mu.Lock()
		c.sess.reading = nil
		close(done)
		c.sess.mu.Unlock()
		if err != nil {
			return 0, false, fmt.Errorf("read the cluster's clock: %w", err)
		}
	}
}

// descriptorsUnsupported notes servers without Descriptors: they predate
// sessions, so writes carry none, and the range cache is not refreshed.
func (c *Client) descriptorsUnsupported() {
	c.cache.markUnsupported()
	c.sess.mu.Lock()
	c.sess.off = true
	c.sess.mu.Unlock()
}

// observeClock takes in a reading of the cluster's HLC (a Descriptors
// answer's now, a write's timestamp): a fresh reading of the clock from
// Descriptors re-anchors the estimate; a write's timestamp moves it
// forward only.
func (c *Client) observeClock(ts hlc.Timestamp, fromDescriptors bool) {
	c.sess.mu.Lock()
	defer c.sess.mu.Unlock()
	now := time.Now()
	switch {
	case fromDescriptors && ts.IsZero():
		// A server without sessions.
		c.sess.off = true
	case fromDescriptors:
		c.sess.wall, c.sess.at = ts.WallTime, now
	case !c.sess.at.IsZero() && ts.WallTime > c.sess.wall+int64(now.Sub(c.sess.at)):
		c.sess.wall, c.sess.at = ts.WallTime, now
	}
}
