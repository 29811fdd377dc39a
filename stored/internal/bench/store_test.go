package bench

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/storeclient"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tiny is a run in miniature: a few milliseconds per phase, small counts.
func tiny() Options {
	return Options{Phase: 40 * time.Millisecond, Concurrency: []int{1, 4}, BatchOps: 5, ValueBytes: 10, Keys: 300, ReadConcurrency: 2, ScanKeys: 25, MultiGetKeys: 7}
}

func checkResult(t *testing.T, r *Result, o Options) {
	t.Helper()
	for _, side := range []struct {
		name string
		f    Figures
	}{{"bus", r.Bus}, {"in-process", r.InProcess}} {
		if len(side.f.SyncBatches) != len(o.Concurrency) {
			t.Fatalf("%s: %d sync batch phases; want %d", side.name, len(side.f.SyncBatches), len(o.Concurrency))
		}
		for i, p := range append(side.f.SyncBatches, side.f.PointReadHits, side.f.PointReadMisses, side.f.Scans, side.f.MultiGetKeys) {
			if p.Ops == 0 || p.OpsPerSec <= 0 || p.P50Us <= 0 || p.P99Us < p.P50Us {
				t.Errorf("%s phase %d = %+v; want operations and ordered percentiles", side.name, i, p)
			}
		}
		for i, p := range side.f.SyncBatches {
			if p.Concurrency != o.Concurrency[i] || p.SyncWritesPerWALSync < 1 {
				t.Errorf("%s sync batches %d = %+v; want concurrency %d and a group commit factor >= 1", side.name, i, p, o.Concurrency[i])
			}
		}
		if side.f.PointReadHits.Concurrency != o.ReadConcurrency || side.f.Scans.Concurrency != o.ReadConcurrency {
			t.Errorf("%s readers = %d, %d; want %d", side.name, side.f.PointReadHits.Concurrency, side.f.Scans.Concurrency, o.ReadConcurrency)
		}
	}
	lo := r.BatchWriteByConcurrency["1"]
	for _, c := range []string{"1", "4"} {
		x := r.BatchWriteByConcurrency[c]
		if x <= 0 {
			t.Errorf("batch_write at %s writers = %v", c, x)
		}
		lo = min(lo, x)
	}
	if r.BatchWrite != lo {
		t.Errorf("batch_write = %v; want the lowest per-concurrency ratio %v", r.BatchWrite, lo)
	}
	if want := r.Bus.PointReadHits.OpsPerSec / r.InProcess.PointReadHits.OpsPerSec; r.PointReadHits != want {
		t.Errorf("point_read_hits = %v; want %v", r.PointReadHits, want)
	}
	if r.PointRead != min(r.PointReadHits, r.PointReadMisses) || r.PointRead <= 0 {
		t.Errorf("point_read = %v; want min(%v, %v)", r.PointRead, r.PointReadHits, r.PointReadMisses)
	}
	if want := r.Bus.Scans.OpsPerSec / r.InProcess.Scans.OpsPerSec; r.Scan != want || r.Scan <= 0 {
		t.Errorf("scan = %v; want %v", r.Scan, want)
	}
	if want := r.Bus.MultiGetKeys.OpsPerSec / r.InProcess.MultiGetKeys.OpsPerSec; r.PointReadMultiGet != want || r.PointReadMultiGet <= 0 {
		t.Errorf("point_read_multi_get = %v; want %v", r.PointReadMultiGet, want)
	}
	for _, f := range []Figures{r.Bus, r.InProcess} {
		if f.MultiGetKeys.Ops%int64(o.MultiGetKeys) != 0 {
			t.Errorf("multi-get keys %d not a multiple of %d", f.MultiGetKeys.Ops, o.MultiGetKeys)
		}
	}
	if want := r.Bus.SyncBatches[1].OpsPerSec / r.Bus.SyncBatches[0].OpsPerSec; r.GroupCommitGain != want {
		t.Errorf("group_commit_gain = %v; want %v", r.GroupCommitGain, want)
	}
}

func TestRunTemporaryStored(t *testing.T) {
	o := tiny()
	var lines []string
	o.Progress = func(s string) { lines = append(lines, s) }
	r, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Temporary || r.Addr == "" || r.BatchOps != 5 || r.Keys != 300 || r.ScanKeys != 25 {
		t.Errorf("result header = %+v", r)
	}
	checkResult(t, r, o)
	if len(lines) < 2*(1+len(o.Concurrency)+4) {
		t.Errorf("progress lines = %q", lines)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"batch_write", "point_read", "scan", "group_commit_gain", "point_read_multi_get", "bus", "in_process"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
}

func TestRunExistingStoredLeavesNoKeys(t *testing.T) {
	dir := t.TempDir()
	tmp, err := startStored(t.Context(), filepath.Join(dir, "stored"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tmp.stop()
	o := tiny()
	o.Addr, o.CertsDir, o.Dir = tmp.addr, tmp.certs, filepath.Join(dir, "bench")
	r, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Temporary || r.Addr != tmp.addr {
		t.Errorf("result = %+v; want the given stored", r)
	}
	checkResult(t, r, o)

	b, err := clientBus(t.Context(), tmp.certs)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
	}()
	p, err := storeclient.New(b, tmp.addr).Scan(t.Context(), storeclient.Span{CF: storeclient.Data}, storeclient.ScanOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.KVs) != 0 {
		t.Errorf("the data family holds %d keys after the run, e.g. %q; want none", len(p.KVs), p.KVs[0].Key)
	}
}

func TestOptionsCheck(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"defaults", func(*Options) {}, ""},
		{"bad addr", func(o *Options) { o.Addr = "stored" }, "addr"},
		{"negative phase", func(o *Options) { o.Phase = -time.Second }, "phase"},
		{"descending concurrency", func(o *Options) { o.Concurrency = []int{16, 1} }, "ascending"},
		{"zero writers", func(o *Options) { o.Concurrency = []int{0, 4} }, "concurrency"},
		{"scan longer than the keys", func(o *Options) { o.Keys, o.ScanKeys = 10, 20 }, "scan keys"},
		{"negative batch", func(o *Options) { o.BatchOps = -1 }, "positive"},
		{"huge multi-get", func(o *Options) { o.MultiGetKeys = 20_000 }, "multi-get"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var o Options
			tt.edit(&o)
			err := o.Check()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Check = %v; want an error naming %q", err, tt.want)
			}
		})
	}
	if _, err := Run(t.Context(), Options{Concurrency: []int{2, 1}}); err == nil {
		t.Error("Run accepted bad options")
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.quantile(tt.q)
		// A bucket is 1/16 of a power of two wide: within 6.25% below.
		if got > tt.want || float64(got) < 0.93*float64(tt.want) {
			t.Errorf("quantile(%v) = %v; want within 7%% below %v", tt.q, got, tt.want)
		}
	}
	for _, d := range []time.Duration{0, 1, 7, 15, 16, 17, 1000, 1 << 40} {
		if lo := bucketValue(bucketOf(d)); lo > max(d, 1) || (d >= 16 && float64(lo) < 0.93*float64(d)) {
			t.Errorf("bucket of %v starts at %v", d, lo)
		}
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("quantile of an empty histogram not 0")
	}
}
