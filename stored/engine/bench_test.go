package engine_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/stored/engine"
)

// Benchmarks of the engine in-process; stored's bench_test.go has the same
// shapes over the bus. Figures and commands: stored/BENCHMARKS.md.

// BenchmarkSyncBatch writes sync batches of 100 x 100 B values from conc
// goroutines; batches/s and fsyncs per batch show the group commit gain.
func BenchmarkSyncBatch(b *testing.B) {
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			e := open(b, b.TempDir(), engine.DefaultOptions())
			runSyncBatches(b, conc, func(batch *engine.Batch) error {
				_, err := e.Write(batch, true)
				return err
			}, e.NewBatch)
			_, syncs, fsyncs := e.Counters()
			b.ReportMetric(float64(fsyncs)/float64(syncs), "fsyncs/batch")
		})
	}
}

// runSyncBatches runs b.N batches of 100 x 100 B puts spread over conc
// goroutines and reports batches/s.
func runSyncBatches(b *testing.B, conc int, write func(*engine.Batch) error, newBatch func() *engine.Batch) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	val := make([]byte, 100)
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := newBatch()
			defer batch.Close()
			key := make([]byte, 12)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				batch.Reset()
				for j := 0; j < 100; j++ {
					binary.BigEndian.PutUint64(key, uint64(i))
					binary.BigEndian.PutUint32(key[8:], uint32(j))
					batch.Put(engine.Raft, key, val)
				}
				if err := write(batch); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "batches/s")
}

const benchKeys = 10000

func benchKey(i int) []byte { return []byte(fmt.Sprintf("key%08d", i)) }

// loaded returns an engine holding benchKeys keys of 100 B in data.
func loaded(b *testing.B) *engine.Engine {
	e := open(b, b.TempDir(), engine.DefaultOptions())
	batch := e.NewBatch()
	defer batch.Close()
	val := make([]byte, 100)
	for i := 0; i < benchKeys; i++ {
		batch.Put(engine.Data, benchKey(i), val)
	}
	if _, err := e.Write(batch, true); err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkPointRead reads existing keys (hit) and absent ones (miss).
func BenchmarkPointRead(b *testing.B) {
	e := loaded(b)
	for _, hit := range []bool{true, false} {
		b.Run(map[bool]string{true: "hit", false: "miss"}[hit], func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				k := benchKey(r.IntN(benchKeys))
				if !hit {
					k = append(k, 'x')
				}
				if _, found, err := e.Get(engine.Data, k, nil); err != nil || found != hit {
					b.Fatalf("Get(%s) = %v, %v", k, found, err)
				}
			}
		})
	}
}

// BenchmarkScan1000 reads 1,000-key pages from random starts.
func BenchmarkScan1000(b *testing.B) {
	e := loaded(b)
	r := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		start := benchKey(r.IntN(benchKeys - 1000))
		p, err := e.Scan(engine.Span{CF: engine.Data, Start: start}, engine.ScanOptions{Limit: 1000})
		if err != nil || len(p.KVs) != 1000 {
			b.Fatalf("Scan = %d entries, %v", len(p.KVs), err)
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "keys/s")
}
