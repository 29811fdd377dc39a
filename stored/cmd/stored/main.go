// Command stored runs the Pleiades stored daemon. See package stored;
// flags: stored --help.
package main

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/stored"
)

func main() { daemon.Main(spec()) }

// spec describes stored to daemon.Main.
func spec() daemon.Spec {
	def := stored.DefaultConfig()
	e := def.Engine
	return daemon.Spec{
		Name:             stored.Name,
		Usage:            "the node's storage daemon (RocksDB)",
		DefaultBusAddr:   stored.DefaultBusAddr,
		DefaultAdminAddr: stored.DefaultAdminAddr,
		Flags: []cli.Flag{
			&cli.Uint64Flag{Name: "block-cache-bytes", Value: e.BlockCacheBytes, Usage: "RocksDB block cache shared by the column families"},
			&cli.Float64Flag{Name: "bloom-bits-per-key", Value: e.BloomBitsPerKey, Usage: "bloom filter bits per key for point reads (0 = no filters)"},
			&cli.IntFlag{Name: "block-size-bytes", Value: e.BlockSizeBytes, Usage: "uncompressed SST data block size"},
			&cli.Uint64Flag{Name: "write-buffer-bytes", Value: e.WriteBufferBytes, Usage: "memtable size per column family"},
			&cli.IntFlag{Name: "max-write-buffers", Value: e.MaxWriteBuffers, Usage: "memtables per column family"},
			&cli.Uint64Flag{Name: "max-total-wal-bytes", Value: e.MaxTotalWALBytes, Usage: "WAL size that forces memtable flushes"},
			&cli.IntFlag{Name: "max-background-jobs", Value: e.MaxBackgroundJobs, Usage: "concurrent RocksDB flushes and compactions"},
			&cli.IntFlag{Name: "max-open-files", Value: e.MaxOpenFiles, Usage: "open SST files (-1 = all)"},
			&cli.StringFlag{Name: "compression", Value: strings.Join(e.Compression, ","), Usage: "compression per level, L0 first (none, snappy, lz4, zstd); the last applies below"},
			&cli.IntFlag{Name: "max-key-bytes", Value: e.MaxKeyBytes, Usage: "largest key accepted"},
			&cli.IntFlag{Name: "max-value-bytes", Value: e.MaxValueBytes, Usage: "largest value accepted"},
			&cli.IntFlag{Name: "max-batch-bytes", Value: e.MaxBatchBytes, Usage: "largest write batch accepted"},
			&cli.StringFlag{Name: "rocksdb-log-level", Value: e.InfoLogLevel, Usage: "level of RocksDB's LOG file in the database directory: debug, info, warn, error, fatal (above fatal, a full disk can make RocksDB's logger abort the process)"},
			&cli.DurationFlag{Name: "snapshot-lease", Value: def.SnapshotLease, Usage: "default snapshot lease, renewed by each read"},
			&cli.DurationFlag{Name: "max-snapshot-lease", Value: def.MaxSnapshotLease, Usage: "longest snapshot or ingest lease a caller may ask for"},
			&cli.IntFlag{Name: "max-snapshots", Value: def.MaxSnapshots, Usage: "snapshots open at once"},
			&cli.IntFlag{Name: "max-ingests", Value: def.MaxIngests, Usage: "IngestRange sessions open at once"},
			&cli.IntFlag{Name: "max-ingest-bytes", Value: def.MaxIngestBytes, Usage: "bytes one IngestRange session may stage in memory"},
			&cli.Int64Flag{Name: "min-free-bytes", Value: def.MinFreeBytes, Usage: "free-space floor: writes are refused below it (-1 = 2% of the disk, 64 MiB to 2 GiB; 0 = off)"},
			&cli.Int64Flag{Name: "ballast-bytes", Value: def.BallastBytes, Usage: "ballast file released when the floor is reached, or deleted by hand, to give a full disk room (-1 = 1% of the disk, at most 1 GiB; 0 = none)"},
			&cli.StringFlag{Name: "local-socket", Value: stored.DefaultLocalSocket, Usage: "Unix socket `PATH` for the calls of this host's daemons (raftd --stored-socket), relative to <data-dir>/stored; empty: none"},
			&cli.DurationFlag{Name: "disk-check-interval", Value: def.DiskCheckInterval, Usage: "how often the free space is read"},
		},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			if err := checkLocal(rt.Common()); err != nil {
				return nil, err
			}
			cfg, err := configFrom(c, rt.DataDir)
			if err != nil {
				return nil, err
			}
			return stored.New(cfg, stored.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
		},
	}
}

// checkLocal keeps stored reachable from its own host only: its bus must
// listen on a loopback address and is never advertised.
func checkLocal(cm config.Common) error {
	host, _, _ := net.SplitHostPort(cm.BusAddr)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return &config.FlagError{Flag: config.FlagBusAddr, Value: cm.BusAddr,
			Err: errors.New("stored serves its own host only: give a loopback address (127.0.0.1 or ::1)")}
	}
	if cm.AdvertiseAddr != "" {
		return &config.FlagError{Flag: config.FlagAdvertiseAddr, Value: cm.AdvertiseAddr,
			Err: errors.New("stored serves its own host only and is never advertised")}
	}
	return nil
}

// configFrom reads the flags into a Config; a bad value is a
// *config.FlagError naming its flag.
func configFrom(c *cli.Context, dir string) (stored.Config, error) {
	cfg := stored.DefaultConfig()
	cfg.Dir = dir
	e := &cfg.Engine
	e.BlockCacheBytes = c.Uint64("block-cache-bytes")
	e.BloomBitsPerKey = c.Float64("bloom-bits-per-key")
	e.BlockSizeBytes = c.Int("block-size-bytes")
	e.WriteBufferBytes = c.Uint64("write-buffer-bytes")
	e.MaxWriteBuffers = c.Int("max-write-buffers")
	e.MaxTotalWALBytes = c.Uint64("max-total-wal-bytes")
	e.MaxBackgroundJobs = c.Int("max-background-jobs")
	e.MaxOpenFiles = c.Int("max-open-files")
	e.Compression = strings.Split(c.String("compression"), ",")
	e.MaxKeyBytes = c.Int("max-key-bytes")
	e.MaxValueBytes = c.Int("max-value-bytes")
	e.MaxBatchBytes = c.Int("max-batch-bytes")
	e.InfoLogLevel = c.String("rocksdb-log-level")
	cfg.SnapshotLease = c.Duration("snapshot-lease")
	cfg.MaxSnapshotLease = c.Duration("max-snapshot-lease")
	cfg.MaxSnapshots = c.Int("max-snapshots")
	cfg.MaxIngests = c.Int("max-ingests")
	cfg.MaxIngestBytes = c.Int("max-ingest-bytes")
	cfg.MinFreeBytes = c.Int64("min-free-bytes")
	cfg.BallastBytes = c.Int64("ballast-bytes")
	cfg.DiskCheckInterval = c.Duration("disk-check-interval")
	cfg.LocalSocket = c.String("local-socket")
	// Check each flag alone against the defaults, so the error names it.
	for _, f := range []struct {
		flag string
		set  func(*stored.Config)
	}{
		{"block-cache-bytes", func(d *stored.Config) { d.Engine.BlockCacheBytes = e.BlockCacheBytes }},
		{"bloom-bits-per-key", func(d *stored.Config) { d.Engine.BloomBitsPerKey = e.BloomBitsPerKey }},
		{"block-size-bytes", func(d *stored.Config) { d.Engine.BlockSizeBytes = e.BlockSizeBytes }},
		{"write-buffer-bytes", func(d *stored.Config) { d.Engine.WriteBufferBytes = e.WriteBufferBytes }},
		{"max-write-buffers", func(d *stored.Config) { d.Engine.MaxWriteBuffers = e.MaxWriteBuffers }},
		{"max-background-jobs", func(d *stored.Config) { d.Engine.MaxBackgroundJobs = e.MaxBackgroundJobs }},
		{"max-open-files", func(d *stored.Config) { d.Engine.MaxOpenFiles = e.MaxOpenFiles }},
		{"compression", func(d *stored.Config) { d.Engine.Compression = e.Compression }},
		{"max-key-bytes", func(d *stored.Config) { d.Engine.MaxKeyBytes = e.MaxKeyBytes }},
		{"max-value-bytes", func(d *stored.Config) { d.Engine.MaxValueBytes = e.MaxValueBytes }},
		{"max-batch-bytes", func(d *stored.Config) { d.Engine.MaxBatchBytes = e.MaxBatchBytes }},
		{"rocksdb-log-level", func(d *stored.Config) { d.Engine.InfoLogLevel = e.InfoLogLevel }},
		{"snapshot-lease", func(d *stored.Config) { d.SnapshotLease = cfg.SnapshotLease }},
		{"max-snapshot-lease", func(d *stored.Config) { d.MaxSnapshotLease = cfg.MaxSnapshotLease }},
		{"max-snapshots", func(d *stored.Config) { d.MaxSnapshots = cfg.MaxSnapshots }},
		{"max-ingests", func(d *stored.Config) { d.MaxIngests = cfg.MaxIngests }},
		{"max-ingest-bytes", func(d *stored.Config) { d.MaxIngestBytes = cfg.MaxIngestBytes }},
		{"min-free-bytes", func(d *stored.Config) { d.MinFreeBytes = cfg.MinFreeBytes }},
		{"ballast-bytes", func(d *stored.Config) { d.BallastBytes = cfg.BallastBytes }},
		{"disk-check-interval", func(d *stored.Config) { d.DiskCheckInterval = cfg.DiskCheckInterval }},
	} {
		d := stored.DefaultConfig()
		d.Dir = dir
		f.set(&d)
		if err := d.Validate(); err != nil {
			return cfg, &config.FlagError{Flag: f.flag, Value: fmt.Sprint(c.Value(f.flag)), Err: err}
		}
	}
	if err := cfg.Validate(); err != nil {
		// Flags valid alone but not together (e.g. a key limit above the
		// batch limit).
		return cfg, &config.FlagError{Flag: "max-batch-bytes", Value: fmt.Sprint(cfg.Engine.MaxBatchBytes), Err: errors.Unwrap(err)}
	}
	return cfg, nil
}
