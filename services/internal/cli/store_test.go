package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// fakeStoredStats serves stored's Stats on a bus with dev certificates in
// certsDir.
func fakeStoredStats(t *testing.T, certsDir string, st *storepb.StatsResponse) string {
	t.Helper()
	if err := tlsutil.EnsureDev(certsDir, "node-1", []string{"127.0.0.1"}, 1); err != nil {
		t.Fatal(err)
	}
	tc, err := tlsutil.Load(certsDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tc}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	bus.HandleUnary(b, wire.ProtoStore, storeclient.MethodStats, func(context.Context, *storepb.StatsRequest) (*storepb.StatsResponse, error) {
		return st, nil
	})
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	})
	return b.Addr().String()
}

func sampleStats() *storepb.StatsResponse {
	return &storepb.StatsResponse{
		Path: "/var/lib/pleiades/stored/db",
		ColumnFamilies: []*storepb.ColumnFamilyStats{
			{Name: "local", EstimatedKeys: 3, LiveDataBytes: 120, MemtableBytes: 2048},
			{Name: "raft", EstimatedKeys: 1000, LiveDataBytes: 1 << 20, SstBytes: 3 << 20, L0Files: 2, PendingCompactionBytes: 5 << 30},
			{Name: "data", EstimatedKeys: 0},
		},
		BlockCacheUsageBytes: 12 << 20, BlockCacheCapacityBytes: 64 << 20, BlockCacheHitRate: 0.975,
		BlockCacheHits: 39, BlockCacheMisses: 1, OpenSnapshots: 1, Writes: 500, SyncWrites: 400, WalSyncs: 50,
		WriteStopped: false, WriteStallMicros: 1500, MaxKeyBytes: 64 << 10, MaxValueBytes: 16 << 20, OpenIngests: 2,
	}
}

func TestStoreStatsTable(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	addr := fakeStoredStats(t, certs, sampleStats())
	code, out, errOut := run(t, "store", "stats", "--addr", addr, "--certs-dir", certs)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"/var/lib/pleiades/stored/db", "12.0 MiB of 64.0 MiB, hit rate 97.5%", "400 sync, 50 WAL syncs, 8.00 sync writes per WAL sync",
		"1.5ms in total", "1 snapshots, 2 ingests", "key 64.0 KiB, value 16.0 MiB: stored's own", "the KV (raftd) takes keys up to 64.0 KiB and values up to 8.0 MiB", "PENDING COMPACTION", "5.0 GiB", "3.0 MiB",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := strings.Fields(lines[len(lines)-1]); len(last) < 2 || last[0] != "data" || last[1] != "0" {
		t.Errorf("last row = %q; want the data family", lines[len(lines)-1])
	}
}

func TestStoreStatsJSON(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	addr := fakeStoredStats(t, certs, sampleStats())
	code, out, errOut := run(t, "store", "stats", "--addr", addr, "--certs-dir", certs, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var v struct {
		Addr                 string  `json:"addr"`
		Path                 string  `json:"path"`
		BlockCacheHitRate    float64 `json:"block_cache_hit_rate"`
		SyncWrites           uint64  `json:"sync_writes"`
		WALSyncs             uint64  `json:"wal_syncs"`
		SyncWritesPerWALSync float64 `json:"sync_writes_per_wal_sync"`
		WriteStopped         *bool   `json:"write_stopped"`
		MaxKeyBytes          uint64  `json:"max_key_bytes"`
		ColumnFamilies       []struct {
			Name                   string `json:"name"`
			EstimatedKeys          uint64 `json:"estimated_keys"`
			SSTBytes               uint64 `json:"sst_bytes"`
			L0Files                uint64 `json:"l0_files"`
			PendingCompactionBytes uint64 `json:"pending_compaction_bytes"`
		} `json:"column_families"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	if v.Addr != addr || v.Path != "/var/lib/pleiades/stored/db" || v.BlockCacheHitRate != 0.975 || v.SyncWrites != 400 ||
		v.WALSyncs != 50 || v.SyncWritesPerWALSync != 8 || v.WriteStopped == nil || *v.WriteStopped || v.MaxKeyBytes != 64<<10 {
		t.Errorf("view = %+v", v)
	}
	if len(v.ColumnFamilies) != 3 || v.ColumnFamilies[1].Name != "raft" || v.ColumnFamilies[1].EstimatedKeys != 1000 ||
		v.ColumnFamilies[1].SSTBytes != 3<<20 || v.ColumnFamilies[1].L0Files != 2 || v.ColumnFamilies[1].PendingCompactionBytes != 5<<30 {
		t.Errorf("column families = %+v", v.ColumnFamilies)
	}
}

func TestStoreStatsErrors(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	if err := tlsutil.EnsureDev(certs, "node-1", []string{"127.0.0.1"}, 1); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad addr", []string{"--addr", "stored", "--certs-dir", certs}, ExitUsage, "--addr"},
		{"bad output", []string{"--addr", "127.0.0.1:1", "--certs-dir", certs, "-o", "yaml"}, ExitUsage, "--output"},
		{"missing certs", []string{"--addr", "127.0.0.1:1", "--certs-dir", filepath.Join(t.TempDir(), "none")}, ExitFailed, "--certs-dir"},
		{"no stored", []string{"--addr", "127.0.0.1:1", "--certs-dir", certs, "--timeout", "500ms"}, ExitFailed, "127.0.0.1:1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := run(t, append([]string{"store", "stats"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d %q; want %d naming %q", code, errOut, tt.code, tt.want)
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tt := range []struct {
		n    uint64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {64 << 20, "64.0 MiB"},
		{5 << 30, "5.0 GiB"}, {1 << 40, "1.0 TiB"}, {1<<64 - 1, "16.0 EiB"},
	} {
		if got := humanBytes(tt.n); got != tt.want {
			t.Errorf("humanBytes(%d) = %q; want %q", tt.n, got, tt.want)
		}
	}
}
