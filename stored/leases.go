package stored

import (
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
)

// leaseTable holds leased server-side objects (snapshots, ingest
// sessions) by id. A lookup renews the lease; reap drops the expired.
// Every method is safe for concurrent use.
type leaseTable[T any] struct {
	max     int
	release func(T)

	mu struct {
		sync.Mutex
		next    uint64
		entries map[uint64]*leased[T]
		closed  bool
	}
}

type leased[T any] struct {
	v       T
	lease   time.Duration
	expires time.Time
}

// init prepares the table; ids count up from seed, so that ids of a
// restarted server do not repeat those its clients may still hold.
func (t *leaseTable[T]) init(max int, seed uint64, release func(T)) {
	t.max, t.release = max, release
	t.mu.next = seed
	t.mu.entries = make(map[uint64]*leased[T])
}

// add stores v under a new id with the given lease.
func (t *leaseTable[T]) add(v T, lease time.Duration, now time.Time) (uint64, time.Time, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return 0, time.Time{}, bus.Errorf(bus.CodeUnavailable, "stored: stopping")
	}
	if len(t.mu.entries) >= t.max {
		return 0, time.Time{}, bus.Errorf(bus.CodeResourceExhausted, "stored: %d open already, the limit", len(t.mu.entries))
	}
	t.mu.next++
	l := &leased[T]{v: v, lease: lease, expires: now.Add(lease)}
	t.mu.entries[t.mu.next] = l
	return t.mu.next, l.expires, nil
}

// get returns the entry id and renews its lease. An unknown id, or one
// whose lease ran out (even if not yet reaped), is a FailedPrecondition.
func (t *leaseTable[T]) get(id uint64, now time.Time, what string) (T, error) {
	t.mu.Lock()
	l, ok := t.mu.entries[id]
	if ok && now.After(l.expires) {
		delete(t.mu.entries, id)
		t.mu.Unlock()
		t.release(l.v)
		ok = false
	} else {
		if ok {
			l.expires = now.Add(l.lease)
		}
		t.mu.Unlock()
	}
	if !ok {
		var zero T
		return zero, bus.Errorf(bus.CodeFailedPrecondition, "stored: %s %d is unknown, released or expired", what, id)
	}
	return l.v, nil
}

// renew extends id's lease and reports whether it is still open. Unlike
// get it never releases an expired entry (the caller may be reading at
// it, and a release waits for its reads); the reaper will.
func (t *leaseTable[T]) renew(id uint64, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.mu.entries[id]
	if !ok || now.After(l.expires) {
		return false
	}
	l.expires = now.Add(l.lease)
	return true
}

// remove drops id, releasing its value; false if it was not there.
func (t *leaseTable[T]) remove(id uint64) bool {
	t.mu.Lock()
	l, ok := t.mu.entries[id]
	delete(t.mu.entries, id)
	t.mu.Unlock()
	if ok {
		t.release(l.v)
	}
	return ok
}

// reap releases the entries whose lease ran out and returns their count.
func (t *leaseTable[T]) reap(now time.Time) int {
	var expired []T
	t.mu.Lock()
	for id, l := range t.mu.entries {
		if now.After(l.expires) {
			expired = append(expired, l.v)
			delete(t.mu.entries, id)
		}
	}
	t.mu.Unlock()
	for _, v := range expired {
		t.release(v)
	}
	return len(expired)
}

// closeAll releases everything and refuses later adds.
func (t *leaseTable[T]) closeAll() {
	t.mu.Lock()
	entries := t.mu.entries
	t.mu.entries = make(map[uint64]*leased[T])
	t.mu.closed = true
	t.mu.Unlock()
	for _, l := range entries {
		t.release(l.v)
	}
}

func (t *leaseTable[T]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.mu.entries)
}

// leaseFor returns the lease asked for (in ms; 0 means def), capped.
func leaseFor(ms uint32, def, max time.Duration) time.Duration {
	if ms == 0 {
		return def
	}
	return min(time.Duration(ms)*time.Millisecond, max)
}
