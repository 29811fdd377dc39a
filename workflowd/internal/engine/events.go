package engine

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd/internal/flow"
)

// Subscription receives the lifecycle events of the instances this engine
// runs. Events are dropped (and counted) when C is full.
type Subscription struct {
	// C delivers the events; it is closed by Close or when the engine
	// stops.
	C          chan *workflowpb.LifecycleEvent
	e          *Engine
	instance   string
	definition string
	types      map[string]bool
	closed     bool
}

// Subscribe returns a subscription filtered by instance, definition and
// event types (empty: any), with a buffer of n events.
func (e *Engine) Subscribe(instance, definition string, types []string, n int) *Subscription {
	s := &Subscription{C: make(chan *workflowpb.LifecycleEvent, n), e: e, instance: instance, definition: definition}
	if len(types) > 0 {
		s.types = map[string]bool{}
		for _, t := range types {
			s.types[t] = true
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.stopped {
		s.closeLocked()
		return s
	}
	e.mu.subs[s] = struct{}{}
	return s
}

// Close ends the subscription; it is idempotent.
func (s *Subscription) Close() {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	s.closeLocked()
}

func (s *Subscription) closeLocked() {
	if !s.closed {
		s.closed = true
		close(s.C)
		delete(s.e.mu.subs, s)
	}
}

// emit sends a lifecycle event to the matching subscriptions.
func (e *Engine) emit(rec *workflowpb.InstanceRecord, typ, step string, ptr, attempt uint32, errMsg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.mu.subs) == 0 {
		return
	}
	want := false
	for s := range e.mu.subs {
		want = want || s.types == nil || s.types[typ]
	}
	if !want {
		return
	}
	ev := &workflowpb.LifecycleEvent{Type: typ, InstanceId: rec.GetId(), Definition: rec.GetDefinition(), Version: rec.GetVersion(),
		Step: step, Pointer: ptr, Attempt: attempt, Error: errMsg, TimeUnixNano: e.now().UnixNano(), Node: e.cfg.NodeID, Epoch: rec.GetEpoch()}
	for s := range e.mu.subs {
		if (s.instance != "" && s.instance != ev.InstanceId) || (s.definition != "" && s.definition != ev.Definition) || (s.types != nil && !s.types[typ]) {
			continue
		}
		select {
		case s.C <- ev:
		default:
			e.m.dropped.Inc()
		}
	}
}

// publish is flow.Services' PublishEvent.
func (e *Engine) publish(ctx context.Context, name, key string, data []byte) error {
	_, _, err := e.PublishEvent(ctx, name, key, data, time.Time{}, "")
	return err
}

// services adapts the engine to flow.Services for the steps of def,
// within its key prefixes.
type services struct {
	e   *Engine
	def *flow.Def
}

func (s services) KV() flow.KV {
	if s.e.userKV == nil || len(s.def.KeyPrefixes) == 0 {
		return s.e.userKV
	}
	return scopedKV{kv: s.e.userKV, def: s.def}
}

func (s services) HTTP() *http.Client { return s.e.http }

func (s services) PublishEvent(ctx context.Context, name, key string, data []byte) error {
	if !s.def.Allows([]byte(name)) {
		return fmt.Errorf("%w: event %q is outside definition %q's key prefixes", ErrDenied, name, s.def.ID)
	}
	return s.e.publish(ctx, name, key, data)
}

// scopedKV is the user KV limited to a definition's key prefixes.
type scopedKV struct {
	kv  flow.KV
	def *flow.Def
}

func (k scopedKV) check(key []byte) error {
	if !k.def.Allows(key) {
		return fmt.Errorf("%w: key %q is outside definition %q's key prefixes", ErrDenied, key, k.def.ID)
	}
	return nil
}

func (k scopedKV) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	if err := k.check(key); err != nil {
		return nil, false, err
	}
	return k.kv.Get(ctx, key)
}

func (k scopedKV) Put(ctx context.Context, key, value []byte) error {
	if err := k.check(key); err != nil {
		return err
	}
	return k.kv.Put(ctx, key, value)
}

func (k scopedKV) Delete(ctx context.Context, key []byte) (bool, error) {
	if err := k.check(key); err != nil {
		return false, err
	}
	return k.kv.Delete(ctx, key)
}

func (k scopedKV) CompareAndSwap(ctx context.Context, key []byte, expectAbsent bool, expected, value []byte) (bool, error) {
	if err := k.check(key); err != nil {
		return false, err
	}
	return k.kv.CompareAndSwap(ctx, key, expectAbsent, expected, value)
}

// Metrics are the engine's Prometheus metrics.
type Metrics struct {
	started     prometheus.Counter
	steps       prometheus.Counter
	stepLatency prometheus.Histogram
	retries     prometheus.Counter
	failures    prometheus.Counter
	takeovers   prometheus.Counter
	fenced      prometheus.Counter
	events      prometheus.Counter
	dropped     prometheus.Counter
	owned       prometheus.Gauge
	finished    *prometheus.CounterVec
	purged      *prometheus.CounterVec
	// Instances is set by the server from the list index.
	Instances *prometheus.GaugeVec

	mu sync.Mutex
}

// NewMetrics registers the engine's metrics with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		started:     prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_workflowd_instances_started_total", Help: "Instances started through this workflowd."}),
		steps:       prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_workflowd_steps_completed_total", Help: "Steps completed by this workflowd."}),
		stepLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pleiades_workflowd_step_duration_seconds", Help: "Time from a task step's start to its result.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}),
		retries:     prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_workflowd_step_retries_total", Help: "Step failures followed by a retry."}),
		failures:    prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_workflowd_step_failures_total", Help: "Step failures (retried or not)."}),
		takeovers:   prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_workflowd_lease_takeovers_total", Help: "Instances claimed from another owner whose lease had expired."}),
		fenced:      prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_workflowd_leases_lost_total", Help: "Instances this workflowd lost to another owner (its writes refused)."}),
		events:      prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_workflowd_events_published_total", Help: "Events published through this workflowd."}),
		dropped:     prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_workflowd_lifecycle_events_dropped_total", Help: "Lifecycle events dropped for a slow subscriber."}),
		owned:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "pleiades_workflowd_instances_owned", Help: "Instances this workflowd runs now (leased)."}),
		finished:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pleiades_workflowd_transitions_total", Help: "Instance status transitions made by this workflowd."}, []string{"to"}),
		purged:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pleiades_workflowd_purged_total", Help: "Finished instances (kind=instance) and old events (kind=event) deleted after their retention."}, []string{"kind"}),
		Instances:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pleiades_workflowd_instances", Help: "Instances in the cluster by status (from the list index, refreshed periodically)."}, []string{"status"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.started, m.steps, m.stepLatency, m.retries, m.failures, m.takeovers, m.fenced, m.events, m.dropped, m.owned, m.finished, m.purged, m.Instances} {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *Metrics) transition(to string) { m.finished.WithLabelValues(to).Inc() }
