package engine

import (
	"bufio"
	"strconv"
	"strings"
)

// CFStats are one column family's RocksDB properties.
type CFStats struct {
	CF                     CF
	EstimatedKeys          uint64
	LiveDataBytes          uint64
	SSTBytes               uint64
	MemtableBytes          uint64
	L0Files                uint64
	PendingCompactionBytes uint64
}

// Stats are the engine's counters and RocksDB properties.
type Stats struct {
	Dir                string
	CFs                []CFStats
	BlockCacheUsage    uint64
	BlockCacheCapacity uint64
	BlockCacheHits     uint64
	BlockCacheMisses   uint64
	WriteStallMicros   uint64
	WriteStopped       bool
	DelayedWriteRate   uint64
	OpenSnapshots      uint64
	RunningCompactions uint64
	RunningFlushes     uint64
	Writes, SyncWrites uint64
	WALSyncs           uint64
	MaxKeyBytes        int
	MaxValueBytes      int
	SequenceNumber     uint64
}

// HitRate returns the block cache hit rate, 0 without lookups.
func (s Stats) HitRate() float64 {
	if t := s.BlockCacheHits + s.BlockCacheMisses; t > 0 {
		return float64(s.BlockCacheHits) / float64(t)
	}
	return 0
}

// Counters returns the write counters alone, without touching RocksDB:
// writes, sync writes and WAL fsyncs since Open.
func (e *Engine) Counters() (writes, syncWrites, walSyncs uint64) {
	return e.writes.Load(), e.syncer.requests.Load(), e.syncer.syncs.Load()
}

// Failed returns the sticky error of a failed WAL fsync, nil while the
// engine is healthy. Once it is set every write fails until the engine is
// reopened.
func (e *Engine) Failed() error { return e.syncer.failed() }

// Stats reads the engine's properties.
func (e *Engine) Stats() (Stats, error) {
	if err := e.enter(); err != nil {
		return Stats{}, err
	}
	defer e.closeMu.RUnlock()
	s := Stats{
		Dir:                e.dir,
		BlockCacheUsage:    e.cache.GetUsage(),
		BlockCacheCapacity: e.cache.GetCapacity(),
		MaxKeyBytes:        e.opts.MaxKeyBytes,
		MaxValueBytes:      e.opts.MaxValueBytes,
		SequenceNumber:     e.db.GetLatestSequenceNumber(),
	}
	s.Writes, s.SyncWrites, s.WALSyncs = e.Counters()
	prop := func(name string) uint64 {
		v, _ := e.db.GetIntProperty(name)
		return v
	}
	s.WriteStopped = prop("rocksdb.is-write-stopped") != 0
	s.DelayedWriteRate = prop("rocksdb.actual-delayed-write-rate")
	s.OpenSnapshots = prop("rocksdb.num-snapshots")
	s.RunningCompactions = prop("rocksdb.num-running-compactions")
	s.RunningFlushes = prop("rocksdb.num-running-flushes")
	for _, cf := range CFs() {
		h := e.cfs[cf]
		p := func(name string) uint64 {
			v, _ := e.db.GetIntPropertyCF(name, h)
			return v
		}
		s.CFs = append(s.CFs, CFStats{
			CF:                     cf,
			EstimatedKeys:          p("rocksdb.estimate-num-keys"),
			LiveDataBytes:          p("rocksdb.estimate-live-data-size"),
			SSTBytes:               p("rocksdb.total-sst-files-size"),
			MemtableBytes:          p("rocksdb.cur-size-all-mem-tables"),
			L0Files:                p("rocksdb.num-files-at-level0"),
			PendingCompactionBytes: p("rocksdb.estimate-pending-compaction-bytes"),
		})
	}
	tickers := parseTickers(e.dbOpts.GetStatisticsString())
	s.BlockCacheHits = tickers["rocksdb.block.cache.hit"]
	s.BlockCacheMisses = tickers["rocksdb.block.cache.miss"]
	s.WriteStallMicros = tickers["rocksdb.stall.micros"]
	return s, nil
}

// parseTickers reads the "name COUNT : n" lines of RocksDB's statistics
// dump; histogram lines (with P50 etc.) are skipped.
func parseTickers(dump string) map[string]uint64 {
	out := make(map[string]uint64)
	sc := bufio.NewScanner(strings.NewReader(dump))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), " COUNT : ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64); err == nil {
			out[name] = n
		}
	}
	return out
}
