package multiraft

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
)

// valueCache keeps recently written and read user values (the engine's
// encoding: HLC timestamp and value), so a read of a hot key is served by
// raftd without a round trip to stored. It mirrors the engine exactly for
// the keys it holds:
//
//   - the log writer applies every data write to it after the engine write
//     returns and before the replicas' applied indexes are published, so a
//     read that passed its barrier finds the cache at least as new as it
//     needs;
//   - a read that missed fills it only if no data write completed between
//     its engine read and the fill (the epoch did not move), so a fill
//     never brings back a value a newer write replaced;
//   - what changes data outside the writer (a snapshot install) clears it.
//
// Absent keys are cached too (a nil value), since a read of a missing key
// costs the same round trip. Eviction is random (map order) once the cache
// passes its byte budget.
type valueCache struct {
	max   int
	epoch atomic.Uint64

	mu    sync.RWMutex
	m     map[string][]byte
	bytes int
	// reads are the prefetches in flight (startRead): a data write to
	// one of their keys marks it stale, so their fill skips it.
	reads map[*cacheRead]struct{}

	hits, misses atomic.Uint64
}

// cacheEntryOverhead approximates a map entry's cost beyond key and value.
const cacheEntryOverhead = 64

func newValueCache(maxBytes int) *valueCache {
	if maxBytes <= 0 {
		return nil
	}
	return &valueCache{max: maxBytes, m: map[string][]byte{}}
}

// get returns the cached engine value of key: ok reports a hit, found
// whether the key exists.
func (c *valueCache) get(key []byte) (v []byte, found, ok bool) {
	if c == nil {
		return nil, false, false
	}
	c.mu.RLock()
	v, ok = c.m[string(key)]
	c.mu.RUnlock()
	if !ok {
		c.misses.Add(1)
		return nil, false, false
	}
	c.hits.Add(1)
	return v, v != nil, true
}

// fill caches what a read found, unless a data write completed since the
// read started (epoch is the value read before it).
func (c *valueCache) fill(epoch uint64, key, v []byte, found bool) {
	if c == nil {
		return
	}
	if !found {
		v = nil
	} else {
		v = bytes.Clone(v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch.Load() != epoch {
		return
	}
	c.setLocked(string(key), v)
}

func (c *valueCache) setLocked(k string, v []byte) {
	if old, ok := c.m[k]; ok {
		c.bytes -= len(k) + len(old) + cacheEntryOverhead
	}
	c.m[k] = v
	c.bytes += len(k) + len(v) + cacheEntryOverhead
	if c.bytes <= c.max {
		return // (starting an iteration of a large map is not free)
	}
	for k2, v2 := range c.m {
		if c.bytes <= c.max {
			break
		}
		if k2 == k {
			continue
		}
		delete(c.m, k2)
		c.bytes -= len(k2) + len(v2) + cacheEntryOverhead
	}
}

// cacheRead is a read of several keys that fills the cache when it
// returns, whatever other data writes completed meanwhile: only the keys
// such a write touched are left out (fill, by contrast, gives up on any
// write since its epoch, which under a steady write load is most of them).
type cacheRead struct {
	// want is the set of keys read; fixed once started, read without the
	// cache's lock.
	want map[string]struct{}
	// done is closed when the read has filled the cache (or failed).
	done chan struct{}
	// stale are the keys written since the read started, all whether
	// the cache was cleared; both under the cache's lock.
	stale map[string]struct{}
	all   bool
}

// startRead registers a read of keys; finishRead must follow.
func (c *valueCache) startRead(keys [][]byte) *cacheRead {
	rd := &cacheRead{want: make(map[string]struct{}, len(keys)), done: make(chan struct{})}
	for _, k := range keys {
		rd.want[string(k)] = struct{}{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reads == nil {
		c.reads = map[*cacheRead]struct{}{}
	}
	c.reads[rd] = struct{}{}
	return rd
}

// finishRead fills the cache with what rd found (values[i] and found[i]
// for keys[i]; none if err), except the keys written since it started,
// and closes rd.done.
func (c *valueCache) finishRead(rd *cacheRead, keys, values [][]byte, found []bool, err error) {
	defer close(rd.done)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.reads, rd)
	if err != nil || rd.all {
		return
	}
	for i, k := range keys {
		if _, stale := rd.stale[string(k)]; stale {
			continue
		}
		v := values[i]
		if !found[i] {
			v = nil
		} else {
			v = bytes.Clone(v)
		}
		c.setLocked(string(k), v)
	}
}

// staleLocked marks key written for the reads in flight that want it.
func (c *valueCache) staleLocked(key []byte) {
	for rd := range c.reads {
		if _, ok := rd.want[string(key)]; ok {
			if rd.stale == nil {
				rd.stale = map[string]struct{}{}
			}
			rd.stale[string(key)] = struct{}{}
		}
	}
}

// staleSpanLocked marks the keys of [start, end) (nil end: unbounded)
// written for the reads in flight.
func (c *valueCache) staleSpanLocked(start, end []byte) {
	for rd := range c.reads {
		for k := range rd.want {
			if k >= string(start) && (end == nil || k < string(end)) {
				if rd.stale == nil {
					rd.stale = map[string]struct{}{}
				}
				rd.stale[k] = struct{}{}
			}
		}
	}
}

// applyWrite brings the cache in line with an engine write that has
// returned: written keys take their new values (a write makes a key hot),
// deleted keys that were cached become absent, a deleted span is dropped.
func (c *valueCache) applyWrite(ops []storage.Op) {
	if c == nil {
		return
	}
	touched := false
	for _, op := range ops {
		if op.CF == storage.Data {
			touched = true
			break
		}
	}
	if !touched {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch.Add(1)
	for _, op := range ops {
		if op.CF != storage.Data {
			continue
		}
		switch op.Kind {
		case storage.OpPut:
			c.staleLocked(op.Key)
			c.setLocked(string(op.Key), bytes.Clone(op.Value))
		case storage.OpDelete:
			c.staleLocked(op.Key)
			if _, ok := c.m[string(op.Key)]; ok {
				c.setLocked(string(op.Key), nil)
			}
		case storage.OpDeleteRange:
			c.staleSpanLocked(op.Key, op.End)
			for k, v := range c.m {
				if k >= string(op.Key) && (op.End == nil || k < string(op.End)) {
					delete(c.m, k)
					c.bytes -= len(k) + len(v) + cacheEntryOverhead
				}
			}
		}
	}
}

// clear empties the cache (data changed outside the log writer).
func (c *valueCache) clear() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch.Add(1)
	clear(c.m)
	c.bytes = 0
	for rd := range c.reads {
		rd.all = true
	}
}
