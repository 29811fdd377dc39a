package engine_test

import (
	"bytes"
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd/internal/engine"
	"github.com/pleiades-db/pleiades/workflowd/workflow"
)

// scanHookKV runs each of its hooks once, before the first scan that
// starts with the hook's prefix after the test armed them (scans before
// that are the engine's own, not the test's).
type scanHookKV struct {
	*kvclient.Client
	armed atomic.Bool
	hooks []*scanHook
}

type scanHook struct {
	prefix []byte
	once   sync.Once
	run    func()
}

func (k *scanHookKV) Scan(ctx context.Context, start, end []byte, opts kvclient.ScanOptions) *kvclient.Iterator {
	if k.armed.Load() {
		for _, h := range k.hooks {
			if bytes.HasPrefix(start, h.prefix) {
				h.once.Do(h.run)
			}
		}
	}
	return k.Client.Scan(ctx, start, end, opts)
}

// listPrefix is the start of the list index's scan of status st.
func listPrefix(st workflowpb.Status) []byte {
	return append(append(append([]byte{}, kvpb.WorkflowPrefix...), "ls/"...), byte(st), '/')
}

// parkedWait starts an instance of waitDef on an engine reading through
// hk and returns once it waits, parked (no owner), for its event.
func parkedWait(t *testing.T, v *env, hk *scanHookKV) (*engine.Engine, string) {
	t.Helper()
	e := v.engine(1, []*workflow.Definition{waitDef()}, func(_ *engine.Config, d *engine.Deps) { d.KV = hk })
	id := start(t, e, "wait", `{"id": "o1"}`)
	waitFor(t, "subscribed", func() bool {
		rec, _ := e.Get(t.Context(), id)
		return len(rec.GetSubscriptions()) == 1 && rec.GetOwner() == 0
	})
	return e, id
}

// TestListStatusChangeDuringList: an instance that finishes between
// List's scan of running instances and its scan of finished ones is
// listed once, with its newer status.
func TestListStatusChangeDuringList(t *testing.T) {
	v := newEnv(t)
	ctx := t.Context()
	var e *engine.Engine
	var id string
	hk := &scanHookKV{Client: v.kv}
	hk.hooks = []*scanHook{{prefix: listPrefix(workflowpb.Status_STATUS_SUSPENDED), run: func() {
		if _, _, err := e.PublishEvent(ctx, "payment", "o1", []byte("1"), time.Time{}, ""); err != nil {
			t.Error(err)
			return
		}
		waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)
	}}}
	e, id = parkedWait(t, v, hk)
	hk.armed.Store(true)
	list, _, err := e.List(ctx, engine.ListFilter{Definition: "wait"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].GetId() != id || list[0].GetStatus() != workflowpb.Status_STATUS_COMPLETED {
		t.Fatalf("List = %v; want %s once, completed", list, id)
	}
}

// TestCountsStatusChangeDuringCounts: an instance whose status changes
// between Counts' scans of two statuses (once or twice) is counted once,
// under its newer status.
func TestCountsStatusChangeDuringCounts(t *testing.T) {
	const (
		running    = workflowpb.Status_STATUS_RUNNING
		suspended  = workflowpb.Status_STATUS_SUSPENDED
		completed  = workflowpb.Status_STATUS_COMPLETED
		terminated = workflowpb.Status_STATUS_TERMINATED
	)
	type change struct {
		before workflowpb.Status // the scan it comes before
		op     string            // "publish" (the instance completes), "suspend", "terminate"
		then   workflowpb.Status
	}
	for _, tc := range []struct {
		name    string
		changes []change
		want    map[workflowpb.Status]int
	}{
		{"nothing changes", nil, map[workflowpb.Status]int{running: 1}},
		{"completes after the running scan", []change{{suspended, "publish", completed}}, map[workflowpb.Status]int{completed: 1}},
		{"suspended after the running scan", []change{{suspended, "suspend", suspended}}, map[workflowpb.Status]int{suspended: 1}},
		{"suspended, then terminated", []change{{suspended, "suspend", suspended}, {terminated, "terminate", terminated}},
			map[workflowpb.Status]int{terminated: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newEnv(t)
			ctx := t.Context()
			var e *engine.Engine
			var id string
			hk := &scanHookKV{Client: v.kv}
			for _, c := range tc.changes {
				hk.hooks = append(hk.hooks, &scanHook{prefix: listPrefix(c.before), run: func() {
					var err error
					if c.op == "publish" {
						_, _, err = e.PublishEvent(ctx, "payment", "o1", []byte("1"), time.Time{}, "")
					} else {
						_, err = e.Control(ctx, id, c.op, "test")
					}
					if err != nil {
						t.Error(err)
						return
					}
					waitStatus(t, e, id, c.then)
				}})
			}
			e, id = parkedWait(t, v, hk)
			hk.armed.Store(true)
			got, err := e.Counts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hk.hooks {
				h.once.Do(func() { t.Errorf("no scan of %q", h.prefix) })
			}
			for st, n := range got {
				if n == 0 {
					delete(got, st)
				}
			}
			if !maps.Equal(got, tc.want) {
				t.Fatalf("Counts = %v; want %v", got, tc.want)
			}
		})
	}
}
