// Package bench is the benchmark of stored-bench (`pleiades bench store`
// runs it): stored over the bus against the same engine (stored/engine)
// opened in this process, in one run, with the same workload:
//
//   - sync batches of BatchOps puts of ValueBytes each, from each of the
//     Concurrency writers (default 1, 16 and 64): batches per second, and
//     the group commit factor (sync writes per WAL fsync) of the run;
//   - point reads of preloaded keys (hits) and of absent keys in the same
//     key range (misses), from ReadConcurrency readers;
//   - scans of ScanKeys consecutive keys from a random preloaded key,
//     from ReadConcurrency readers;
//   - for scale, point reads of MultiGetKeys random preloaded keys per
//     MultiGet call, counted in keys per second.
//
// Each figure is the operations completed in one timed phase of Phase,
// with latency percentiles; each phase runs on the bus, then in-process,
// before the next phase, so both sides of a ratio see about the same load
// on a shared machine. The ratios compare the bus with in-process:
// BatchWrite is the lowest bus/in-process ratio of sync batches/s over
// the writer counts, PointRead the lower of the hit and miss ratios, Scan
// the scan ratio; GroupCommitGain is the bus's sync batches/s at the most
// writers over the fewest (c64 over c1 by default).
//
// Without Options.Addr the run starts a temporary stored in this process
// (package stored, on a bus with throw-away dev certificates) in a
// directory of its own; with Addr it uses that stored and writes only
// under a per-run key prefix of the data column family, deleted at the
// end. The in-process engine always opens in a temporary directory.
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/stored"
	"github.com/pleiades-db/pleiades/stored/engine"
)

// Defaults of Options.
const (
	DefaultPhase           = 3 * time.Second
	DefaultBatchOps        = 100
	DefaultValueBytes      = 100
	DefaultKeys            = 50_000
	DefaultReadConcurrency = 16
	DefaultScanKeys        = 1000
	DefaultMultiGetKeys    = 100
)

// DefaultConcurrency lists the default sync batch writer counts.
func DefaultConcurrency() []int { return []int{1, 16, 64} }

// Options configure a run. Zero fields take the defaults above.
type Options struct {
	// Addr is the bus address of the stored to measure; empty starts a
	// temporary one in this process.
	Addr string
	// CertsDir holds the node certificate used to call Addr.
	CertsDir string
	// Dir is where the temporary stored and the in-process engine keep
	// their files; empty means a temporary directory removed at the end.
	Dir string
	// Phase is the length of each timed phase. Default 3s.
	Phase time.Duration
	// Concurrency lists the sync batch writer counts, ascending.
	// Default 1, 16, 64.
	Concurrency []int
	// BatchOps and ValueBytes shape one sync batch. Defaults 100 and 100.
	BatchOps, ValueBytes int
	// Keys is how many keys are preloaded for reads and scans.
	// Default 50,000.
	Keys int
	// ReadConcurrency is the number of readers for point reads and
	// scans. Default 16.
	ReadConcurrency int
	// ScanKeys is the length of one scan. Default 1,000.
	ScanKeys int
	// MultiGetKeys is the keys per MultiGet call of the batched read
	// phase. Default 100.
	MultiGetKeys int
	// Seed makes key choices repeatable. Default 1.
	Seed uint64
	// Logger receives the temporary stored's log; nil discards it.
	Logger *slog.Logger
	// Progress, if set, receives a line per phase.
	Progress func(string)
}

// withDefaults fills zero fields.
func (o Options) withDefaults() Options {
	if o.Phase == 0 {
		o.Phase = DefaultPhase
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = DefaultConcurrency()
	}
	if o.BatchOps == 0 {
		o.BatchOps = DefaultBatchOps
	}
	if o.ValueBytes == 0 {
		o.ValueBytes = DefaultValueBytes
	}
	if o.Keys == 0 {
		o.Keys = DefaultKeys
	}
	if o.ReadConcurrency == 0 {
		o.ReadConcurrency = DefaultReadConcurrency
	}
	if o.ScanKeys == 0 {
		o.ScanKeys = DefaultScanKeys
	}
	if o.MultiGetKeys == 0 {
		o.MultiGetKeys = DefaultMultiGetKeys
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Check reports the first invalid option (after defaults).
func (o Options) Check() error {
	o = o.withDefaults()
	if o.Addr != "" {
		if err := config.ValidateAddr(o.Addr); err != nil {
			return fmt.Errorf("addr %q: %w", o.Addr, err)
		}
	}
	switch {
	case o.Phase < 0:
		return fmt.Errorf("phase %v must be positive", o.Phase)
	case o.BatchOps < 0 || o.ValueBytes < 0 || o.Keys < 0 || o.ReadConcurrency < 0 || o.ScanKeys < 0 || o.MultiGetKeys < 0:
		return errors.New("batch ops, value bytes, keys, read concurrency, scan keys and multi-get keys must be positive")
	case o.MultiGetKeys > 10_000:
		return fmt.Errorf("multi-get keys %d over 10,000", o.MultiGetKeys)
	case o.ScanKeys > o.Keys:
		return fmt.Errorf("scan keys %d exceed the %d preloaded keys", o.ScanKeys, o.Keys)
	case o.Keys > 100_000_000:
		return fmt.Errorf("keys %d over 100,000,000", o.Keys)
	}
	for i, c := range o.Concurrency {
		if c < 1 || c > 4096 {
			return fmt.Errorf("concurrency %d not in [1, 4096]", c)
		}
		if i > 0 && c <= o.Concurrency[i-1] {
			return fmt.Errorf("concurrency %v must be strictly ascending", o.Concurrency)
		}
	}
	return nil
}

// Phase is one timed phase's outcome.
type Phase struct {
	Concurrency int     `json:"concurrency"`
	Ops         int64   `json:"ops"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50Us       float64 `json:"p50_us"`
	P99Us       float64 `json:"p99_us"`
	// SyncWritesPerWALSync is the group commit factor during a sync
	// batch phase (0 elsewhere, or when unknown).
	SyncWritesPerWALSync float64 `json:"sync_writes_per_wal_sync,omitempty"`
}

// Figures are one side's phases.
type Figures struct {
	SyncBatches     []Phase `json:"sync_batches"`
	PointReadHits   Phase   `json:"point_read_hits"`
	PointReadMisses Phase   `json:"point_read_misses"`
	Scans           Phase   `json:"scans"`
	// MultiGetKeys counts keys, MultiGetKeys per call; its latencies are
	// per call.
	MultiGetKeys Phase `json:"multi_get_keys"`
}

// Result is a run's outcome; `--output json` prints it.
type Result struct {
	Addr            string  `json:"addr"`
	Temporary       bool    `json:"temporary"`
	PhaseSec        float64 `json:"phase_sec"`
	BatchOps        int     `json:"batch_ops"`
	ValueBytes      int     `json:"value_bytes"`
	Keys            int     `json:"keys"`
	ReadConcurrency int     `json:"read_concurrency"`
	ScanKeys        int     `json:"scan_keys"`

	// BatchWrite is the lowest bus/in-process ratio of sync batches/s
	// over the writer counts; BatchWriteByConcurrency has each.
	BatchWrite              float64            `json:"batch_write"`
	BatchWriteByConcurrency map[string]float64 `json:"batch_write_by_concurrency"`
	// PointRead is the lower of PointReadHits and PointReadMisses, the
	// bus/in-process ratios of reads/s.
	PointRead       float64 `json:"point_read"`
	PointReadHits   float64 `json:"point_read_hits"`
	PointReadMisses float64 `json:"point_read_misses"`
	// Scan is the bus/in-process ratio of scans/s.
	Scan float64 `json:"scan"`
	// PointReadMultiGet is the bus/in-process ratio of keys/s read with
	// MultiGet: what batching point reads recovers.
	PointReadMultiGet float64 `json:"point_read_multi_get"`
	MultiGetKeys      int     `json:"multi_get_keys"`
	// GroupCommitGain is the bus's sync batches/s at the most writers
	// over the fewest; InProcessGroupCommitGain the same in-process.
	GroupCommitGain          float64 `json:"group_commit_gain"`
	InProcessGroupCommitGain float64 `json:"in_process_group_commit_gain"`

	Bus       Figures `json:"bus"`
	InProcess Figures `json:"in_process"`
}

// Run runs the benchmark.
func Run(ctx context.Context, o Options) (res *Result, err error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "pleiades-bench-store-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	}
	eng, err := engine.Open(filepath.Join(dir, "in-process"), engine.DefaultOptions())
	if err != nil {
		return nil, fmt.Errorf("open the in-process engine: %w", err)
	}
	defer eng.Close()

	addr, certs := o.Addr, o.CertsDir
	if addr == "" {
		tmp, err := startStored(ctx, filepath.Join(dir, "stored"), o.Logger)
		if err != nil {
			return nil, fmt.Errorf("start a temporary stored: %w", err)
		}
		defer tmp.stop()
		addr, certs = tmp.addr, tmp.certs
	}
	b, err := clientBus(ctx, certs)
	if err != nil {
		return nil, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = b.Stop(sctx)
	}()

	prefix := fmt.Appendf(nil, "bench-store/%016x/", uint64(time.Now().UnixNano()))
	r := &runner{o: o, prefix: prefix}
	busT := &busTarget{c: storeclient.New(b, addr)}
	if _, err := busT.c.Stats(ctx); err != nil {
		return nil, fmt.Errorf("stored at %s: %w", addr, err)
	}
	defer func() {
		// Leave an existing stored as it was.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if cerr := busT.clear(cctx, prefix); cerr != nil && err == nil {
			err = fmt.Errorf("delete the benchmark's keys: %w", cerr)
		}
	}()
	res = &Result{
		Addr: addr, Temporary: o.Addr == "", PhaseSec: o.Phase.Seconds(), BatchOps: o.BatchOps, ValueBytes: o.ValueBytes,
		Keys: o.Keys, ReadConcurrency: o.ReadConcurrency, ScanKeys: o.ScanKeys, MultiGetKeys: o.MultiGetKeys,
		BatchWriteByConcurrency: map[string]float64{},
	}
	if err := r.measure(ctx, []side{{"bus", busT, &res.Bus}, {"in-process", &engineTarget{e: eng}, &res.InProcess}}); err != nil {
		return nil, err
	}
	res.ratios()
	return res, nil
}

// ratios fills the bus/in-process ratios and the group commit gains.
func (r *Result) ratios() {
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	r.BatchWrite = math.Inf(1)
	for i, bp := range r.Bus.SyncBatches {
		x := ratio(bp.OpsPerSec, r.InProcess.SyncBatches[i].OpsPerSec)
		r.BatchWriteByConcurrency[fmt.Sprint(bp.Concurrency)] = x
		r.BatchWrite = min(r.BatchWrite, x)
	}
	if math.IsInf(r.BatchWrite, 1) {
		r.BatchWrite = 0
	}
	r.PointReadHits = ratio(r.Bus.PointReadHits.OpsPerSec, r.InProcess.PointReadHits.OpsPerSec)
	r.PointReadMisses = ratio(r.Bus.PointReadMisses.OpsPerSec, r.InProcess.PointReadMisses.OpsPerSec)
	r.PointRead = min(r.PointReadHits, r.PointReadMisses)
	r.Scan = ratio(r.Bus.Scans.OpsPerSec, r.InProcess.Scans.OpsPerSec)
	r.PointReadMultiGet = ratio(r.Bus.MultiGetKeys.OpsPerSec, r.InProcess.MultiGetKeys.OpsPerSec)
	gain := func(ps []Phase) float64 {
		if len(ps) == 0 {
			return 0
		}
		return ratio(ps[len(ps)-1].OpsPerSec, ps[0].OpsPerSec)
	}
	r.GroupCommitGain = gain(r.Bus.SyncBatches)
	r.InProcessGroupCommitGain = gain(r.InProcess.SyncBatches)
}

// runner runs the phases against one target after another.
type runner struct {
	o      Options
	prefix []byte
}

func (r *runner) progress(format string, args ...any) {
	if r.o.Progress != nil {
		r.o.Progress(fmt.Sprintf(format, args...))
	}
}

// readKey is preloaded key i (i < Keys); i >= Keys gives an absent key of
// the same range.
func (r *runner) readKey(i int) []byte {
	return fmt.Appendf(slices.Clip(r.prefix), "r/%09d", i)
}

// readSpanEnd bounds the preloaded keys.
func (r *runner) readSpanEnd() []byte {
	return append(slices.Clip(r.prefix), "r0"...) // '0' follows '/'
}

// side is one target and the figures measured on it.
type side struct {
	name string
	t    target
	f    *Figures
}

// measure preloads every side, then runs each phase on every side in
// turn (bus, then in-process, phase by phase), so that both sides of a
// ratio are measured minutes apart at most on a shared machine.
func (r *runner) measure(ctx context.Context, sides []side) error {
	val := make([]byte, r.o.ValueBytes)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	for _, sd := range sides {
		r.progress("%s: preloading %d keys", sd.name, r.o.Keys)
		for i := 0; i < r.o.Keys; i += 1000 {
			var keys, vals [][]byte
			for j := i; j < min(i+1000, r.o.Keys); j++ {
				keys, vals = append(keys, r.readKey(j)), append(vals, val)
			}
			if err := sd.t.write(ctx, keys, vals, false); err != nil {
				return fmt.Errorf("%s: preload: %w", sd.name, err)
			}
		}
	}
	for _, c := range r.o.Concurrency {
		for _, sd := range sides {
			if err := r.syncBatches(ctx, sd, c, val); err != nil {
				return fmt.Errorf("%s: sync batches at concurrency %d: %w", sd.name, c, err)
			}
		}
	}
	for _, rd := range []struct {
		what string
		hit  bool
	}{{"point reads (hits)", true}, {"point reads (misses)", false}} {
		for _, sd := range sides {
			out := &sd.f.PointReadHits
			if !rd.hit {
				out = &sd.f.PointReadMisses
			}
			var err error
			*out, err = r.phase(ctx, r.o.ReadConcurrency, func(ctx context.Context, _ int, rng *rand.Rand) (func() error, func()) {
				return func() error {
					i := rng.IntN(r.o.Keys)
					if !rd.hit {
						i += r.o.Keys
					}
					found, err := sd.t.get(ctx, r.readKey(i))
					if err == nil && found != rd.hit {
						err = fmt.Errorf("key %d: found %v, want %v", i, found, rd.hit)
					}
					return err
				}, nil
			})
			if err != nil {
				return fmt.Errorf("%s: %s: %w", sd.name, rd.what, err)
			}
			r.progress("%s: %s, %d readers: %.0f reads/s (p50 %.0f µs, p99 %.0f µs)", sd.name, rd.what, r.o.ReadConcurrency, out.OpsPerSec, out.P50Us, out.P99Us)
		}
	}
	end := r.readSpanEnd()
	for _, sd := range sides {
		var err error
		sd.f.Scans, err = r.phase(ctx, r.o.ReadConcurrency, func(ctx context.Context, _ int, rng *rand.Rand) (func() error, func()) {
			return func() error {
				start := rng.IntN(r.o.Keys - r.o.ScanKeys + 1)
				n, err := sd.t.scan(ctx, r.readKey(start), end, r.o.ScanKeys)
				if err == nil && n != r.o.ScanKeys {
					err = fmt.Errorf("scan from key %d returned %d keys, want %d", start, n, r.o.ScanKeys)
				}
				return err
			}, nil
		})
		if err != nil {
			return fmt.Errorf("%s: scans: %w", sd.name, err)
		}
		r.progress("%s: scans of %d keys, %d readers: %.0f scans/s (p50 %.0f µs, p99 %.0f µs)", sd.name, r.o.ScanKeys, r.o.ReadConcurrency, sd.f.Scans.OpsPerSec, sd.f.Scans.P50Us, sd.f.Scans.P99Us)
	}
	for _, sd := range sides {
		p, err := r.phase(ctx, r.o.ReadConcurrency, func(ctx context.Context, _ int, rng *rand.Rand) (func() error, func()) {
			keys := make([][]byte, r.o.MultiGetKeys)
			return func() error {
				for i := range keys {
					keys[i] = r.readKey(rng.IntN(r.o.Keys))
				}
				n, err := sd.t.multiGet(ctx, keys)
				if err == nil && n != len(keys) {
					err = fmt.Errorf("multi-get found %d of %d preloaded keys", n, len(keys))
				}
				return err
			}, nil
		})
		if err != nil {
			return fmt.Errorf("%s: multi-get: %w", sd.name, err)
		}
		p.Ops *= int64(r.o.MultiGetKeys)
		p.OpsPerSec *= float64(r.o.MultiGetKeys)
		sd.f.MultiGetKeys = p
		r.progress("%s: multi-gets of %d keys, %d readers: %.0f keys/s (p50 %.0f µs, p99 %.0f µs per call)", sd.name, r.o.MultiGetKeys, r.o.ReadConcurrency, p.OpsPerSec, p.P50Us, p.P99Us)
	}
	return nil
}

// syncBatches runs the sync batch phase with c writers on sd.
func (r *runner) syncBatches(ctx context.Context, sd side, c int, val []byte) error {
	var seq atomic.Int64
	sync0, wal0, err := sd.t.counters(ctx)
	if err != nil {
		return err
	}
	p, err := r.phase(ctx, c, func(ctx context.Context, worker int, rng *rand.Rand) (func() error, func()) {
		keys, vals := make([][]byte, r.o.BatchOps), make([][]byte, r.o.BatchOps)
		for i := range vals {
			vals[i] = val
		}
		return func() error {
			n := seq.Add(1)
			for i := range keys {
				keys[i] = fmt.Appendf(keys[i][:0], "%sw/%04d/%010d/%03d", r.prefix, worker, n, i)
			}
			return sd.t.write(ctx, keys, vals, true)
		}, nil
	})
	if err != nil {
		return err
	}
	if sync1, wal1, err := sd.t.counters(ctx); err == nil && wal1 > wal0 {
		p.SyncWritesPerWALSync = float64(sync1-sync0) / float64(wal1-wal0)
	}
	sd.f.SyncBatches = append(sd.f.SyncBatches, p)
	r.progress("%s: sync batches of %d x %d B, %d writers: %.0f batches/s (p50 %.0f µs, p99 %.0f µs, %.1f sync writes per WAL sync)",
		sd.name, r.o.BatchOps, r.o.ValueBytes, c, p.OpsPerSec, p.P50Us, p.P99Us, p.SyncWritesPerWALSync)
	return nil
}

// phase runs conc workers for Phase; each calls its op (made by mk, with
// an optional cleanup) in a loop. The first error stops the phase.
func (r *runner) phase(ctx context.Context, conc int, mk func(ctx context.Context, worker int, rng *rand.Rand) (op func() error, done func())) (Phase, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hists := make([]histogram, conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(r.o.Phase)
	for w := range conc {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(r.o.Seed, uint64(w)))
			op, done := mk(ctx, w, rng)
			if done != nil {
				defer done()
			}
			for ctx.Err() == nil {
				t0 := time.Now()
				if t0.After(deadline) {
					return
				}
				if err := op(); err != nil {
					errs[w] = err
					cancel()
					return
				}
				hists[w].add(time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return Phase{}, err
	}
	if err := ctx.Err(); err != nil {
		return Phase{}, err
	}
	var h histogram
	for i := range hists {
		h.merge(&hists[i])
	}
	return Phase{
		Concurrency: conc, Ops: h.n, OpsPerSec: float64(h.n) / elapsed.Seconds(),
		P50Us: h.quantile(0.50).Seconds() * 1e6, P99Us: h.quantile(0.99).Seconds() * 1e6,
	}, nil
}

// histogram counts latencies in buckets of about 6% width.
type histogram struct {
	n       int64
	buckets [64 * 16]int64
}

// bucketOf maps d to its bucket: 16 sub-buckets per power of two.
func bucketOf(d time.Duration) int {
	v := uint64(max(d, 1))
	e := bits.Len64(v) - 1
	var m uint64
	if e >= 4 {
		m = (v >> (e - 4)) & 15
	} else {
		m = (v << (4 - e)) & 15
	}
	return e*16 + int(m)
}

// bucketValue is the lower bound of bucket b.
func bucketValue(b int) time.Duration {
	e, m := b/16, uint64(b%16)
	if e >= 4 {
		return time.Duration((16 + m) << (e - 4))
	}
	return time.Duration((16 + m) >> (4 - e))
}

func (h *histogram) add(d time.Duration) {
	h.n++
	h.buckets[bucketOf(d)]++
}

func (h *histogram) merge(o *histogram) {
	h.n += o.n
	for i, c := range o.buckets {
		h.buckets[i] += c
	}
}

// quantile returns the lower bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for b, c := range h.buckets {
		seen += c
		if seen >= max(rank, 1) {
			return bucketValue(b)
		}
	}
	return bucketValue(len(h.buckets) - 1)
}

// target is one side of the comparison.
type target interface {
	// write applies one batch of puts in the data column family.
	write(ctx context.Context, keys, vals [][]byte, sync bool) error
	get(ctx context.Context, key []byte) (bool, error)
	// multiGet reads keys in one call and returns how many were found.
	multiGet(ctx context.Context, keys [][]byte) (int, error)
	// scan reads up to n keys of [start, end) and returns how many.
	scan(ctx context.Context, start, end []byte, n int) (int, error)
	// counters returns the sync writes and WAL fsyncs so far.
	counters(ctx context.Context) (syncWrites, walSyncs uint64, err error)
}

// scanPageBytes caps a scan page's bytes; a ScanKeys scan fits one page.
const scanPageBytes = 4 << 20

// busTarget is stored over the bus.
type busTarget struct {
	c       *storeclient.Client
	batches sync.Pool
}

func (t *busTarget) write(ctx context.Context, keys, vals [][]byte, sync bool) error {
	b, _ := t.batches.Get().(*storeclient.Batch)
	if b == nil {
		b = new(storeclient.Batch)
	}
	defer func() {
		b.Reset()
		t.batches.Put(b)
	}()
	for i := range keys {
		b.Put(storeclient.Data, keys[i], vals[i])
	}
	_, err := t.c.Write(ctx, b, sync)
	return err
}

func (t *busTarget) get(ctx context.Context, key []byte) (bool, error) {
	_, found, err := t.c.Get(ctx, storeclient.Data, key)
	return found, err
}

func (t *busTarget) multiGet(ctx context.Context, keys [][]byte) (int, error) {
	res, err := t.c.MultiGet(ctx, storeclient.Data, keys)
	n := 0
	for _, r := range res {
		if r.Found {
			n++
		}
	}
	return n, err
}

func (t *busTarget) scan(ctx context.Context, start, end []byte, n int) (int, error) {
	got := 0
	for got < n {
		p, err := t.c.Scan(ctx, storeclient.Span{CF: storeclient.Data, Start: start, End: end}, storeclient.ScanOptions{Limit: n - got, MaxBytes: scanPageBytes})
		if err != nil {
			return got, err
		}
		got += len(p.KVs)
		if !p.More || len(p.KVs) == 0 {
			break
		}
		start = p.Resume
	}
	return got, nil
}

func (t *busTarget) counters(ctx context.Context) (uint64, uint64, error) {
	st, err := t.c.Stats(ctx)
	if err != nil {
		return 0, 0, err
	}
	return st.GetSyncWrites(), st.GetWalSyncs(), nil
}

// clear deletes every key under prefix, durably.
func (t *busTarget) clear(ctx context.Context, prefix []byte) error {
	var b storeclient.Batch
	b.DeleteRange(storeclient.Data, prefix, prefixEnd(prefix))
	_, err := t.c.Write(ctx, &b, true)
	return err
}

// prefixEnd is the first key after every key with prefix (prefix holds no
// 0xff byte).
func prefixEnd(prefix []byte) []byte {
	end := slices.Clone(prefix)
	end[len(end)-1]++
	return end
}

// engineTarget is the engine in this process.
type engineTarget struct {
	e *engine.Engine
}

func (t *engineTarget) write(_ context.Context, keys, vals [][]byte, sync bool) error {
	b := t.e.NewBatch()
	defer b.Close()
	for i := range keys {
		b.Put(engine.Data, keys[i], vals[i])
	}
	_, err := t.e.Write(b, sync)
	return err
}

func (t *engineTarget) get(_ context.Context, key []byte) (bool, error) {
	_, found, err := t.e.Get(engine.Data, key, nil)
	return found, err
}

func (t *engineTarget) multiGet(_ context.Context, keys [][]byte) (int, error) {
	_, found, err := t.e.MultiGet(engine.Data, keys, nil)
	n := 0
	for _, f := range found {
		if f {
			n++
		}
	}
	return n, err
}

func (t *engineTarget) scan(_ context.Context, start, end []byte, n int) (int, error) {
	got := 0
	for got < n {
		p, err := t.e.Scan(engine.Span{CF: engine.Data, Start: start, End: end}, engine.ScanOptions{Limit: n - got, MaxBytes: scanPageBytes})
		if err != nil {
			return got, err
		}
		got += len(p.KVs)
		if !p.More || len(p.KVs) == 0 {
			break
		}
		start = p.Resume
	}
	return got, nil
}

func (t *engineTarget) counters(context.Context) (uint64, uint64, error) {
	_, s, w := t.e.Counters()
	return s, w, nil
}

// tempStored is a stored started in this process.
type tempStored struct {
	addr, certs string
	stop        func()
}

// startStored starts a stored with dev certificates in dir.
func startStored(ctx context.Context, dir string, log *slog.Logger) (*tempStored, error) {
	c := config.Common{
		NodeID: 1, DataDir: dir, BusAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		CertsDir: filepath.Join(dir, "certs"), Dev: true, MaxFrameSize: config.DefaultMaxFrameSize,
		LogFormat: "text", LogLevel: slog.LevelInfo, ShutdownTimeout: 10 * time.Second,
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	rt, err := daemon.NewRuntime(stored.Name, c, log)
	if err != nil {
		return nil, err
	}
	cfg := stored.DefaultConfig()
	cfg.Dir = filepath.Join(dir, stored.Name)
	srv, err := stored.New(cfg, stored.Deps{Logger: log, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
	if err != nil {
		return nil, err
	}
	if err := rt.Start(ctx); err != nil {
		return nil, err
	}
	stopRT := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = rt.Stop(sctx)
	}
	if err := srv.Start(ctx); err != nil {
		stopRT()
		return nil, err
	}
	return &tempStored{addr: rt.Bus.Addr().String(), certs: c.CertsDir, stop: func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = srv.Stop(sctx)
		stopRT()
	}}, nil
}

// clientBus starts a client bus endpoint with the node certificate in
// certsDir.
func clientBus(ctx context.Context, certsDir string) (*bus.Bus, error) {
	tc, err := tlsutil.Load(certsDir)
	if err != nil {
		return nil, fmt.Errorf("load certificates from %s: %w", certsDir, err)
	}
	b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tc}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, err
	}
	return b, nil
}
