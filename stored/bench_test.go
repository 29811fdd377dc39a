package stored_test

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/stored"
)

// Benchmarks of stored over the bus (QUIC on loopback, one client
// runtime); stored/engine's bench_test.go has the same shapes in-process.
// Figures and commands: BENCHMARKS.md.

func benchNode(b *testing.B) *node {
	cfg := stored.DefaultConfig()
	cfg.Dir = b.TempDir()
	return startNode(b, cfg, nil)
}

// localBenchNode is benchNode with the client calling over stored's local
// socket.
func localBenchNode(b *testing.B) *node {
	cfg := stored.DefaultConfig()
	cfg.Dir = b.TempDir()
	cfg.LocalSocket = shortSocket(b)
	return startNode(b, cfg, nil)
}

// BenchmarkBusSyncBatch writes sync batches of 100 x 100 B values from
// conc goroutines over the bus: QUIC ("conc=N"), or stored's local socket
// ("local/conc=N").
func BenchmarkBusSyncBatch(b *testing.B) {
	for _, local := range []bool{false, true} {
		for _, conc := range []int{1, 16, 64} {
			name := fmt.Sprintf("conc=%d", conc)
			newNode := benchNode
			if local {
				name, newNode = "local/"+name, localBenchNode
			}
			b.Run(name, func(b *testing.B) { benchSyncBatch(b, newNode(b), conc) })
		}
	}
}

func benchSyncBatch(b *testing.B, n *node, conc int) {
	ctx := ctxT(b)
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
			var batch storeclient.Batch
			keys := make([]byte, 12*100)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				batch.Reset()
				for j := 0; j < 100; j++ {
					k := keys[12*j : 12*j+12]
					binary.BigEndian.PutUint64(k, uint64(i))
					binary.BigEndian.PutUint32(k[8:], uint32(j))
					batch.Put(storeclient.Raft, k, val)
				}
				if _, err := n.c.Write(ctx, &batch, true); err != nil {
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
	st, err := n.c.Stats(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.WalSyncs)/float64(st.SyncWrites), "fsyncs/batch")
}

const benchKeys = 10000

func benchKey(i int) []byte { return []byte(fmt.Sprintf("key%08d", i)) }

func loadedNode(b *testing.B) *node {
	n := benchNode(b)
	var batch storeclient.Batch
	val := make([]byte, 100)
	for i := 0; i < benchKeys; i++ {
		batch.Put(storeclient.Data, benchKey(i), val)
		if batch.Len() == 1000 {
			if _, err := n.c.Write(ctxT(b), &batch, true); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	return n
}

// BenchmarkBusPointRead reads existing keys (hit) and absent ones (miss).
func BenchmarkBusPointRead(b *testing.B) {
	n := loadedNode(b)
	ctx := ctxT(b)
	for _, hit := range []bool{true, false} {
		b.Run(map[bool]string{true: "hit", false: "miss"}[hit], func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				k := benchKey(r.IntN(benchKeys))
				if !hit {
					k = append(k, 'x')
				}
				if _, found, err := n.c.Get(ctx, storeclient.Data, k); err != nil || found != hit {
					b.Fatalf("Get(%s) = %v, %v", k, found, err)
				}
			}
		})
	}
}

// BenchmarkBusScan1000 reads 1,000-key pages from random starts.
func BenchmarkBusScan1000(b *testing.B) {
	n := loadedNode(b)
	ctx := ctxT(b)
	r := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		start := benchKey(r.IntN(benchKeys - 1000))
		p, err := n.c.Scan(ctx, storeclient.Span{CF: storeclient.Data, Start: start}, storeclient.ScanOptions{Limit: 1000})
		if err != nil || len(p.KVs) != 1000 {
			b.Fatalf("Scan = %d entries, %v", len(p.KVs), err)
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "keys/s")
}
