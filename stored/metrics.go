package stored

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics: per-method latency, and a
// collector that reads RocksDB's properties at each scrape.
type metrics struct {
	s       *Server
	latency *prometheus.HistogramVec

	memtable, sst, keys, l0, pending             *prometheus.Desc
	cacheUsage, cacheCap, cacheHits, cacheMisses *prometheus.Desc
	cacheHitRatio, stallSeconds, stopped         *prometheus.Desc
	writes, syncWrites, walSyncs                 *prometheus.Desc
	snapshots, ingests                           *prometheus.Desc
	diskFree, diskTotal, diskFloor, diskFull     *prometheus.Desc
	diskReserveFull, ballast, diskRefusals       *prometheus.Desc
}

func newMetrics(s *Server) *metrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("pleiades_stored_"+name, help, labels, nil)
	}
	return &metrics{
		s: s,
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pleiades_stored_request_duration_seconds",
			Help:    "Time stored spent serving one store protocol call, by method.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2.5, 14),
		}, []string{"method"}),
		memtable:      d("memtable_bytes", "Bytes in the column family's memtables.", "cf"),
		sst:           d("sst_bytes", "Bytes of the column family's SST files.", "cf"),
		keys:          d("estimated_keys", "RocksDB's estimate of the column family's keys.", "cf"),
		l0:            d("l0_files", "SST files at level 0 of the column family.", "cf"),
		pending:       d("pending_compaction_bytes", "RocksDB's estimate of bytes compaction must rewrite, by column family.", "cf"),
		cacheUsage:    d("block_cache_usage_bytes", "Bytes held by the block cache."),
		cacheCap:      d("block_cache_capacity_bytes", "Capacity of the block cache."),
		cacheHits:     d("block_cache_hits_total", "Block cache hits."),
		cacheMisses:   d("block_cache_misses_total", "Block cache misses."),
		cacheHitRatio: d("block_cache_hit_ratio", "Block cache hits over lookups since start."),
		stallSeconds:  d("write_stall_seconds_total", "Time writes spent stalled by RocksDB."),
		stopped:       d("write_stopped", "1 while RocksDB stops writes (too many L0 files or memtables)."),
		writes:        d("writes_total", "Write batches applied."),
		syncWrites:    d("sync_writes_total", "Write batches applied with sync."),
		walSyncs:      d("wal_syncs_total", "WAL fsyncs; sync writes per fsync is the group commit factor."),
		snapshots:     d("open_snapshots", "Snapshots open on the bus."),
		ingests:       d("open_ingests", "IngestRange sessions in progress."),

		diskFree:        d("disk_free_bytes", "Free space of the database's filesystem available to stored (statfs f_bavail), as of the last check."),
		diskTotal:       d("disk_total_bytes", "Size of the database's filesystem."),
		diskFloor:       d("disk_floor_bytes", "Free-space floor below which writes are refused."),
		diskFull:        d("disk_full", "1 while writes are refused for want of disk space (the free space less a missing ballast is under the floor, or RocksDB is out of space)."),
		diskReserveFull: d("disk_reserve_full", "1 while even reserve writes (raft votes and hard state, truncation) are refused."),
		ballast:         d("disk_ballast_bytes", "Bytes held by the ballast file now (0 when released or not configured)."),
		diskRefusals:    d("disk_refusals_total", "Writes refused for want of disk space, by class (normal, reserve).", "class"),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	return errors.Join(r.Register(m.latency), r.Register(m))
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.memtable, m.sst, m.keys, m.l0, m.pending, m.cacheUsage, m.cacheCap,
		m.cacheHits, m.cacheMisses, m.cacheHitRatio, m.stallSeconds, m.stopped, m.writes, m.syncWrites,
		m.walSyncs, m.snapshots, m.ingests, m.diskFree, m.diskTotal, m.diskFloor, m.diskFull, m.diskReserveFull,
		m.ballast, m.diskRefusals} {
		ch <- d
	}
}

// Collect implements prometheus.Collector; it reads the engine's stats,
// and reports nothing of RocksDB while the engine is closed.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(m.snapshots, float64(m.s.snaps.len()))
	gauge(m.ingests, float64(m.s.ingests.len()))
	m.collectDisk(gauge, ch)
	e := m.s.eng.Load()
	if e == nil {
		return
	}
	st, err := e.Stats()
	if err != nil {
		return
	}
	for _, c := range st.CFs {
		name := c.CF.String()
		gauge(m.memtable, float64(c.MemtableBytes), name)
		gauge(m.sst, float64(c.SSTBytes), name)
		gauge(m.keys, float64(c.EstimatedKeys), name)
		gauge(m.l0, float64(c.L0Files), name)
		gauge(m.pending, float64(c.PendingCompactionBytes), name)
	}
	gauge(m.cacheUsage, float64(st.BlockCacheUsage))
	gauge(m.cacheCap, float64(st.BlockCacheCapacity))
	counter(m.cacheHits, float64(st.BlockCacheHits))
	counter(m.cacheMisses, float64(st.BlockCacheMisses))
	gauge(m.cacheHitRatio, st.HitRate())
	counter(m.stallSeconds, float64(st.WriteStallMicros)/1e6)
	stopped := 0.0
	if st.WriteStopped {
		stopped = 1
	}
	gauge(m.stopped, stopped)
	counter(m.writes, float64(st.Writes))
	counter(m.syncWrites, float64(st.SyncWrites))
	counter(m.walSyncs, float64(st.WALSyncs))
}

// collectDisk reports the disk monitor's view.
func (m *metrics) collectDisk(gauge func(*prometheus.Desc, float64, ...string), ch chan<- prometheus.Metric) {
	d := m.s.disk.status()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge(m.diskFree, float64(d.GetFreeBytes()))
	gauge(m.diskTotal, float64(d.GetTotalBytes()))
	gauge(m.diskFloor, float64(d.GetFloorBytes()))
	gauge(m.diskFull, b(d.GetFull()))
	gauge(m.diskReserveFull, b(d.GetReserveFull()))
	held := 0.0
	if d.GetBallastPresent() {
		held = float64(d.GetBallastBytes())
	}
	gauge(m.ballast, held)
	ch <- prometheus.MustNewConstMetric(m.diskRefusals, prometheus.CounterValue, float64(m.s.disk.refusals.Load()), "normal")
	ch <- prometheus.MustNewConstMetric(m.diskRefusals, prometheus.CounterValue, float64(m.s.disk.reserveRefusals.Load()), "reserve")
}
