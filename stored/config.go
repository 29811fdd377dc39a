package stored

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/pleiades-db/pleiades/stored/engine"
)

// Config configures the stored server.
type Config struct {
	// Dir is the daemon's own directory, normally <data-dir>/stored (the
	// runtime's DataDir). The database lives in Dir/db, checkpoints with a
	// relative name under Dir/checkpoints. Required.
	Dir string
	// Engine tunes RocksDB and sets the key, value and batch limits.
	// Default engine.DefaultOptions().
	Engine engine.Options
	// SnapshotLease is a snapshot's lease when the opener asks for none;
	// every read at the snapshot renews it. Default 1m.
	SnapshotLease time.Duration
	// MaxSnapshotLease caps the lease an opener may ask for. Default 10m.
	MaxSnapshotLease time.Duration
	// MaxSnapshots caps the snapshots open at once. Default 1024.
	MaxSnapshots int
	// IngestLease is how long an IngestRange session may stay idle when
	// its opener asks for no lease (capped by MaxSnapshotLease). Default 1m.
	IngestLease time.Duration
	// MaxIngests caps the IngestRange sessions open at once. Default 16.
	MaxIngests int
	// MaxIngestBytes caps the keys and values one IngestRange session
	// stages (in a file beside the database, not in memory). Default
	// 64 GiB.
	MaxIngestBytes int
	// MaxStagedWrites caps the staged writes (batches larger than one bus
	// frame, sent in parts; WriteRequest.stage) open at once. Each holds
	// up to Engine.MaxBatchBytes and lasts IngestLease when left idle.
	// Default 16.
	MaxStagedWrites int
	// ReapInterval is how often expired snapshots, ingest sessions and
	// staged writes are dropped. Default 1s.
	ReapInterval time.Duration
	// MaxScanLimit caps a Scan page's entries whatever the caller asks.
	// Default 10000.
	MaxScanLimit int
	// MaxScanBytes caps a Scan page's bytes, and a StreamRange chunk's.
	// Default 4 MiB (under the bus frame limit of 16 MiB).
	MaxScanBytes int
	// MinFreeBytes is the free-space floor of the filesystem holding Dir:
	// below it (less the ballast file while it is missing) writes are
	// refused with ResourceExhausted (reason disk_full), before RocksDB
	// runs out of room for its flushes and compactions; reserve writes
	// (WriteRequest.reserve) go on down to half of it. AutoSize: 2% of
	// the filesystem, at least 64 MiB, at most 2 GiB and at most a
	// quarter of it. 0 turns the floor off (only RocksDB's own
	// out-of-space errors refuse writes). Default AutoSize.
	MinFreeBytes int64
	// BallastBytes is the size of the ballast file, Dir/ballast: space
	// stored holds and gives back when the floor is reached (or an
	// operator deletes the file), so RocksDB and the raft layer's small
	// writes have room to recover; it is re-created once the space is
	// back. AutoSize: 1% of the filesystem, at most 1 GiB. 0: no
	// ballast. Default AutoSize.
	BallastBytes int64
	// LocalSocket is the Unix domain socket stored also serves its bus
	// calls on, for the daemons of its host (raftd's --stored-socket): a
	// relative path is under Dir. Calls over it skip QUIC's goroutine
	// handoffs (see "Local sockets" in package bus). Default "": none
	// (the stored command's --local-socket defaults to DefaultLocalSocket).
	LocalSocket string
	// DiskCheckInterval is how often the free space is read (statfs);
	// writes admitted in between count against it, so a burst is refused
	// before the next read. Default 100ms.
	DiskCheckInterval time.Duration
}

// DefaultConfig returns the production configuration (Dir still to set).
func DefaultConfig() Config {
	return Config{
		Engine:           engine.DefaultOptions(),
		SnapshotLease:    time.Minute,
		MaxSnapshotLease: 10 * time.Minute,
		MaxSnapshots:     1024,
		IngestLease:      time.Minute,
		MaxIngests:       16,
		MaxIngestBytes:   64 << 30,
		MaxStagedWrites:  16,
		ReapInterval:     time.Second,
		MaxScanLimit:     10000,
		MaxScanBytes:     4 << 20,

		MinFreeBytes:      AutoSize,
		BallastBytes:      AutoSize,
		DiskCheckInterval: 100 * time.Millisecond,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("stored: Dir is empty")
	case c.SnapshotLease <= 0 || c.MaxSnapshotLease < c.SnapshotLease:
		return fmt.Errorf("stored: SnapshotLease %v must be positive and at most MaxSnapshotLease %v", c.SnapshotLease, c.MaxSnapshotLease)
	case c.IngestLease <= 0 || c.IngestLease > c.MaxSnapshotLease:
		return fmt.Errorf("stored: IngestLease %v must be positive and at most MaxSnapshotLease %v", c.IngestLease, c.MaxSnapshotLease)
	case c.MaxSnapshots < 1:
		return fmt.Errorf("stored: MaxSnapshots %d is under 1", c.MaxSnapshots)
	case c.MaxIngests < 1:
		return fmt.Errorf("stored: MaxIngests %d is under 1", c.MaxIngests)
	case c.MaxStagedWrites < 1:
		return fmt.Errorf("stored: MaxStagedWrites %d is under 1", c.MaxStagedWrites)
	case c.MaxIngestBytes < 1<<20:
		return fmt.Errorf("stored: MaxIngestBytes %d is under 1 MiB", c.MaxIngestBytes)
	case c.ReapInterval <= 0:
		return fmt.Errorf("stored: ReapInterval %v is not positive", c.ReapInterval)
	case c.MaxScanLimit < 1:
		return fmt.Errorf("stored: MaxScanLimit %d is under 1", c.MaxScanLimit)
	case c.MaxScanBytes < 1<<10:
		return fmt.Errorf("stored: MaxScanBytes %d is under 1 KiB", c.MaxScanBytes)
	case c.MinFreeBytes < AutoSize:
		return fmt.Errorf("stored: MinFreeBytes %d must be a size or AutoSize (-1)", c.MinFreeBytes)
	case c.BallastBytes < AutoSize:
		return fmt.Errorf("stored: BallastBytes %d must be a size or AutoSize (-1)", c.BallastBytes)
	case c.DiskCheckInterval <= 0:
		return fmt.Errorf("stored: DiskCheckInterval %v is not positive", c.DiskCheckInterval)
	}
	if err := c.Engine.Validate(); err != nil {
		return fmt.Errorf("stored: %w", err)
	}
	return nil
}

// DefaultLocalSocket is the stored command's local socket, under Dir.
const DefaultLocalSocket = "stored.sock"

// SocketPath returns the local socket's path, "" for none.
func (c Config) SocketPath() string {
	if c.LocalSocket == "" || filepath.IsAbs(c.LocalSocket) {
		return c.LocalSocket
	}
	return filepath.Join(c.Dir, c.LocalSocket)
}

// DBDir returns the database directory, Dir/db.
func (c Config) DBDir() string { return filepath.Join(c.Dir, "db") }

// CheckpointDir returns where checkpoints with a relative name go.
func (c Config) CheckpointDir() string { return filepath.Join(c.Dir, "checkpoints") }
