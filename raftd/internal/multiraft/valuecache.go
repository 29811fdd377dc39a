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
			c.setLocked(string(op.Key), bytes.Clone(op.Value))
		case storage.OpDelete:
			if _, ok := c.m[string(op.Key)]; ok {
				c.setLocked(string(op.Key), nil)
			}
		case storage.OpDeleteRange:
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
}
