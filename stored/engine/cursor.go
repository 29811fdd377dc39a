package engine

/*
#cgo LDFLAGS: -lrocksdb
#include <stddef.h>
#include "rocksdb/c.h"

// pl_entry is the iterator's current entry, or valid 0 past the end.
typedef struct {
	const char* key;
	size_t key_len;
	const char* value;
	size_t value_len;
	unsigned char valid;
} pl_entry;

static pl_entry pl_current(rocksdb_iterator_t* it, int keys_only) {
	pl_entry e = {0};
	if (!rocksdb_iter_valid(it)) {
		return e;
	}
	e.valid = 1;
	e.key = rocksdb_iter_key(it, &e.key_len);
	if (!keys_only) {
		e.value = rocksdb_iter_value(it, &e.value_len);
	}
	return e;
}

// pl_step moves the iterator (backwards if reverse) and returns the entry
// it lands on: one call instead of four per entry.
static pl_entry pl_step(rocksdb_iterator_t* it, int reverse, int keys_only) {
	if (reverse) {
		rocksdb_iter_prev(it);
	} else {
		rocksdb_iter_next(it);
	}
	return pl_current(it, keys_only);
}
*/
import "C"

import (
	"unsafe"

	"github.com/linxGnu/grocksdb"
)

// cursor reads a grocksdb iterator's entries with one cgo call per entry
// and no allocation: grocksdb's Key and Value cost a call and two
// allocations each. The entry's key and value alias RocksDB's memory and
// are valid until the next step.
//
// HAZARD: it reads the iterator's C pointer, grocksdb.Iterator's only
// field, through unsafe; grocksdb is pinned (go.mod) and every scan test
// goes through the cursor, so a change of layout fails them.
type cursor struct {
	it       *C.rocksdb_iterator_t
	reverse  C.int
	keysOnly C.int
	e        C.pl_entry
}

func newCursor(it *grocksdb.Iterator, reverse, keysOnly bool) *cursor {
	c := &cursor{it: *(**C.rocksdb_iterator_t)(unsafe.Pointer(it))}
	if reverse {
		c.reverse = 1
	}
	if keysOnly {
		c.keysOnly = 1
	}
	return c
}

// load reads the entry the iterator is positioned at (after a seek).
func (c *cursor) load() bool {
	c.e = C.pl_current(c.it, c.keysOnly)
	return c.e.valid != 0
}

// step moves to the next entry in the cursor's direction.
func (c *cursor) step() bool {
	c.e = C.pl_step(c.it, c.reverse, c.keysOnly)
	return c.e.valid != 0
}

func (c *cursor) key() []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(c.e.key)), int(c.e.key_len))
}

// value is nil for keys-only cursors.
func (c *cursor) value() []byte {
	if c.e.value == nil {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(c.e.value)), int(c.e.value_len))
}
