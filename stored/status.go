package stored

import (
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
)

// Status is the /v1/store view: the database path, sizes per column
// family and the write counters.
type Status struct {
	Path           string     `json:"path"`
	ColumnFamilies []CFStatus `json:"column_families"`
	// Writes, SyncWrites and WALSyncs count since start; SyncWrites over
	// WALSyncs is the group commit factor.
	Writes        uint64 `json:"writes"`
	SyncWrites    uint64 `json:"sync_writes"`
	WALSyncs      uint64 `json:"wal_syncs"`
	OpenSnapshots int    `json:"open_snapshots"`
	OpenIngests   int    `json:"open_ingests"`
	// BlockCacheUsageBytes and BlockCacheHitRate describe the block cache.
	BlockCacheUsageBytes uint64  `json:"block_cache_usage_bytes"`
	BlockCacheHitRate    float64 `json:"block_cache_hit_rate"`
	WriteStopped         bool    `json:"write_stopped"`
	MaxKeyBytes          int     `json:"max_key_bytes"`
	MaxValueBytes        int     `json:"max_value_bytes"`
	// Disk is the free space of the database's filesystem and whether
	// writes are refused.
	Disk DiskStatus `json:"disk"`
}

// DiskStatus is the /v1/store view of the disk (storepb.DiskStatus).
type DiskStatus struct {
	// Full is true while writes are refused; Condition then says why.
	Full        bool   `json:"full"`
	ReserveFull bool   `json:"reserve_full"`
	Condition   string `json:"condition,omitempty"`
	FreeBytes   uint64 `json:"free_bytes"`
	TotalBytes  uint64 `json:"total_bytes"`
	FloorBytes  uint64 `json:"floor_bytes"`
	// BallastBytes is the ballast's size; BallastPresent whether its file
	// is on disk.
	BallastBytes   uint64 `json:"ballast_bytes"`
	BallastPresent bool   `json:"ballast_present"`
	BallastPath    string `json:"ballast_path,omitempty"`
	// Refusals and ReserveRefusals count the writes refused since start.
	Refusals        uint64 `json:"refusals"`
	ReserveRefusals uint64 `json:"reserve_refusals"`
}

func (s *Server) diskStatus() DiskStatus {
	d := s.disk.status()
	out := DiskStatus{
		Full: d.GetFull(), ReserveFull: d.GetReserveFull(), FreeBytes: d.GetFreeBytes(), TotalBytes: d.GetTotalBytes(),
		FloorBytes: d.GetFloorBytes(), BallastBytes: d.GetBallastBytes(), BallastPresent: d.GetBallastPresent(),
		Refusals: s.disk.refusals.Load(), ReserveRefusals: s.disk.reserveRefusals.Load(),
	}
	if d.GetBallastBytes() > 0 {
		out.BallastPath = s.disk.ballastPath
	}
	if d.GetFull() {
		out.Condition = describeFull(d)
	}
	return out
}

// describeFull says why writes are refused.
func describeFull(d *storepb.DiskStatus) string {
	msg := d.Describe()
	if d.GetReason() != "" {
		msg += "; " + d.GetReason()
	}
	return msg
}

// CFStatus is one column family's sizes.
type CFStatus struct {
	Name          string `json:"name"`
	SSTBytes      uint64 `json:"sst_bytes"`
	MemtableBytes uint64 `json:"memtable_bytes"`
	LiveDataBytes uint64 `json:"live_data_bytes"`
	EstimatedKeys uint64 `json:"estimated_keys"`
	L0Files       uint64 `json:"l0_files"`
}

// Status returns the server's store status; CodeUnavailable while the
// database is closed.
func (s *Server) Status() (*Status, error) {
	e := s.eng.Load()
	if e == nil {
		return nil, errUnavailable
	}
	st, err := e.Stats()
	if err != nil {
		return nil, bus.Errorf(bus.CodeUnavailable, "stored: %v", err)
	}
	out := &Status{
		Path: st.Dir, Writes: st.Writes, SyncWrites: st.SyncWrites, WALSyncs: st.WALSyncs,
		OpenSnapshots: s.snaps.len(), OpenIngests: s.ingests.len(),
		BlockCacheUsageBytes: st.BlockCacheUsage, BlockCacheHitRate: st.HitRate(),
		WriteStopped: st.WriteStopped, MaxKeyBytes: st.MaxKeyBytes, MaxValueBytes: st.MaxValueBytes,
		Disk: s.diskStatus(),
	}
	for _, c := range st.CFs {
		out.ColumnFamilies = append(out.ColumnFamilies, CFStatus{
			Name: c.CF.String(), SSTBytes: c.SSTBytes, MemtableBytes: c.MemtableBytes,
			LiveDataBytes: c.LiveDataBytes, EstimatedKeys: c.EstimatedKeys, L0Files: c.L0Files,
		})
	}
	return out, nil
}
