// Package kv is the KV benchmark behind `pleiades bench kv`: the put and
// get workloads of etcd's benchmark tool (tools/benchmark: --conns,
// --clients, --total, --key-size, --val-size, --sequential-keys,
// --key-space-size) run against raftd through package kvclient, so that
// shared/tools/etcd-baseline.sh gives directly comparable figures.
//
// Clients goroutines share Conns client endpoints (each its own bus
// endpoint, round robin) and issue Total requests between them, each
// waiting for its answer before the next (closed loop). Latency is
// recorded per request in a log-linear histogram (1% resolution) and
// reported as p50/p99/p99.9; a request that fails after the client's
// retries counts as an error and is excluded from latency.
//
// Keys are KeySize bytes encoding an index below KeySpace (sequential or
// uniformly random). Unlike etcd's raw varint keys, the first byte cycles
// through 0x01..0xff, so keys are valid user keys (never 0x00) and spread
// over ranges split at one-byte boundaries (Options.Ranges). The get
// workload first writes every key of its key space (default one key, like
// the baseline's `range foo`), untimed.
//
// Before the clock starts, every client connects to every node and loads
// its range cache (untimed), so the figures are of steady traffic, not of
// QUIC and TLS handshakes: the first requests of 16 fresh clients used to
// take ~150 ms and set p99.9 of a one-second run.
//
// RunWatch (watch.go) is `pleiades bench watch`: etcd's `benchmark
// watch-latency`, the latency from a put's acknowledgement to its
// delivery to N watchers of the key.
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

// Options configure a run.
type Options struct {
	// Addrs are raftd bus addresses. Required.
	Addrs []string
	// TLS is the client endpoints' mutual TLS configuration. Required.
	TLS *tls.Config
	// Conns is the number of client endpoints. Default 1.
	Conns int
	// Clients is the number of concurrent requesters. Default 1.
	Clients int
	// Total is the number of timed requests. Default 10000.
	Total int
	// KeySize is in bytes. Default 8.
	KeySize int
	// ValSize is in bytes; 0 writes empty values.
	ValSize int
	// SequentialKeys walks the key space in order instead of at random.
	SequentialKeys bool
	// KeySpace is the number of distinct keys. Default: Total for put,
	// 1 for get.
	KeySpace int
	// Op is "put" or "get". Default "put".
	Op string
	// Consistency of gets.
	Consistency kvclient.Consistency
	// MaxStaleness, above 0, makes gets bounded-staleness reads
	// (kvclient.MaxStaleness); the timed gets start that long after the
	// key space was written.
	MaxStaleness time.Duration
	// Ranges, when above 0, first calls Init with that many initial
	// ranges (a no-op on an initialized cluster) and Replicas replicas.
	Ranges, Replicas int
	// Logger receives progress. Default: discard.
	Logger *slog.Logger
}

// Result is one run's figures; its JSON is what `pleiades bench kv
// --output json` prints.
type Result struct {
	Op             string  `json:"op"`
	Consistency    string  `json:"consistency,omitempty"`
	Conns          int     `json:"conns"`
	Clients        int     `json:"clients"`
	Total          int     `json:"total"`
	KeySize        int     `json:"key_size"`
	ValSize        int     `json:"val_size"`
	KeySpace       int     `json:"key_space"`
	Ranges         int     `json:"ranges,omitempty"`
	InitNote       string  `json:"init,omitempty"`
	Duration       string  `json:"duration"`
	DurationSec    float64 `json:"duration_s"`
	RequestsPerSec float64 `json:"requests_per_sec"`
	MeanMs         float64 `json:"mean_ms"`
	P50Ms          float64 `json:"p50_ms"`
	P90Ms          float64 `json:"p90_ms"`
	P99Ms          float64 `json:"p99_ms"`
	P999Ms         float64 `json:"p999_ms"`
	MaxMs          float64 `json:"max_ms"`
	Errors         int     `json:"errors"`
	FirstError     string  `json:"first_error,omitempty"`
}

func (o Options) withDefaults() Options {
	if o.Conns == 0 {
		o.Conns = 1
	}
	if o.Clients == 0 {
		o.Clients = 1
	}
	if o.Total == 0 {
		o.Total = 10000
	}
	if o.KeySize == 0 {
		o.KeySize = 8
	}
	if o.Op == "" {
		o.Op = "put"
	}
	if o.KeySpace == 0 {
		o.KeySpace = o.Total
		if o.Op == "get" {
			o.KeySpace = 1
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate checks o, with defaults filled in, and names the bad option.
// It does not check TLS, which Run requires.
func (o Options) Validate() error {
	o = o.withDefaults()
	switch {
	case len(o.Addrs) == 0:
		return errors.New("bench kv: no raftd address")
	case o.Conns < 1 || o.Clients < 1 || o.Total < 1:
		return errors.New("bench kv: conns, clients and total must be at least 1")
	case o.Conns > o.Clients:
		return fmt.Errorf("bench kv: conns %d exceeds clients %d", o.Conns, o.Clients)
	case o.KeySize < 1 || o.KeySize > 64<<10:
		return fmt.Errorf("bench kv: key size %d outside 1..65536", o.KeySize)
	case o.ValSize < 0:
		return errors.New("bench kv: negative value size")
	case o.KeySpace < 1 || o.KeySpace > maxKeys(o.KeySize):
		return fmt.Errorf("bench kv: key space %d outside 1..%d for %d-byte keys", o.KeySpace, maxKeys(o.KeySize), o.KeySize)
	case o.Op != "put" && o.Op != "get":
		return fmt.Errorf("bench kv: op %q: want put or get", o.Op)
	case o.Ranges < 0 || o.Replicas < 0:
		return errors.New("bench kv: negative ranges or replicas")
	}
	return nil
}

// maxKeys is the number of distinct keys of size bytes.
func maxKeys(size int) int {
	n := 255
	for i := 1; i < size && n < 1<<40; i++ {
		n *= 256
	}
	return n
}

// key writes the key of index i into k (len(k) bytes): the first byte is
// 1 + i mod 255, the rest i / 255 big-endian.
func key(k []byte, i int) {
	k[0] = byte(1 + i%255)
	rest := i / 255
	for j := len(k) - 1; j >= 1; j-- {
		k[j] = byte(rest)
		rest >>= 8
	}
}

// Run runs the benchmark; an error means it could not run (bad options,
// no client, a failed Init or warm-up), while failed requests are counted
// in Result.Errors.
func Run(ctx context.Context, o Options) (Result, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	if o.TLS == nil {
		return Result{}, errors.New("bench kv: no TLS configuration")
	}
	res := Result{Op: o.Op, Conns: o.Conns, Clients: o.Clients, Total: o.Total, KeySize: o.KeySize, ValSize: o.ValSize, KeySpace: o.KeySpace, Ranges: o.Ranges}
	if o.Op == "get" {
		res.Consistency = o.Consistency.String()
		if o.MaxStaleness > 0 {
			res.Consistency = "max-staleness " + o.MaxStaleness.String()
		}
	}
	clients := make([]*kvclient.Client, 0, o.Conns)
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, c := range clients {
			_ = c.Close(sctx)
		}
	}()
	for i := range o.Conns {
		// Connection i lists node i first, as etcd's benchmark gives
		// connection i endpoint i: stale reads are spread over the nodes
		// by connection, each connection's on one node.
		addrs := append(append([]string(nil), o.Addrs[i%len(o.Addrs):]...), o.Addrs[:i%len(o.Addrs)]...)
		c, err := kvclient.New(ctx, kvclient.Config{Addrs: addrs, TLS: o.TLS, Logger: o.Logger})
		if err != nil {
			return res, err
		}
		clients = append(clients, c)
	}
	if o.Ranges > 0 {
		ir, err := clients[0].Init(ctx, kvclient.InitOptions{InitialRanges: o.Ranges, ReplicationFactor: o.Replicas})
		if err != nil {
			return res, fmt.Errorf("bench kv: init %d ranges: %w", o.Ranges, err)
		}
		res.InitNote = fmt.Sprintf("created %d descriptors", len(ir.Descriptors))
		if ir.AlreadyInitialized {
			res.InitNote = fmt.Sprintf("cluster already initialized with %d descriptors; --ranges had no effect", len(ir.Descriptors))
			if ir.LayoutDiffers != "" {
				res.InitNote += " (" + ir.LayoutDiffers + ")"
			}
		}
		o.Logger.Info("bench kv: init", "note", res.InitNote)
	}
	connect(ctx, clients, o)
	val := make([]byte, o.ValSize)
	for i := range val {
		val[i] = 'x'
	}
	if o.Op == "get" {
		if err := warm(ctx, clients, o, val); err != nil {
			return res, err
		}
		// Bounded-staleness gets measure reads of data older than their
		// bound, as a follower serves them from its newest versions:
		// right after the warm writes, every read would look up an older
		// version in stored instead (the keys' newest write is above the
		// range's closed timestamp).
		if o.MaxStaleness > 0 {
			o.Logger.Info("bench kv: waiting out the staleness bound after the warm writes", "wait", o.MaxStaleness)
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(o.MaxStaleness):
			}
		}
	}

	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      = newHistogram()
		errs     int
		firstErr error
	)
	start := time.Now()
	for w := range o.Clients {
		c := clients[w%len(clients)]
		wg.Go(func() {
			h := newHistogram()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			k := make([]byte, o.KeySize)
			var nerr int
			var ferr error
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= o.Total {
					break
				}
				idx := i % o.KeySpace
				if !o.SequentialKeys {
					idx = rng.IntN(o.KeySpace)
				}
				key(k, idx)
				t0 := time.Now()
				var err error
				if o.Op == "put" {
					_, err = c.Put(ctx, k, val)
				} else {
					_, _, err = c.Get(ctx, k, kvclient.WithConsistency(o.Consistency), kvclient.MaxStaleness(o.MaxStaleness))
				}
				if err != nil {
					nerr++
					if ferr == nil {
						ferr = err
					}
					continue
				}
				h.record(time.Since(t0))
			}
			mu.Lock()
			defer mu.Unlock()
			all.merge(h)
			errs += nerr
			if firstErr == nil {
				firstErr = ferr
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("bench kv: stopped after %v: %w", elapsed.Round(time.Millisecond), err)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.Duration, res.DurationSec = elapsed.Round(time.Millisecond).String(), elapsed.Seconds()
	res.RequestsPerSec = float64(all.n) / elapsed.Seconds()
	res.MeanMs, res.P50Ms, res.P90Ms = ms(all.mean()), ms(all.quantile(0.5)), ms(all.quantile(0.9))
	res.P99Ms, res.P999Ms, res.MaxMs = ms(all.quantile(0.99)), ms(all.quantile(0.999)), ms(all.max)
	res.Errors = errs
	if firstErr != nil {
		res.FirstError = firstErr.Error()
	}
	return res, nil
}

// connectTimeout bounds the untimed set-up of each client.
const connectTimeout = 10 * time.Second

// connect sets every client up before the clock starts: a connection to
// each node (QUIC and TLS handshakes, the calls stream) and the range
// cache with the leaders. Otherwise the first requests of every client
// pay for them, which on a 2-core machine took ~150 ms for 16 clients
// and dominated p99.9 of a one-second run (etcd's benchmark pays a TCP
// connect). A node that does not answer is left to the timed requests.
func connect(ctx context.Context, clients []*kvclient.Client, o Options) {
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, connectTimeout)
			defer cancel()
			if _, err := c.Descriptors(cctx, nil, nil); err != nil {
				o.Logger.Debug("bench kv: connect: descriptors", "err", err)
			}
			for _, a := range c.Addrs() {
				if _, err := c.Ranges(cctx, a); err != nil {
					o.Logger.Debug("bench kv: connect", "addr", a, "err", err)
				}
			}
		})
	}
	wg.Wait()
}

// warm writes every key of the key space, untimed, for the get workload.
func warm(ctx context.Context, clients []*kvclient.Client, o Options, val []byte) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := range min(o.Clients, o.KeySpace) {
		c := clients[w%len(clients)]
		wg.Go(func() {
			k := make([]byte, o.KeySize)
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= o.KeySpace {
					return
				}
				key(k, i)
				if _, err := c.Put(ctx, k, val); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("bench kv: write key %d of the get key space: %w", i, err)
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
