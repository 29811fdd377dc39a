package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
)

func storeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "store",
		Usage: "inspect a node's stored",
		Subcommands: []*cli.Command{
			storeStatsCommand(e),
		},
	}
}

func storeStatsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "stats",
		Usage: "show a stored's statistics: column families, block cache, writes and group commit",
		Description: "Calls Stats on the stored at --addr over the bus (mutual TLS with the node certificate\n" +
			"in --certs-dir). The table shows the database path, the block cache, write and WAL sync\n" +
			"counters (sync writes per WAL sync is the group commit factor), open snapshots and ingests,\n" +
			"write stalls, stored's own key and value limits (the KV's are lower: 64 KiB keys, 8 MiB values),\n" +
			"and one row per column family. --output json\n" +
			"prints one object with the same fields in snake_case (bytes as integers) and\n" +
			"\"column_families\": one object per column family.",
		Flags: daemonFlags("stored"),
		Action: func(c *cli.Context) error {
			dc, err := newDaemonCall(e, c)
			if err != nil {
				return err
			}
			defer dc.cancel()
			st, err := fetchStoreStats(dc.ctx, dc.certs, dc.addr)
			if err != nil {
				return dc.explain(err)
			}
			v := makeStoreStatsView(dc.addr, st)
			if dc.format == "json" {
				return output.PrintJSON(e.stdout, v)
			}
			return printStoreStats(e.stdout, v)
		},
	}
}

// fetchStoreStats calls Stats on the stored at addr.
func fetchStoreStats(ctx context.Context, certs certsChoice, addr string) (st *storepb.StatsResponse, err error) {
	err = withBus(ctx, certs, addr, func(b *bus.Bus) error {
		st, err = storeclient.New(b, addr).Stats(ctx)
		if err != nil {
			return fmt.Errorf("stored at %s: %w", addr, err)
		}
		return nil
	})
	return st, err
}

// storeStatsView is what `store stats` prints.
type storeStatsView struct {
	Addr                    string        `json:"addr"`
	Path                    string        `json:"path"`
	BlockCacheUsageBytes    uint64        `json:"block_cache_usage_bytes"`
	BlockCacheCapacityBytes uint64        `json:"block_cache_capacity_bytes"`
	BlockCacheHitRate       float64       `json:"block_cache_hit_rate"`
	BlockCacheHits          uint64        `json:"block_cache_hits"`
	BlockCacheMisses        uint64        `json:"block_cache_misses"`
	Writes                  uint64        `json:"writes"`
	SyncWrites              uint64        `json:"sync_writes"`
	WALSyncs                uint64        `json:"wal_syncs"`
	SyncWritesPerWALSync    float64       `json:"sync_writes_per_wal_sync"`
	OpenSnapshots           uint64        `json:"open_snapshots"`
	OpenIngests             uint64        `json:"open_ingests"`
	WriteStopped            bool          `json:"write_stopped"`
	WriteStallMicros        uint64        `json:"write_stall_micros"`
	MaxKeyBytes             uint64        `json:"max_key_bytes"`
	MaxValueBytes           uint64        `json:"max_value_bytes"`
	ColumnFamilies          []storeCFView `json:"column_families"`
	// Disk is the database filesystem's space and whether writes are
	// refused (storepb.DiskStatus).
	Disk storeDiskView `json:"disk"`
}

// storeDiskView is the disk part of storeStatsView.
type storeDiskView struct {
	Full           bool   `json:"full"`
	ReserveFull    bool   `json:"reserve_full"`
	Condition      string `json:"condition,omitempty"`
	FreeBytes      uint64 `json:"free_bytes"`
	TotalBytes     uint64 `json:"total_bytes"`
	FloorBytes     uint64 `json:"floor_bytes"`
	BallastBytes   uint64 `json:"ballast_bytes"`
	BallastPresent bool   `json:"ballast_present"`
}

// storeCFView is one column family of storeStatsView.
type storeCFView struct {
	Name                   string `json:"name"`
	EstimatedKeys          uint64 `json:"estimated_keys"`
	LiveDataBytes          uint64 `json:"live_data_bytes"`
	SSTBytes               uint64 `json:"sst_bytes"`
	MemtableBytes          uint64 `json:"memtable_bytes"`
	L0Files                uint64 `json:"l0_files"`
	PendingCompactionBytes uint64 `json:"pending_compaction_bytes"`
}

func makeStoreStatsView(addr string, st *storepb.StatsResponse) storeStatsView {
	v := storeStatsView{
		Addr: addr, Path: st.GetPath(),
		BlockCacheUsageBytes: st.GetBlockCacheUsageBytes(), BlockCacheCapacityBytes: st.GetBlockCacheCapacityBytes(),
		BlockCacheHitRate: st.GetBlockCacheHitRate(), BlockCacheHits: st.GetBlockCacheHits(), BlockCacheMisses: st.GetBlockCacheMisses(),
		Writes: st.GetWrites(), SyncWrites: st.GetSyncWrites(), WALSyncs: st.GetWalSyncs(),
		OpenSnapshots: st.GetOpenSnapshots(), OpenIngests: st.GetOpenIngests(),
		WriteStopped: st.GetWriteStopped(), WriteStallMicros: st.GetWriteStallMicros(),
		MaxKeyBytes: st.GetMaxKeyBytes(), MaxValueBytes: st.GetMaxValueBytes(),
		ColumnFamilies: []storeCFView{},
	}
	if d := st.GetDisk(); d != nil {
		v.Disk = storeDiskView{Full: d.GetFull(), ReserveFull: d.GetReserveFull(), FreeBytes: d.GetFreeBytes(), TotalBytes: d.GetTotalBytes(),
			FloorBytes: d.GetFloorBytes(), BallastBytes: d.GetBallastBytes(), BallastPresent: d.GetBallastPresent()}
		if d.GetFull() {
			v.Disk.Condition = d.Describe()
			if d.GetReason() != "" {
				v.Disk.Condition += "; " + d.GetReason()
			}
		}
	}
	if v.WALSyncs > 0 {
		v.SyncWritesPerWALSync = float64(v.SyncWrites) / float64(v.WALSyncs)
	}
	for _, cf := range st.GetColumnFamilies() {
		v.ColumnFamilies = append(v.ColumnFamilies, storeCFView{
			Name: cf.GetName(), EstimatedKeys: cf.GetEstimatedKeys(), LiveDataBytes: cf.GetLiveDataBytes(),
			SSTBytes: cf.GetSstBytes(), MemtableBytes: cf.GetMemtableBytes(), L0Files: cf.GetL0Files(),
			PendingCompactionBytes: cf.GetPendingCompactionBytes(),
		})
	}
	return v
}

func printStoreStats(w io.Writer, v storeStatsView) error {
	fmt.Fprintf(w, "stored %s\n", v.Addr)
	fmt.Fprintf(w, "path          %s\n", v.Path)
	fmt.Fprintf(w, "block cache   %s of %s, hit rate %.1f%% (%d hits, %d misses)\n",
		humanBytes(v.BlockCacheUsageBytes), humanBytes(v.BlockCacheCapacityBytes), 100*v.BlockCacheHitRate, v.BlockCacheHits, v.BlockCacheMisses)
	gc := "-"
	if v.WALSyncs > 0 {
		gc = strconv.FormatFloat(v.SyncWritesPerWALSync, 'f', 2, 64)
	}
	fmt.Fprintf(w, "writes        %d (%d sync, %d WAL syncs, %s sync writes per WAL sync)\n", v.Writes, v.SyncWrites, v.WALSyncs, gc)
	stopped := "no"
	if v.WriteStopped {
		stopped = "YES"
	}
	fmt.Fprintf(w, "write stalls  %v in total; writes stopped now: %s\n", time.Duration(v.WriteStallMicros)*time.Microsecond, stopped)
	fmt.Fprintf(w, "open          %d snapshots, %d ingests\n", v.OpenSnapshots, v.OpenIngests)
	fmt.Fprintf(w, "limits        key %s, value %s: stored's own, for any daemon's writes; the KV (raftd) takes keys up to %s and values up to %s\n",
		humanBytes(v.MaxKeyBytes), humanBytes(v.MaxValueBytes), humanBytes(kvpb.MaxKeyBytes), humanBytes(kvpb.MaxValueBytes))
	ballast := "none"
	switch {
	case v.Disk.BallastBytes > 0 && v.Disk.BallastPresent:
		ballast = humanBytes(v.Disk.BallastBytes)
	case v.Disk.BallastBytes > 0:
		ballast = humanBytes(v.Disk.BallastBytes) + " (released)"
	}
	fmt.Fprintf(w, "disk          free %s of %s, floor %s, ballast %s\n", humanBytes(v.Disk.FreeBytes), humanBytes(v.Disk.TotalBytes), humanBytes(v.Disk.FloorBytes), ballast)
	if v.Disk.Full {
		fmt.Fprintf(w, "              WRITES REFUSED: %s\n", v.Disk.Condition)
	}
	fmt.Fprintln(w)
	t := output.NewTable(w, "CF", "KEYS (EST)", "LIVE DATA", "SST", "MEMTABLE", "L0 FILES", "PENDING COMPACTION")
	for _, cf := range v.ColumnFamilies {
		t.Row(cf.Name, strconv.FormatUint(cf.EstimatedKeys, 10), humanBytes(cf.LiveDataBytes), humanBytes(cf.SSTBytes),
			humanBytes(cf.MemtableBytes), strconv.FormatUint(cf.L0Files, 10), humanBytes(cf.PendingCompactionBytes))
	}
	return t.Flush()
}

// humanBytes formats n bytes with a binary unit: 512 B, 1.5 KiB, 64.0 MiB.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
