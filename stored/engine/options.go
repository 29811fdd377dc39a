package engine

import (
	"errors"
	"fmt"
)

// Options tune the RocksDB instance and set the engine's input limits.
// DefaultOptions suits a small machine (2 cores, a few GiB of memory); the
// zero value of a field is not its default, so start from DefaultOptions.
type Options struct {
	// BlockCacheBytes is the LRU block cache shared by every column
	// family (data, index and filter blocks). Default 128 MiB.
	BlockCacheBytes uint64
	// BloomBitsPerKey sets full bloom filters for point reads; 0 disables
	// them. Default 10 (about 1% false positives).
	BloomBitsPerKey float64
	// BlockSizeBytes is the uncompressed data block size. Default 16 KiB.
	BlockSizeBytes int
	// WriteBufferBytes is one memtable's size, per column family.
	// Default 32 MiB.
	WriteBufferBytes uint64
	// MaxWriteBuffers is the memtables per column family (one active, the
	// rest flushing). Default 3.
	MaxWriteBuffers int
	// MaxTotalWALBytes forces a flush of the oldest memtables once the
	// WAL files hold this much. Default 256 MiB.
	MaxTotalWALBytes uint64
	// MaxBackgroundJobs bounds concurrent flushes and compactions.
	// Default 2 (one per core).
	MaxBackgroundJobs int
	// MaxOpenFiles caps open SST files; -1 keeps all open. Default 1024.
	MaxOpenFiles int
	// BytesPerSync and WALBytesPerSync make RocksDB sync files
	// incrementally, smoothing I/O. Default 1 MiB and 512 KiB.
	BytesPerSync, WALBytesPerSync uint64
	// Compression names the compression of each level, L0 first:
	// "none", "snappy", "lz4", "zstd". Levels past the list use its last
	// entry. Default none for L0-L1 (they are rewritten soon), lz4 for
	// L2-L4, zstd below.
	Compression []string
	// MaxKeyBytes is the largest key accepted. Default 64 KiB.
	MaxKeyBytes int
	// MaxValueBytes is the largest value accepted. Default 16 MiB.
	MaxValueBytes int
	// MaxBatchBytes is the largest write batch accepted (keys and values
	// of every operation). Default 64 MiB.
	MaxBatchBytes int
	// InfoLogLevel is the level of RocksDB's own LOG file in the
	// database directory: "debug", "info", "warn", "error" or "fatal".
	// Default "fatal" (RocksDB writes next to nothing there).
	//
	// HAZARD: Debian's librocksdb is built with assertions on (and then
	// defaults to "debug": a line per WAL sync). A write to the LOG that
	// fails for want of space marks its file writer failed, and the next
	// line logged then aborts the process on an assertion; at "fatal",
	// RocksDB logs nothing on its way through a full disk.
	InfoLogLevel string
	// Knobs holds test hooks; nil in production.
	Knobs *Knobs
}

// Knobs are test hooks of the engine.
type Knobs struct {
	// BeforeWALSync, if set, runs before each group's write and WAL fsync,
	// on the goroutine of the sync writer leading it.
	BeforeWALSync func()
}

// DefaultOptions returns the options for a small machine.
func DefaultOptions() Options {
	return Options{
		BlockCacheBytes:   128 << 20,
		BloomBitsPerKey:   10,
		BlockSizeBytes:    16 << 10,
		WriteBufferBytes:  32 << 20,
		MaxWriteBuffers:   3,
		MaxTotalWALBytes:  256 << 20,
		MaxBackgroundJobs: 2,
		MaxOpenFiles:      1024,
		BytesPerSync:      1 << 20,
		WALBytesPerSync:   512 << 10,
		Compression:       []string{"none", "none", "lz4", "lz4", "lz4", "zstd", "zstd"},
		MaxKeyBytes:       64 << 10,
		MaxValueBytes:     16 << 20,
		MaxBatchBytes:     64 << 20,
		InfoLogLevel:      "fatal",
	}
}

// Validate reports the first invalid option.
func (o Options) Validate() error {
	switch {
	case o.BlockCacheBytes < 1<<20:
		return fmt.Errorf("engine: BlockCacheBytes %d is under 1 MiB", o.BlockCacheBytes)
	case o.BloomBitsPerKey < 0 || o.BloomBitsPerKey > 64:
		return fmt.Errorf("engine: BloomBitsPerKey %v is outside [0, 64]", o.BloomBitsPerKey)
	case o.BlockSizeBytes < 1<<10 || o.BlockSizeBytes > 4<<20:
		return fmt.Errorf("engine: BlockSizeBytes %d is outside [1 KiB, 4 MiB]", o.BlockSizeBytes)
	case o.WriteBufferBytes < 1<<20:
		return fmt.Errorf("engine: WriteBufferBytes %d is under 1 MiB", o.WriteBufferBytes)
	case o.MaxWriteBuffers < 2:
		return fmt.Errorf("engine: MaxWriteBuffers %d is under 2", o.MaxWriteBuffers)
	case o.MaxBackgroundJobs < 1:
		return fmt.Errorf("engine: MaxBackgroundJobs %d is under 1", o.MaxBackgroundJobs)
	case o.MaxOpenFiles == 0 || o.MaxOpenFiles < -1:
		return fmt.Errorf("engine: MaxOpenFiles %d must be -1 or positive", o.MaxOpenFiles)
	case len(o.Compression) == 0:
		return errors.New("engine: Compression is empty")
	case o.MaxKeyBytes < 1:
		return fmt.Errorf("engine: MaxKeyBytes %d is under 1", o.MaxKeyBytes)
	case o.MaxValueBytes < 0:
		return fmt.Errorf("engine: MaxValueBytes %d is negative", o.MaxValueBytes)
	case o.MaxBatchBytes < o.MaxKeyBytes:
		return fmt.Errorf("engine: MaxBatchBytes %d is under MaxKeyBytes", o.MaxBatchBytes)
	}
	if _, ok := infoLogLevels[o.InfoLogLevel]; !ok {
		return fmt.Errorf("engine: InfoLogLevel %q is not one of debug, info, warn, error, fatal", o.InfoLogLevel)
	}
	for i, c := range o.Compression {
		if _, ok := compressionTypes[c]; !ok {
			return fmt.Errorf("engine: Compression[%d] %q is not one of none, snappy, lz4, zstd", i, c)
		}
	}
	return nil
}
