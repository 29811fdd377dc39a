// Package workflows is `pleiades bench workflows`: the throughput and
// latency of workflowd on a running cluster, next to the raw KV put rate
// measured in the same run, and the memory one workflowd needs for many
// instances waiting on events.
//
// Throughput: a 10-step document workflow (each step a data mapping, so
// each step costs its durable write and nothing else) is defined, then for
// each concurrency level N, N starters each start an instance, wait for it
// to complete (from the workflowds' lifecycle event streams) and start the
// next, until Instances instances have completed. Reported: instances
// started and completed per second, steps completed per second, the
// latency from one step's completion to the next's (p50, p99) and an
// instance's start-to-completion time; then, at the same concurrency, raw
// KV puts per second (package bench/kv) for comparison.
//
// Waiting: Waiting instances of a definition that waits for an event are
// started through the first workflowd; once all are parked the
// workflowd's resident memory (its process_resident_memory_bytes metric)
// is read, then one event per instance completes them all.
package workflows

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pleiades-db/pleiades/services/internal/bench/kv"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
)

// Options configure a run.
type Options struct {
	// WorkflowAddrs are workflowd bus addresses; starters spread over
	// them. Required.
	WorkflowAddrs []string
	// AdminAddrs are the same workflowds' admin addresses (for the
	// memory figure; the first is read). Optional.
	AdminAddrs []string
	// RaftAddrs are raftd bus addresses for the KV comparison. Required.
	RaftAddrs []string
	// TLS is the client endpoints' mutual TLS configuration. Required.
	TLS *tls.Config
	// Concurrency lists the numbers of concurrent starters. Default 1, 64.
	Concurrency []int
	// Instances is the number of instances completed per level. Default
	// 200.
	Instances int
	// KVTotal is the number of puts of each KV comparison. Default
	// 10 * Instances.
	KVTotal int
	// Waiting is the number of instances of the memory measurement; 0
	// skips it.
	Waiting int
	// Logger receives progress. Default: discard.
	Logger *slog.Logger
}

// StepsPerInstance is the benchmark workflow's number of steps.
const StepsPerInstance = 10

// Level is the figures of one concurrency level.
type Level struct {
	Starters           int     `json:"starters"`
	Instances          int     `json:"instances"`
	DurationSec        float64 `json:"duration_s"`
	StartedPerSec      float64 `json:"instances_started_per_sec"`
	CompletedPerSec    float64 `json:"instances_completed_per_sec"`
	StepsPerSec        float64 `json:"steps_per_sec"`
	StepToStepP50Ms    float64 `json:"step_to_step_p50_ms"`
	StepToStepP99Ms    float64 `json:"step_to_step_p99_ms"`
	InstanceP50Ms      float64 `json:"instance_p50_ms"`
	InstanceP99Ms      float64 `json:"instance_p99_ms"`
	Errors             int     `json:"errors"`
	FirstError         string  `json:"first_error,omitempty"`
	KVPutsPerSec       float64 `json:"kv_puts_per_sec"`
	KVPutP50Ms         float64 `json:"kv_put_p50_ms"`
	StepsToPutsPercent float64 `json:"steps_to_puts_percent"`
}

// Result is a run's figures.
type Result struct {
	Levels         []Level `json:"levels"`
	Waiting        int     `json:"waiting,omitempty"`
	WaitingRSSMiB  float64 `json:"waiting_rss_mib,omitempty"`
	BaselineRSSMiB float64 `json:"baseline_rss_mib,omitempty"`
	WaitingStartS  float64 `json:"waiting_start_s,omitempty"`
	WaitingDrainS  float64 `json:"waiting_drain_s,omitempty"`
}

func (o Options) withDefaults() Options {
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{1, 64}
	}
	if o.Instances == 0 {
		o.Instances = 200
	}
	if o.KVTotal == 0 {
		o.KVTotal = 10 * o.Instances
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Validate checks the options.
func (o Options) Validate() error {
	switch {
	case len(o.WorkflowAddrs) == 0:
		return errors.New("bench workflows: no workflowd address")
	case len(o.RaftAddrs) == 0:
		return errors.New("bench workflows: no raftd address")
	case o.Instances < 0, o.KVTotal < 0, o.Waiting < 0:
		return errors.New("bench workflows: instances, kv total and waiting must not be negative")
	}
	for _, c := range o.Concurrency {
		if c < 1 {
			return fmt.Errorf("bench workflows: concurrency %d below 1", c)
		}
	}
	return nil
}

func tenSteps() []byte {
	var b strings.Builder
	b.WriteString("id: bench-tensteps\nversion: 1\ndescription: pleiades bench workflows (10 mapping steps)\nsteps:\n")
	for i := 1; i <= StepsPerInstance; i++ {
		fmt.Fprintf(&b, "  - name: s%d\n    set: {n: 'data.n + 1'}\n", i)
	}
	return []byte(b.String())
}

const waiter = "id: bench-waiter\nversion: 1\ndescription: pleiades bench workflows (waits for one event)\nsteps:\n" +
	"  - name: wait\n    wait: {event: '\"bench-go\"', key: 'instance'}\n"

// watcher follows the lifecycle streams of every workflowd: step
// completions and instance completions.
type watcher struct {
	mu       sync.Mutex
	lastStep map[string]time.Time
	gaps     []time.Duration
	done     map[string]chan struct{}
	early    map[string]bool
}

func (w *watcher) expect(id string) chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	if w.early[id] {
		delete(w.early, id)
		close(ch)
		return ch
	}
	w.done[id] = ch
	return ch
}

func (w *watcher) event(ev *workflowpb.LifecycleEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	id := ev.GetInstanceId()
	t := time.Unix(0, ev.GetTimeUnixNano())
	switch ev.GetType() {
	case "started":
		w.lastStep[id] = t
	case "step_completed":
		if last, ok := w.lastStep[id]; ok {
			w.gaps = append(w.gaps, t.Sub(last))
		}
		w.lastStep[id] = t
	case "completed", "failed", "terminated", "compensated":
		delete(w.lastStep, id)
		if ch, ok := w.done[id]; ok {
			close(ch)
			delete(w.done, id)
		} else {
			w.early[id] = true
		}
	}
}

func (w *watcher) takeGaps() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := w.gaps
	w.gaps = nil
	return g
}

func quantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return float64(s[i]) / 1e6
}

// Run runs the benchmark.
func Run(ctx context.Context, o Options) (Result, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	if o.TLS == nil {
		return Result{}, errors.New("bench workflows: no TLS configuration")
	}
	b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: o.TLS}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return Result{}, err
	}
	if err := b.Start(ctx); err != nil {
		return Result{}, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = b.Stop(sctx)
	}()
	var clients []*workflowclient.Client
	for _, a := range o.WorkflowAddrs {
		clients = append(clients, workflowclient.New(b, a))
	}
	for _, doc := range [][]byte{tenSteps(), []byte(waiter)} {
		if _, err := clients[0].Define(ctx, doc); err != nil {
			return Result{}, fmt.Errorf("define: %w", err)
		}
	}
	w := &watcher{lastStep: map[string]time.Time{}, done: map[string]chan struct{}{}, early: map[string]bool{}}
	sctx, stopStreams := context.WithCancel(ctx)
	var streams sync.WaitGroup
	defer func() {
		stopStreams()
		streams.Wait()
	}()
	for _, c := range clients {
		s, err := c.Subscribe(sctx, &workflowpb.SubscribeRequest{Definition: "bench-tensteps",
			Types: []string{"started", "step_completed", "completed", "failed", "terminated", "compensated"}})
		if err != nil {
			return Result{}, fmt.Errorf("subscribe to %s: %w", c.Addr(), err)
		}
		streams.Add(1)
		go func() {
			defer streams.Done()
			defer s.Close()
			for {
				ev, err := s.Recv()
				if err != nil {
					return
				}
				w.event(ev)
			}
		}()
	}
	// The stream is open once it delivers; a throwaway instance checks.
	if err := warm(ctx, clients, w); err != nil {
		return Result{}, err
	}
	var res Result
	for _, n := range o.Concurrency {
		lv, err := level(ctx, o, clients, w, n)
		if err != nil {
			return res, err
		}
		o.Logger.Info("workflows level done", slog.Int("starters", n), slog.Float64("steps_per_sec", lv.StepsPerSec))
		kr, err := kv.Run(ctx, kv.Options{Addrs: o.RaftAddrs, TLS: o.TLS, Clients: n, Conns: 1, Total: o.KVTotal, KeySize: 16, ValSize: 64, Logger: o.Logger})
		if err != nil {
			return res, fmt.Errorf("kv puts at %d clients: %w", n, err)
		}
		lv.KVPutsPerSec, lv.KVPutP50Ms = kr.RequestsPerSec, kr.P50Ms
		if kr.RequestsPerSec > 0 {
			lv.StepsToPutsPercent = 100 * lv.StepsPerSec / kr.RequestsPerSec
		}
		res.Levels = append(res.Levels, lv)
	}
	if o.Waiting > 0 {
		if err := waiting(ctx, o, clients[0], &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

func warm(ctx context.Context, clients []*workflowclient.Client, w *watcher) error {
	for _, c := range clients {
		r, err := c.Start(ctx, &workflowpb.StartRequest{Definition: "bench-tensteps", Data: []byte(`{"n": 0}`)})
		if err != nil {
			return fmt.Errorf("start: %w", err)
		}
		select {
		case <-w.expect(r.GetInstanceId()):
		case <-time.After(30 * time.Second):
			return fmt.Errorf("no completion event from %s within 30s", c.Addr())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.takeGaps()
	return nil
}

// level runs n starters until o.Instances instances have completed.
func level(ctx context.Context, o Options, clients []*workflowclient.Client, w *watcher, n int) (Level, error) {
	lv := Level{Starters: n, Instances: o.Instances}
	var (
		next      atomic.Int64
		mu        sync.Mutex
		durations []time.Duration
		startLat  []time.Duration
		errs      int
		firstErr  error
		wg        sync.WaitGroup
	)
	begin := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[i%len(clients)]
			for next.Add(1) <= int64(o.Instances) {
				t0 := time.Now()
				r, err := c.Start(ctx, &workflowpb.StartRequest{Definition: "bench-tensteps", Data: []byte(`{"n": 0}`)})
				t1 := time.Now()
				if err == nil {
					select {
					case <-w.expect(r.GetInstanceId()):
					case <-time.After(time.Minute):
						err = fmt.Errorf("instance %s did not complete within a minute", r.GetInstanceId())
					case <-ctx.Done():
						err = ctx.Err()
					}
				}
				mu.Lock()
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					durations = append(durations, time.Since(t0))
					startLat = append(startLat, t1.Sub(t0))
				}
				mu.Unlock()
				if ctx.Err() != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(begin)
	if ctx.Err() != nil {
		return lv, ctx.Err()
	}
	done := len(durations)
	lv.DurationSec = el.Seconds()
	lv.StartedPerSec = float64(done+errs) / el.Seconds()
	lv.CompletedPerSec = float64(done) / el.Seconds()
	lv.StepsPerSec = float64(done*StepsPerInstance) / el.Seconds()
	gaps := w.takeGaps()
	lv.StepToStepP50Ms, lv.StepToStepP99Ms = quantile(gaps, 0.5), quantile(gaps, 0.99)
	lv.InstanceP50Ms, lv.InstanceP99Ms = quantile(durations, 0.5), quantile(durations, 0.99)
	lv.Errors = errs
	if firstErr != nil {
		lv.FirstError = firstErr.Error()
	}
	return lv, nil
}

// rssMiB reads a workflowd's resident memory from its /metrics.
func rssMiB(ctx context.Context, admin string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_resident_memory_bytes "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f / (1 << 20), err
		}
	}
	return 0, fmt.Errorf("%s/metrics has no process_resident_memory_bytes", admin)
}

// waiting starts o.Waiting waiting instances through c, measures the
// workflowd's memory once they are parked, then completes them.
func waiting(ctx context.Context, o Options, c *workflowclient.Client, res *Result) error {
	res.Waiting = o.Waiting
	admin := ""
	if len(o.AdminAddrs) > 0 {
		admin = o.AdminAddrs[0]
	}
	if admin != "" {
		if m, err := rssMiB(ctx, admin); err == nil {
			res.BaselineRSSMiB = m
		}
	}
	ids := make([]string, o.Waiting)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	begin := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(o.Waiting) || ctx.Err() != nil {
					return
				}
				r, err := c.Start(ctx, &workflowpb.StartRequest{Definition: "bench-waiter"})
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				ids[i] = r.GetInstanceId()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("start waiting instances: %w", firstErr)
	}
	res.WaitingStartS = time.Since(begin).Seconds()
	o.Logger.Info("waiting instances started", slog.Int("n", o.Waiting), slog.Float64("seconds", res.WaitingStartS))
	// Parked: every instance's lease given up. Sample a few.
	for _, i := range []int{0, o.Waiting / 2, o.Waiting - 1} {
		for {
			in, err := c.Get(ctx, ids[i])
			if err != nil {
				return err
			}
			if in.GetOwner() == 0 && len(in.GetWaiting()) == 1 {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if admin != "" {
		m, err := rssMiB(ctx, admin)
		if err != nil {
			return err
		}
		res.WaitingRSSMiB = m
	}
	begin = time.Now()
	next.Store(0)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(o.Waiting) || ctx.Err() != nil {
					return
				}
				if _, err := c.PublishEvent(ctx, &workflowpb.PublishEventRequest{Name: "bench-go", Key: ids[i]}); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("complete waiting instances: %w", firstErr)
	}
	last := ids[len(ids)-1]
	for {
		in, err := c.Get(ctx, last)
		if err != nil {
			return err
		}
		if in.GetStatus() == workflowpb.Status_STATUS_COMPLETED {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	res.WaitingDrainS = time.Since(begin).Seconds()
	return nil
}
