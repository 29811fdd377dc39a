package multiraft

import (
	"context"
	"fmt"
	"testing"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
)

func TestValueCache(t *testing.T) {
	type step struct {
		do        func(c *valueCache)
		key       string
		wantHit   bool
		wantFound bool
		wantValue string
	}
	put := func(k, v string) func(*valueCache) {
		return func(c *valueCache) { c.applyWrite([]storage.Op{storage.Put(storage.Data, []byte(k), []byte(v))}) }
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a write caches the key", []step{{do: put("a", "1"), key: "a", wantHit: true, wantFound: true, wantValue: "1"}}},
		{"other column families are ignored", []step{{do: func(c *valueCache) {
			c.applyWrite([]storage.Op{storage.Put(storage.Raft, []byte("a"), []byte("1"))})
		}, key: "a"}}},
		{"a delete of a cached key caches its absence", []step{
			{do: put("a", "1")},
			{do: func(c *valueCache) { c.applyWrite([]storage.Op{storage.Delete(storage.Data, []byte("a"))}) }, key: "a", wantHit: true},
		}},
		{"a delete of an uncached key stays uncached", []step{
			{do: func(c *valueCache) { c.applyWrite([]storage.Op{storage.Delete(storage.Data, []byte("a"))}) }, key: "a"},
		}},
		{"a deleted span is dropped", []step{
			{do: put("a", "1")}, {do: put("b", "2")}, {do: put("c", "3")},
			{do: func(c *valueCache) {
				c.applyWrite([]storage.Op{storage.DeleteRange(storage.Data, []byte("b"), []byte("c"))})
			}, key: "b"},
			{key: "a", wantHit: true, wantFound: true, wantValue: "1"},
			{key: "c", wantHit: true, wantFound: true, wantValue: "3"},
		}},
		{"a fill after a write that completed meanwhile is dropped", []step{
			{do: func(c *valueCache) {
				epoch := c.epoch.Load()
				c.applyWrite([]storage.Op{storage.Put(storage.Data, []byte("x"), []byte("other"))})
				c.fill(epoch, []byte("a"), []byte("stale"), true)
			}, key: "a"},
		}},
		{"a fill with no write meanwhile is kept, absence too", []step{
			{do: func(c *valueCache) {
				c.fill(c.epoch.Load(), []byte("a"), []byte("v"), true)
				c.fill(c.epoch.Load(), []byte("b"), nil, false)
			}, key: "a", wantHit: true, wantFound: true, wantValue: "v"},
			{key: "b", wantHit: true},
		}},
		{"clear drops everything and stale fills", []step{
			{do: put("a", "1")},
			{do: func(c *valueCache) {
				epoch := c.epoch.Load()
				c.clear()
				c.fill(epoch, []byte("b"), []byte("old"), true)
			}, key: "a"},
			{key: "b"},
		}},
		{"a started read fills every key no write touched meanwhile, absence too", []step{
			{do: func(c *valueCache) {
				keys := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
				rd := c.startRead(keys)
				c.applyWrite([]storage.Op{storage.Put(storage.Data, []byte("x"), []byte("other"))})
				c.finishRead(rd, keys, [][]byte{[]byte("1"), nil, []byte("3")}, []bool{true, false, true}, nil)
			}, key: "a", wantHit: true, wantFound: true, wantValue: "1"},
			{key: "b", wantHit: true},
			{key: "c", wantHit: true, wantFound: true, wantValue: "3"},
		}},
		{"a started read leaves out a key put meanwhile", []step{
			{do: func(c *valueCache) {
				keys := [][]byte{[]byte("a"), []byte("b")}
				rd := c.startRead(keys)
				c.applyWrite([]storage.Op{storage.Put(storage.Data, []byte("a"), []byte("new"))})
				c.finishRead(rd, keys, [][]byte{[]byte("stale"), []byte("2")}, []bool{true, true}, nil)
			}, key: "a", wantHit: true, wantFound: true, wantValue: "new"},
			{key: "b", wantHit: true, wantFound: true, wantValue: "2"},
		}},
		{"a started read leaves out a key deleted meanwhile", []step{
			{do: func(c *valueCache) {
				keys := [][]byte{[]byte("a")}
				rd := c.startRead(keys)
				c.applyWrite([]storage.Op{storage.Delete(storage.Data, []byte("a"))})
				c.finishRead(rd, keys, [][]byte{[]byte("stale")}, []bool{true}, nil)
			}, key: "a"},
		}},
		{"a started read leaves out the keys of a span deleted meanwhile", []step{
			{do: func(c *valueCache) {
				keys := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
				rd := c.startRead(keys)
				c.applyWrite([]storage.Op{storage.DeleteRange(storage.Data, []byte("b"), []byte("c"))})
				c.finishRead(rd, keys, [][]byte{[]byte("1"), []byte("stale"), []byte("3")}, []bool{true, true, true}, nil)
			}, key: "b"},
			{key: "a", wantHit: true, wantFound: true, wantValue: "1"},
			{key: "c", wantHit: true, wantFound: true, wantValue: "3"},
		}},
		{"a started read fills nothing after a clear, nor after its error", []step{
			{do: func(c *valueCache) {
				keys := [][]byte{[]byte("a")}
				rd := c.startRead(keys)
				c.clear()
				c.finishRead(rd, keys, [][]byte{[]byte("stale")}, []bool{true}, nil)
				rd = c.startRead([][]byte{[]byte("b")})
				c.finishRead(rd, nil, nil, nil, context.Canceled)
				if len(c.reads) != 0 {
					panic("reads still registered")
				}
				<-rd.done
			}, key: "a"},
			{key: "b"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newValueCache(1 << 20)
			for i, s := range tc.steps {
				if s.do != nil {
					s.do(c)
				}
				if s.key == "" {
					continue
				}
				v, found, hit := c.get([]byte(s.key))
				if hit != s.wantHit || found != s.wantFound || string(v) != s.wantValue {
					t.Errorf("step %d: get(%q) = %q, found %v, hit %v; want %q, %v, %v", i, s.key, v, found, hit, s.wantValue, s.wantFound, s.wantHit)
				}
			}
		})
	}
}

func TestValueCacheBudget(t *testing.T) {
	c := newValueCache(10 << 10)
	for i := range 1000 {
		c.applyWrite([]storage.Op{storage.Put(storage.Data, fmt.Appendf(nil, "key%04d", i), make([]byte, 100))})
		if c.bytes > c.max {
			t.Fatalf("after %d writes the cache holds %d bytes, over its %d", i+1, c.bytes, c.max)
		}
	}
	if _, _, hit := c.get([]byte("key0999")); !hit {
		t.Error("the latest write was evicted")
	}
	if n := len(c.m); n == 0 || n > 100 {
		t.Errorf("%d entries cached", n)
	}
	if newValueCache(-1) != nil {
		t.Error("a negative budget should disable the cache")
	}
	var off *valueCache
	off.applyWrite([]storage.Op{storage.Put(storage.Data, []byte("a"), []byte("1"))})
	if _, _, hit := off.get([]byte("a")); hit {
		t.Error("a disabled cache hit")
	}
}
