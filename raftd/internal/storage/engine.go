package storage

import (
	"context"
	"errors"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
)

// CF names a column family: stored's own (storeclient.CF, the
// storepb.ColumnFamily enum), so that the two cannot drift apart.
type CF = storeclient.CF

// Column families.
const (
	Local = storeclient.Local
	Raft  = storeclient.Raft
	Data  = storeclient.Data
	// Versions holds the versions of range data (see VersionKey).
	Versions = storeclient.Versions
)

// OpKind is the kind of a write operation.
type OpKind uint8

// Operation kinds.
const (
	OpPut OpKind = iota + 1
	OpDelete
	// OpDeleteRange deletes [Key, End); End must be set.
	OpDeleteRange
)

// Op is one mutation of an atomic write.
type Op struct {
	Kind  OpKind
	CF    CF
	Key   []byte
	Value []byte
	End   []byte
}

// Put returns a put operation.
func Put(cf CF, key, value []byte) Op { return Op{Kind: OpPut, CF: cf, Key: key, Value: value} }

// Delete returns a point delete.
func Delete(cf CF, key []byte) Op { return Op{Kind: OpDelete, CF: cf, Key: key} }

// DeleteRange returns a delete of [start, end); a nil end deletes to the
// end of the family.
func DeleteRange(cf CF, start, end []byte) Op {
	return Op{Kind: OpDeleteRange, CF: cf, Key: start, End: end}
}

// ScanOptions shape a Scan; the zero value reads everything in key order.
type ScanOptions struct {
	// Limit caps the entries (0: no limit).
	Limit int
	// MaxBytes ends the scan after the entry that brings the keys and
	// values read to it (0: no limit).
	MaxBytes int
	// Reverse reads in descending key order.
	Reverse bool
	// KeysOnly leaves the values out (they still count for MaxBytes on
	// engines that read them).
	KeysOnly bool
}

// KV is one key and its value.
type KV struct {
	Key, Value []byte
}

// IsDiskFull reports whether err is an engine's refusal of a write for
// want of disk space (stored's ResourceExhausted with reason disk_full):
// nothing was written, and the write may succeed once space returns.
func IsDiskFull(err error) bool {
	return bus.CodeOf(err) == bus.CodeResourceExhausted && bus.ReasonOf(err) == storepb.ReasonDiskFull
}

// ErrClosed is returned by an engine after Close.
var ErrClosed = errors.New("storage: engine closed")

// Engine is the storage raftd runs on. Implementations are safe for
// concurrent use; a Write is atomic and, once it returns, visible to every
// later read. With sync, the write and every earlier write are durable when
// Write returns.
type Engine interface {
	// Write applies ops atomically. On a full disk it fails with an
	// error IsDiskFull reports, having written nothing.
	Write(ctx context.Context, ops []Op, sync bool) error
	// WriteReserve applies ops like Write, but may use the space the
	// engine keeps below its free-space floor: for the small writes that
	// safety and recovery need while ordinary writes are refused (hard
	// state and votes, log truncation, start-up records). It fails like
	// Write once even that reserve is used up.
	WriteReserve(ctx context.Context, ops []Op, sync bool) error
	// Get reads one key.
	Get(ctx context.Context, cf CF, key []byte) (value []byte, found bool, err error)
	// MultiGet reads keys at one point in time: values[i] and found[i]
	// are keys[i]'s.
	MultiGet(ctx context.Context, cf CF, keys [][]byte) (values [][]byte, found []bool, err error)
	// Scan reads [start, end) as opts asks. A nil end means unbounded.
	Scan(ctx context.Context, cf CF, start, end []byte, opts ScanOptions) ([]KV, error)
	// ApproximateSize estimates the bytes [start, end) of cf (nil end:
	// unbounded) takes on disk: cheap, without reading the span.
	ApproximateSize(ctx context.Context, cf CF, start, end []byte) (uint64, error)
	// OpenSnapshot opens a consistent view of the whole engine, held until
	// Release.
	OpenSnapshot(ctx context.Context) (Snapshot, error)
	// IngestRange begins a session that replaces [start, end) of cf (nil
	// end: the end of the family) with the entries added to it: nothing is
	// written before Finish, which deletes the span and writes every entry
	// in one synced atomic write.
	IngestRange(ctx context.Context, cf CF, start, end []byte) (Ingest, error)
}

// Snapshot is a consistent read-only view of an engine. It is safe for
// concurrent use.
type Snapshot interface {
	// Get reads one key at the snapshot.
	Get(ctx context.Context, cf CF, key []byte) (value []byte, found bool, err error)
	// StreamRange calls fn with the entries of [start, end) (nil end:
	// unbounded) in ascending key order, in chunks of about chunkBytes
	// (0: the engine's default). An error from fn ends the stream and is
	// returned. The chunk belongs to fn.
	StreamRange(ctx context.Context, cf CF, start, end []byte, chunkBytes int, fn func(chunk []KV) error) error
	// Release frees the snapshot.
	Release(ctx context.Context) error
}

// Ingest is an IngestRange session. It is not safe for concurrent use.
type Ingest interface {
	// Add queues entries, in strictly ascending key order across the
	// session, within the span. The caller may reuse their memory.
	Add(ctx context.Context, kvs ...KV) error
	// Finish replaces the span with the entries added, in one synced
	// atomic write.
	Finish(ctx context.Context) error
	// Abort drops the session; nothing is written.
	Abort(ctx context.Context) error
}
