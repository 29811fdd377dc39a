package engine_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd/internal/engine"
	"github.com/pleiades-db/pleiades/workflowd/workflow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a fake KV cluster and the clients engines share.
type env struct {
	t  *testing.T
	kv *kvclient.Client
	fc *kvclienttest.Cluster
}

func newEnv(t *testing.T) *env {
	t.Helper()
	fc := kvclienttest.Start(t, kvclienttest.Options{Nodes: 1})
	rt := daemontest.NewRuntime(t, "workflowd")
	kv, err := kvclient.New(t.Context(), kvclient.Config{Addrs: fc.Addrs(), Bus: rt.Bus, System: true, AttemptTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Close(context.Background()) })
	return &env{t: t, kv: kv, fc: fc}
}

type engOpt func(*engine.Config, *engine.Deps)

// engine starts an engine with fast timers, stopped at cleanup.
func (v *env) engine(node uint64, defs []*workflow.Definition, opts ...engOpt) *engine.Engine {
	v.t.Helper()
	cfg := engine.Config{NodeID: node, LeaseDuration: time.Second, PollInterval: 20 * time.Millisecond, HoldFor: 200 * time.Millisecond, ClockSkew: time.Millisecond}
	deps := engine.Deps{KV: v.kv, Logger: slog.New(slog.NewTextHandler(testWriter{v.t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", node)}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	e, err := engine.New(cfg, deps)
	if err != nil {
		v.t.Fatal(err)
	}
	for _, d := range defs {
		if err := e.Register(d.Compiled()); err != nil {
			v.t.Fatal(err)
		}
	}
	e.StartWorkers()
	v.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			v.t.Error(err)
		}
	})
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// waitStatus polls until the instance has status want (or fails the test
// at the deadline) and returns its record.
func waitStatus(t *testing.T, e *engine.Engine, id string, want workflowpb.Status) *workflowpb.InstanceRecord {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var rec *workflowpb.InstanceRecord
	for time.Now().Before(deadline) {
		var err error
		rec, err = e.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.GetStatus() == want {
			return rec
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("instance %s: status %v, error %q; want %v (history %v)", id, rec.GetStatus(), rec.GetError(), want, rec.GetHistory())
	return nil
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// trace records step executions in order, safe for concurrent steps.
type trace struct {
	mu  sync.Mutex
	log []string
}

func (tr *trace) add(s string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.log = append(tr.log, s)
}

func (tr *trace) get() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.log...)
}

func start(t *testing.T, e *engine.Engine, def string, data string) string {
	t.Helper()
	id, _, _, err := e.Start(t.Context(), def, engine.StartOptions{Data: []byte(data)})
	if err != nil {
		t.Fatalf("Start(%s): %v", def, err)
	}
	return id
}
