package kv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pleiades-db/pleiades/shared/kvclient"
)

// WatchOptions configure a watch-latency run, shaped like etcd's
// `benchmark watch-latency` (--streams, --watchers-per-stream,
// --put-total, --put-rate, --key-size, --val-size, --prevkv): Streams ×
// WatchersPerStream watchers of one key, then PutTotal puts of that key
// at PutRate a second from one client, each waiting for its answer; the
// latency of an event is from the put's acknowledgement to its delivery
// to a watcher (a delivery before the acknowledgement counts 0), over
// every (put, watcher) pair.
//
// etcd multiplexes a stream's watchers on one gRPC stream; a Pleiades
// watch is a bus stream of its own, so Streams only spreads the watchers
// over the Conns client endpoints (stream i on endpoint i mod Conns).
type WatchOptions struct {
	// Addrs are raftd bus addresses. Required.
	Addrs []string
	// TLS is the client endpoints' mutual TLS configuration. Required.
	TLS *tls.Config
	// Conns is the number of client endpoints the watchers share (the
	// putter has its own). Default 1.
	Conns int
	// Streams × WatchersPerStream is the number of watchers. Defaults
	// 10 and 10, as etcd's.
	Streams, WatchersPerStream int
	// PutTotal puts at PutRate a second. Defaults 1000 and 100.
	PutTotal, PutRate int
	// KeySize and ValSize are in bytes. Defaults 32 and 32.
	KeySize, ValSize int
	// PrevValue asks each watch for previous values (etcd's --prevkv).
	PrevValue bool
	// Drain bounds the wait for the last deliveries after the last put.
	// Default 30s.
	Drain time.Duration
	// Hold keeps the watchers open and idle this long once they are
	// ready, before the first put (to measure what idle watchers cost
	// the servers). Default 0.
	Hold time.Duration
	// Logger receives progress. Default: discard.
	Logger *slog.Logger
}

// WatchResult is one watch-latency run's figures; its JSON is what
// `pleiades bench watch --output json` prints.
type WatchResult struct {
	Watchers   int     `json:"watchers"`
	Conns      int     `json:"conns"`
	PutTotal   int     `json:"put_total"`
	PutRate    int     `json:"put_rate"`
	KeySize    int     `json:"key_size"`
	ValSize    int     `json:"val_size"`
	SetupSec   float64 `json:"setup_s"`
	HoldSec    float64 `json:"hold_s,omitempty"`
	Duration   string  `json:"duration"`
	PutsPerSec float64 `json:"puts_per_sec"`
	PutP50Ms   float64 `json:"put_p50_ms"`
	PutP99Ms   float64 `json:"put_p99_ms"`
	// Events is the number of (put, watcher) deliveries measured;
	// Missing those not delivered within Drain after the last put.
	Events  int     `json:"events"`
	Missing int     `json:"missing"`
	MeanMs  float64 `json:"mean_ms"`
	P50Ms   float64 `json:"p50_ms"`
	P90Ms   float64 `json:"p90_ms"`
	P99Ms   float64 `json:"p99_ms"`
	P999Ms  float64 `json:"p999_ms"`
	MaxMs   float64 `json:"max_ms"`
}

func (o WatchOptions) withDefaults() WatchOptions {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Conns, 1)
	def(&o.Streams, 10)
	def(&o.WatchersPerStream, 10)
	def(&o.PutTotal, 1000)
	def(&o.PutRate, 100)
	def(&o.KeySize, 32)
	def(&o.ValSize, 32)
	if o.Drain == 0 {
		o.Drain = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// maxWatchers bounds Streams × WatchersPerStream.
const maxWatchers = 100_000

// Validate checks o, with defaults filled in, and names the bad option.
// It does not check TLS, which RunWatch requires.
func (o WatchOptions) Validate() error {
	o = o.withDefaults()
	switch {
	case len(o.Addrs) == 0:
		return errors.New("bench watch: no raftd address")
	case o.Conns < 1 || o.Streams < 1 || o.WatchersPerStream < 1 || o.PutTotal < 1 || o.PutRate < 1:
		return errors.New("bench watch: conns, streams, watchers per stream, put total and put rate must be at least 1")
	case o.Streams*o.WatchersPerStream > maxWatchers:
		return fmt.Errorf("bench watch: %d watchers; at most %d", o.Streams*o.WatchersPerStream, maxWatchers)
	case o.KeySize < 1 || o.KeySize > 64<<10:
		return fmt.Errorf("bench watch: key size %d outside 1..65536", o.KeySize)
	case o.ValSize < 0:
		return errors.New("bench watch: negative value size")
	case o.Drain < 0 || o.Hold < 0:
		return errors.New("bench watch: negative drain or hold")
	}
	return nil
}

// RunWatch runs the watch-latency benchmark. An error means it could
// not run (bad options, no client, a watch that never opened, a failed
// put); deliveries still missing after Drain are counted in
// WatchResult.Missing.
func RunWatch(ctx context.Context, o WatchOptions) (WatchResult, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return WatchResult{}, err
	}
	if o.TLS == nil {
		return WatchResult{}, errors.New("bench watch: no TLS configuration")
	}
	watchers := o.Streams * o.WatchersPerStream
	res := WatchResult{Watchers: watchers, Conns: o.Conns, PutTotal: o.PutTotal, PutRate: o.PutRate, KeySize: o.KeySize, ValSize: o.ValSize, HoldSec: o.Hold.Seconds()}
	clients := make([]*kvclient.Client, 0, o.Conns+1)
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, c := range clients {
			_ = c.Close(sctx)
		}
	}()
	for range o.Conns + 1 {
		c, err := kvclient.New(ctx, kvclient.Config{Addrs: o.Addrs, TLS: o.TLS, Logger: o.Logger})
		if err != nil {
			return res, err
		}
		clients = append(clients, c)
	}
	connect(ctx, clients, Options{Logger: o.Logger})
	putter, wcs := clients[0], clients[1:]

	// etcd's key and value are random bytes; these are random letters (a
	// user key may not begin with 0x00).
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	letters := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + rng.IntN(26))
		}
		return b
	}
	key, val := letters(o.KeySize), letters(o.ValSize)

	// The watchers: each records, in order, when its events arrived
	// (nanoseconds since base); it is ready at its first checkpoint, when
	// it sees every change after it.
	base := time.Now()
	wctx, wcancel := context.WithCancel(ctx)
	var (
		wg       sync.WaitGroup
		ready    sync.WaitGroup
		arrivals = make([][]int64, watchers)
		counts   = make([]atomic.Int64, watchers)
		failMu   sync.Mutex
		failed   error
	)
	defer func() { wcancel(); wg.Wait() }()
	for w := range watchers {
		arrivals[w] = make([]int64, o.PutTotal)
		c := wcs[(w/o.WatchersPerStream)%len(wcs)]
		ready.Add(1)
		wg.Go(func() {
			isReady := false
			markReady := func() {
				if !isReady {
					isReady = true
					ready.Done()
				}
			}
			defer markReady()
			err := c.Watch(wctx, key, nil, kvclient.WatchOptions{PrevValue: o.PrevValue}, func(r kvclient.WatchResponse) error {
				now := int64(time.Since(base))
				for range r.Events {
					if n := counts[w].Load(); n < int64(o.PutTotal) {
						arrivals[w][n] = now
						counts[w].Store(n + 1)
					}
				}
				if !r.Resolved.IsZero() {
					markReady()
				}
				return nil
			})
			if err != nil && wctx.Err() == nil {
				failMu.Lock()
				if failed == nil {
					failed = fmt.Errorf("bench watch: watcher %d: %w", w, err)
				}
				failMu.Unlock()
			}
		})
	}
	ready.Wait()
	failMu.Lock()
	err := failed
	failMu.Unlock()
	if err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench watch: setting up %d watchers: %w", watchers, err)
	}
	res.SetupSec = time.Since(base).Seconds()
	o.Logger.Info("bench watch: watchers ready", "watchers", watchers, "setup", time.Since(base))
	if o.Hold > 0 {
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("bench watch: holding the watchers: %w", ctx.Err())
		case <-time.After(o.Hold):
		}
	}

	// The puts, at PutRate a second (a put that falls behind the
	// schedule is sent at once, as etcd's token bucket of PutRate does).
	acked := make([]int64, o.PutTotal)
	puts := newHistogram()
	start := time.Now()
	interval := time.Second / time.Duration(o.PutRate)
	for i := range o.PutTotal {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-ctx.Done():
				return res, fmt.Errorf("bench watch: after %d puts: %w", i, ctx.Err())
			case <-time.After(wait):
			}
		}
		t0 := time.Now()
		if _, err := putter.Put(ctx, key, val); err != nil {
			return res, fmt.Errorf("bench watch: put %d: %w", i, err)
		}
		acked[i] = int64(time.Since(base))
		puts.record(time.Since(t0))
	}
	elapsed := time.Since(start)

	// The last deliveries.
	deadline := time.Now().Add(o.Drain)
	for w := 0; w < watchers; {
		if counts[w].Load() >= int64(o.PutTotal) {
			w++
			continue
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	wcancel()
	wg.Wait()

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	lat := newHistogram()
	for w := range watchers {
		n := int(counts[w].Load())
		res.Missing += o.PutTotal - n
		for i := range n {
			lat.record(time.Duration(arrivals[w][i] - acked[i]))
		}
	}
	res.Events = int(lat.n)
	res.Duration = elapsed.Round(time.Millisecond).String()
	res.PutsPerSec = float64(o.PutTotal) / elapsed.Seconds()
	res.PutP50Ms, res.PutP99Ms = ms(puts.quantile(0.5)), ms(puts.quantile(0.99))
	res.MeanMs, res.P50Ms, res.P90Ms = ms(lat.mean()), ms(lat.quantile(0.5)), ms(lat.quantile(0.9))
	res.P99Ms, res.P999Ms, res.MaxMs = ms(lat.quantile(0.99)), ms(lat.quantile(0.999)), ms(lat.max)
	return res, nil
}
