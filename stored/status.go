package stored

import (
	"github.com/pleiades-db/pleiades/shared/bus"
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
	}
	for _, c := range st.CFs {
		out.ColumnFamilies = append(out.ColumnFamilies, CFStatus{
			Name: c.CF.String(), SSTBytes: c.SSTBytes, MemtableBytes: c.MemtableBytes,
			LiveDataBytes: c.LiveDataBytes, EstimatedKeys: c.EstimatedKeys, L0Files: c.L0Files,
		})
	}
	return out, nil
}
