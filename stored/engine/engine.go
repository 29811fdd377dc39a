package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/linxGnu/grocksdb"
)

// CF names a column family. Its values equal storepb.ColumnFamily's.
type CF int32

// The engine's column families.
const (
	// Local holds node-only state (identity, clock bound, bootstrap info).
	Local CF = 1
	// Raft holds every range's raft hard state, log and applied index.
	Raft CF = 2
	// Data holds every range's data.
	Data CF = 3
	// Versions holds the versions of every range's data (raftd's MVCC
	// history).
	Versions CF = 4
)

// cfNames are the RocksDB names, indexed by CF; RocksDB also requires the
// "default" family, which the engine opens and never uses.
var cfNames = [...]string{0: "default", Local: "local", Raft: "raft", Data: "data", Versions: "versions"}

// String returns the family's RocksDB name.
func (cf CF) String() string {
	if cf.valid() {
		return cfNames[cf]
	}
	return fmt.Sprintf("cf(%d)", int32(cf))
}

func (cf CF) valid() bool { return cf >= Local && cf <= Versions }

// CFs lists the engine's column families.
func CFs() []CF { return []CF{Local, Raft, Data, Versions} }

// Errors of the engine. Every refusal wraps one of them, so a caller maps
// it to a wire code with errors.Is.
var (
	// ErrInvalid marks bad input: unknown column family, empty or oversized
	// key, oversized value or batch, start > end. Nothing was written.
	ErrInvalid = errors.New("engine: invalid argument")
	// ErrClosed is returned once Close has begun.
	ErrClosed = errors.New("engine: closed")
	// ErrReleased is returned for a read at a released snapshot.
	ErrReleased = errors.New("engine: snapshot released")
	// ErrNoSpace marks a write, flush or ingest that failed because the
	// filesystem is full (RocksDB's IO error NoSpace, ENOSPC). Nothing of
	// the failed write was done. RocksDB refuses every write after one
	// until it has recovered by itself, which it tries every 5 seconds;
	// reads go on.
	ErrNoSpace = errors.New("engine: no space left on device")
)

// noSpace wraps ErrNoSpace into err when err says the disk is full; the C
// API gives RocksDB's status as text only.
func noSpace(err error) error {
	if err != nil && !errors.Is(err, ErrNoSpace) && (errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "No space left on device")) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

var compressionTypes = map[string]grocksdb.CompressionType{
	"none":   grocksdb.NoCompression,
	"snappy": grocksdb.SnappyCompression,
	"lz4":    grocksdb.LZ4Compression,
	"zstd":   grocksdb.ZSTDCompression,
}

var infoLogLevels = map[string]grocksdb.InfoLogLevel{
	"debug": grocksdb.DebugInfoLogLevel,
	"info":  grocksdb.InfoInfoLogLevel,
	"warn":  grocksdb.WarnInfoLogLevel,
	"error": grocksdb.ErrorInfoLogLevel,
	"fatal": grocksdb.FatalInfoLogLevel,
}

// numLevels is RocksDB's default level count.
const numLevels = 7

// Engine is one RocksDB instance with the column families local, raft and
// data. Every method is safe for concurrent use.
type Engine struct {
	dir  string
	opts Options

	db      *grocksdb.DB
	cfs     [len(cfNames)]*grocksdb.ColumnFamilyHandle
	cfIDs   [len(cfNames)]uint32 // RocksDB's ids of the families
	dbOpts  *grocksdb.Options
	cfOpts  []*grocksdb.Options
	bbto    *grocksdb.BlockBasedTableOptions
	cache   *grocksdb.Cache
	ro      *grocksdb.ReadOptions  // latest state, shared by point reads
	woAsync *grocksdb.WriteOptions // every write: durability comes from syncer

	// closeMu is held shared by every operation that touches db and
	// exclusively by Close, which so waits for operations in flight.
	closeMu sync.RWMutex
	closed  bool

	syncer syncer

	snapMu    sync.Mutex
	openSnaps map[*Snapshot]struct{}

	writes atomic.Uint64
}

// Open opens (creating if missing) the RocksDB instance in dir.
func Open(dir string, opts Options) (*Engine, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("engine: create %s: %w", dir, err)
	}
	if err := clearIngestDir(ingestDirOf(dir)); err != nil {
		return nil, fmt.Errorf("engine: clear interrupted ingests: %w", err)
	}
	e := &Engine{dir: dir, opts: opts, openSnaps: make(map[*Snapshot]struct{})}
	e.cache = grocksdb.NewLRUCache(opts.BlockCacheBytes)
	e.bbto = grocksdb.NewDefaultBlockBasedTableOptions()
	e.bbto.SetBlockCache(e.cache)
	e.bbto.SetBlockSize(opts.BlockSizeBytes)
	e.bbto.SetCacheIndexAndFilterBlocks(true)
	e.bbto.SetPinL0FilterAndIndexBlocksInCache(true)
	if opts.BloomBitsPerKey > 0 {
		e.bbto.SetFilterPolicy(grocksdb.NewBloomFilterFull(opts.BloomBitsPerKey))
	}
	levels := make([]grocksdb.CompressionType, numLevels)
	for i := range levels {
		levels[i] = compressionTypes[opts.Compression[min(i, len(opts.Compression)-1)]]
	}
	newCFOpts := func() *grocksdb.Options {
		o := grocksdb.NewDefaultOptions()
		o.SetBlockBasedTableFactory(e.bbto)
		o.SetWriteBufferSize(opts.WriteBufferBytes)
		o.SetMaxWriteBufferNumber(opts.MaxWriteBuffers)
		o.SetCompressionPerLevel(levels)
		o.SetBottommostCompression(levels[numLevels-1])
		o.SetLevelCompactionDynamicLevelBytes(true)
		return o
	}
	e.dbOpts = newCFOpts()
	e.dbOpts.SetCreateIfMissing(true)
	e.dbOpts.SetCreateIfMissingColumnFamilies(true)
	e.dbOpts.SetMaxBackgroundJobs(opts.MaxBackgroundJobs)
	e.dbOpts.SetMaxOpenFiles(opts.MaxOpenFiles)
	e.dbOpts.SetMaxTotalWalSize(opts.MaxTotalWALBytes)
	e.dbOpts.SetBytesPerSync(opts.BytesPerSync)
	e.dbOpts.SetWALBytesPerSync(opts.WALBytesPerSync)
	e.dbOpts.SetKeepLogFileNum(4)
	e.dbOpts.SetMaxLogFileSize(16 << 20)
	e.dbOpts.EnableStatistics()
	e.dbOpts.SetStatsDumpPeriodSec(0)
	// RocksDB's own LOG file (in dir): see Options.InfoLogLevel.
	e.dbOpts.SetInfoLogLevel(infoLogLevels[opts.InfoLogLevel])
	// A torn last WAL record (a crash mid-write) is dropped; every record
	// before it is replayed, so a batch is recovered whole or not at all.
	e.dbOpts.SetWALRecoveryMode(grocksdb.PointInTimeRecovery)
	e.dbOpts.SetEnableWriteThreadAdaptiveYield(false)
	names := cfNames[:]
	e.cfOpts = make([]*grocksdb.Options, len(names))
	for i := range e.cfOpts {
		e.cfOpts[i] = newCFOpts()
	}
	db, handles, err := grocksdb.OpenDbColumnFamilies(e.dbOpts, dir, names, e.cfOpts)
	if err != nil {
		e.destroyOptions()
		return nil, fmt.Errorf("engine: open %s: %w", dir, err)
	}
	e.db = db
	copy(e.cfs[:], handles)
	for i, h := range handles {
		e.cfIDs[i] = h.ID()
	}
	e.ro = grocksdb.NewDefaultReadOptions()
	e.woAsync = grocksdb.NewDefaultWriteOptions()
	e.woAsync.SetSync(false)
	var beforeSync func()
	if opts.Knobs != nil {
		beforeSync = opts.Knobs.BeforeWALSync
	}
	e.syncer.init(e.db, e.woAsync, beforeSync)
	return e, nil
}

func (e *Engine) destroyOptions() {
	for _, o := range e.cfOpts {
		o.Destroy()
	}
	e.dbOpts.Destroy()
	e.bbto.Destroy()
	e.cache.Destroy()
}

// Dir returns the directory of the RocksDB instance.
func (e *Engine) Dir() string { return e.dir }

// Options returns the options the engine was opened with.
func (e *Engine) Options() Options { return e.opts }

// Close waits for operations in flight, then flushes nothing extra and
// closes RocksDB (every synced write is in the WAL already). Snapshots
// still open are released. Close is idempotent; later calls of any method
// return ErrClosed.
func (e *Engine) Close() error {
	e.closeMu.Lock()
	defer e.closeMu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.snapMu.Lock()
	for s := range e.openSnaps {
		// No read holds s: reads hold closeMu shared.
		s.released.Store(true)
		s.free()
	}
	clear(e.openSnaps)
	e.snapMu.Unlock()
	err := e.db.FlushWAL(true)
	for _, h := range e.cfs {
		h.Destroy()
	}
	e.db.Close()
	e.ro.Destroy()
	e.woAsync.Destroy()
	e.destroyOptions()
	if err != nil {
		return fmt.Errorf("engine: sync WAL at close: %w", err)
	}
	return nil
}

// enter takes the shared close lock; the caller must call e.closeMu.RUnlock
// when it returns nil.
func (e *Engine) enter() error {
	e.closeMu.RLock()
	if e.closed {
		e.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (e *Engine) checkKey(what string, key []byte) error {
	switch {
	case len(key) == 0:
		return invalidf("%s: empty key", what)
	case len(key) > e.opts.MaxKeyBytes:
		return invalidf("%s: key of %d bytes exceeds the limit of %d", what, len(key), e.opts.MaxKeyBytes)
	}
	return nil
}

func checkCF(what string, cf CF) error {
	if !cf.valid() {
		return invalidf("%s: unknown column family %d", what, int32(cf))
	}
	return nil
}

// Span is the half-open interval [Start, End) of one column family; an
// empty Start is the family's beginning, an empty End its end.
type Span struct {
	CF         CF
	Start, End []byte
}

func (e *Engine) checkSpan(what string, s Span, needEnd bool) error {
	if err := checkCF(what, s.CF); err != nil {
		return err
	}
	switch {
	case len(s.Start) > e.opts.MaxKeyBytes || len(s.End) > e.opts.MaxKeyBytes:
		return invalidf("%s: span bound exceeds the key limit of %d bytes", what, e.opts.MaxKeyBytes)
	case needEnd && len(s.End) == 0:
		return invalidf("%s: span end is empty", what)
	case len(s.End) > 0 && bytes.Compare(s.Start, s.End) > 0:
		return invalidf("%s: span start %q > end %q", what, s.Start, s.End)
	}
	return nil
}

// Contains reports whether key lies in s.
func (s Span) Contains(key []byte) bool {
	return bytes.Compare(key, s.Start) >= 0 && (len(s.End) == 0 || bytes.Compare(key, s.End) < 0)
}

func (e *Engine) readOpts(snap *Snapshot) (*grocksdb.ReadOptions, error) {
	if snap == nil {
		return e.ro, nil
	}
	if snap.e != e {
		return nil, invalidf("snapshot of another engine")
	}
	if snap.released.Load() {
		return nil, ErrReleased
	}
	return snap.ro, nil
}

// Get reads key of cf, at snap or (nil) the latest state. The value is the
// caller's.
func (e *Engine) Get(cf CF, key []byte, snap *Snapshot) (value []byte, found bool, err error) {
	if err := checkCF("get", cf); err != nil {
		return nil, false, err
	}
	if err := e.checkKey("get", key); err != nil {
		return nil, false, err
	}
	if err := e.enter(); err != nil {
		return nil, false, err
	}
	defer e.closeMu.RUnlock()
	if snap != nil {
		snap.mu.RLock()
		defer snap.mu.RUnlock()
	}
	ro, err := e.readOpts(snap)
	if err != nil {
		return nil, false, err
	}
	h, err := e.db.GetPinnedCF(ro, e.cfs[cf], key)
	if err != nil {
		return nil, false, fmt.Errorf("engine: get: %w", err)
	}
	defer h.Destroy()
	if !h.Exists() {
		return nil, false, nil
	}
	return bytes.Clone(h.Data()), true, nil
}

// MultiGet reads keys of cf; values[i] and found[i] answer keys[i].
func (e *Engine) MultiGet(cf CF, keys [][]byte, snap *Snapshot) (values [][]byte, found []bool, err error) {
	if err := checkCF("multiget", cf); err != nil {
		return nil, nil, err
	}
	for _, k := range keys {
		if err := e.checkKey("multiget", k); err != nil {
			return nil, nil, err
		}
	}
	if len(keys) == 0 {
		return nil, nil, nil
	}
	if err := e.enter(); err != nil {
		return nil, nil, err
	}
	defer e.closeMu.RUnlock()
	if snap != nil {
		snap.mu.RLock()
		defer snap.mu.RUnlock()
	}
	ro, err := e.readOpts(snap)
	if err != nil {
		return nil, nil, err
	}
	slices, err := e.db.MultiGetCF(ro, e.cfs[cf], keys...)
	if err != nil {
		return nil, nil, fmt.Errorf("engine: multiget: %w", err)
	}
	defer slices.Destroy()
	values, found = make([][]byte, len(keys)), make([]bool, len(keys))
	for i, s := range slices {
		if s.Exists() {
			values[i], found[i] = bytes.Clone(s.Data()), true
		}
	}
	return values, found, nil
}

// Snapshot is a consistent view of the engine. Reads at it see every write
// before it and none after. Release it when done: an open snapshot pins
// old versions in RocksDB.
type Snapshot struct {
	e  *Engine
	s  *grocksdb.Snapshot
	ro *grocksdb.ReadOptions
	// mu is held shared by reads at the snapshot and exclusively by
	// Release, so a release waits for the reads in flight.
	mu       sync.RWMutex
	released atomic.Bool
	seq      uint64
}

// NewSnapshot opens a snapshot of the latest state.
func (e *Engine) NewSnapshot() (*Snapshot, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.closeMu.RUnlock()
	s := e.db.NewSnapshot()
	ro := grocksdb.NewDefaultReadOptions()
	ro.SetSnapshot(s)
	snap := &Snapshot{e: e, s: s, ro: ro, seq: e.db.GetLatestSequenceNumber()}
	e.snapMu.Lock()
	e.openSnaps[snap] = struct{}{}
	e.snapMu.Unlock()
	return snap, nil
}

// Sequence returns RocksDB's latest sequence number read just after the
// snapshot was taken: the view holds every write up to it, except writes
// racing with NewSnapshot, which may be counted yet not visible.
func (s *Snapshot) Sequence() uint64 { return s.seq }

// Release frees the snapshot after the reads in flight at it; it is
// idempotent, and a no-op once the engine is closed (Close releases every
// open snapshot).
func (s *Snapshot) Release() {
	// Lock order: the engine's close lock, then the snapshot's.
	closedErr := s.e.enter()
	if closedErr == nil {
		defer s.e.closeMu.RUnlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released.Swap(true) || closedErr != nil {
		return
	}
	s.e.forget(s)
	s.free()
}

func (s *Snapshot) free() {
	s.ro.Destroy()
	s.e.db.ReleaseSnapshot(s.s)
}

func (e *Engine) forget(s *Snapshot) {
	e.snapMu.Lock()
	defer e.snapMu.Unlock()
	delete(e.openSnaps, s)
}

// Sequence returns the latest RocksDB sequence number.
func (e *Engine) Sequence() (uint64, error) {
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.closeMu.RUnlock()
	return e.db.GetLatestSequenceNumber(), nil
}

// ApproximateSize returns the approximate bytes of span in SST files.
// Entries still in memtables are not counted (RocksDB's C API estimates
// files only); Compact, or a flush, brings them in.
func (e *Engine) ApproximateSize(span Span) (uint64, error) {
	if err := e.checkSpan("approximate size", span, false); err != nil {
		return 0, err
	}
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.closeMu.RUnlock()
	end := span.End
	if len(end) == 0 {
		end = maxKey(e.opts.MaxKeyBytes)
	}
	sizes, err := e.db.GetApproximateSizesCF(e.cfs[span.CF], []grocksdb.Range{{Start: span.Start, Limit: end}})
	if err != nil {
		return 0, fmt.Errorf("engine: approximate size: %w", err)
	}
	return sizes[0], nil
}

// maxKey returns a key above every valid key: MaxKeyBytes+1 bytes of 0xff.
func maxKey(maxKeyBytes int) []byte { return bytes.Repeat([]byte{0xff}, maxKeyBytes+1) }

// Compact compacts span to the bottom level and waits for it.
func (e *Engine) Compact(span Span) error {
	if err := e.checkSpan("compact", span, false); err != nil {
		return err
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.closeMu.RUnlock()
	r := grocksdb.Range{Start: span.Start, Limit: span.End}
	if len(span.Start) == 0 {
		r.Start = nil
	}
	if len(span.End) == 0 {
		r.Limit = nil
	}
	e.db.CompactRangeCF(e.cfs[span.CF], r)
	return nil
}

// Checkpoint writes a consistent copy of the whole engine to dir (hard
// links for SST files), which must not exist; it can be opened with Open.
func (e *Engine) Checkpoint(dir string) error {
	if dir == "" {
		return invalidf("checkpoint: empty directory")
	}
	if _, err := os.Stat(dir); err == nil {
		return invalidf("checkpoint: %s already exists", dir)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
		return fmt.Errorf("engine: checkpoint: %w", err)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.closeMu.RUnlock()
	cp, err := e.db.NewCheckpoint()
	if err != nil {
		return fmt.Errorf("engine: checkpoint: %w", err)
	}
	defer cp.Destroy()
	// 0: always flush memtables first, so the copy needs no WAL replay.
	if err := cp.CreateCheckpoint(dir, 0); err != nil {
		return fmt.Errorf("engine: checkpoint %s: %w", dir, err)
	}
	return nil
}
