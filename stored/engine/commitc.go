package engine

/*
#include <stddef.h>
#include "rocksdb/c.h"

// pl_write_sync writes the WriteBatch encoding rep, then syncs the WAL:
// one cgo call instead of four (create, write, destroy, flush). *wrote
// says whether the write went in, so that an error after it is known to
// be the sync's.
static void pl_write_sync(rocksdb_t* db, rocksdb_writeoptions_t* wo, const char* rep, size_t len, int* wrote, char** err) {
	rocksdb_writebatch_t* wb = rocksdb_writebatch_create_from(rep, len);
	rocksdb_write(db, wo, wb, err);
	rocksdb_writebatch_destroy(wb);
	if (*err != NULL) {
		*wrote = 0;
		return;
	}
	*wrote = 1;
	rocksdb_flush_wal(db, 1, err);
}
*/
import "C"

import (
	"errors"
	"unsafe"

	"github.com/linxGnu/grocksdb"
)

// groupWriter writes a merged group batch and syncs the WAL in one cgo
// call: a long cgo call lets the scheduler hand the goroutine's P to
// another thread, and four of them per group (two long) cost more thread
// wake-ups than one.
//
// HAZARD: like cursor, it reads grocksdb's C pointers (the first field of
// DB and the only field of WriteOptions) through unsafe; grocksdb is
// pinned (go.mod) and every sync write of the tests goes through here.
type groupWriter struct {
	db *C.rocksdb_t
	wo *C.rocksdb_writeoptions_t
}

func newGroupWriter(db *grocksdb.DB, wo *grocksdb.WriteOptions) groupWriter {
	return groupWriter{
		db: *(**C.rocksdb_t)(unsafe.Pointer(db)),
		wo: *(**C.rocksdb_writeoptions_t)(unsafe.Pointer(wo)),
	}
}

// writeSync writes rep (a WriteBatch encoding) and syncs the WAL. wrote
// reports whether the write went in (err is then the sync's).
func (g groupWriter) writeSync(rep []byte) (wrote bool, err error) {
	var cErr *C.char
	var w C.int
	C.pl_write_sync(g.db, g.wo, (*C.char)(unsafe.Pointer(&rep[0])), C.size_t(len(rep)), &w, &cErr)
	if cErr != nil {
		err = errors.New(C.GoString(cErr))
		C.rocksdb_free(unsafe.Pointer(cErr))
	}
	return w != 0, err
}
