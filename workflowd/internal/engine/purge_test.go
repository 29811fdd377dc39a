package engine_test

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd/internal/engine"
	"github.com/pleiades-db/pleiades/workflowd/workflow"
)

// TestPurge: a finished instance older than the retention is deleted with
// its list entry and idempotency key, and old events with it; running
// instances, recent finished ones and recent events stay.
func TestPurge(t *testing.T) {
	v := newEnv(t)
	ctx := t.Context()
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	b := workflow.New[counter]("seq", 1)
	b.Then("s", logStep("s"))
	seq := b.MustBuild()
	e := v.engine(1, []*workflow.Definition{seq, waitDef()}, func(c *engine.Config, d *engine.Deps) {
		c.Retention, c.EventRetention, c.PurgeInterval = time.Hour, time.Hour, 20*time.Millisecond
		d.Now = now
	})
	startKey := func(key string) (string, bool) {
		id, _, existing, err := e.Start(ctx, "seq", engine.StartOptions{Data: []byte(`{}`), IdempotencyKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return id, existing
	}
	old, _ := startKey("k1")
	waitStatus(t, e, old, workflowpb.Status_STATUS_COMPLETED)
	waiting := start(t, e, "wait", `{"id": "o1"}`)
	waitFor(t, "parked", func() bool {
		rec, _ := e.Get(ctx, waiting)
		return len(rec.GetSubscriptions()) == 1 && rec.GetOwner() == 0
	})
	if _, _, err := e.PublishEvent(ctx, "payment", "nobody", []byte("1"), time.Time{}, ""); err != nil {
		t.Fatal(err)
	}
	events := func() int {
		p := append(append([]byte{}, kvpb.WorkflowPrefix...), "ev/"...)
		kvs, err := v.kv.Scan(ctx, p, kvpb.PrefixEnd(p), kvclient.ScanOptions{KeysOnly: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		return len(kvs)
	}
	// Several purge rounds within the retention delete nothing.
	time.Sleep(150 * time.Millisecond)
	if _, err := e.Get(ctx, old); err != nil {
		t.Fatalf("instance purged within its retention: %v", err)
	}
	if n := events(); n != 1 {
		t.Fatalf("%d events within their retention; want 1", n)
	}

	skew.Store(int64(2 * time.Hour))
	recent, _ := startKey("k2")
	waitStatus(t, e, recent, workflowpb.Status_STATUS_COMPLETED)
	waitFor(t, "the old instance purged", func() bool {
		_, err := e.Get(ctx, old)
		return errors.Is(err, engine.ErrNotFound)
	})
	waitFor(t, "the old event purged", func() bool { return events() == 0 })
	list, _, err := e.List(ctx, engine.ListFilter{Status: workflowpb.Status_STATUS_COMPLETED})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range list {
		ids = append(ids, s.GetId())
	}
	if !slices.Equal(ids, []string{recent}) {
		t.Errorf("completed instances listed %v; want only the recent %s", ids, recent)
	}
	if rec, err := e.Get(ctx, waiting); err != nil || rec.GetStatus() != workflowpb.Status_STATUS_RUNNING {
		t.Errorf("waiting instance: %v, %v; want it kept, running", rec.GetStatus(), err)
	}
	// The purged instance's idempotency key is free again; the recent
	// one's still names it.
	if id, existing := startKey("k1"); existing || id == old {
		t.Errorf("Start(k1) after the purge = %s, existing %v; want a new instance", id, existing)
	}
	if id, existing := startKey("k2"); !existing || id != recent {
		t.Errorf("Start(k2) = %s, existing %v; want the recent instance %s", id, existing, recent)
	}
	// The waiting instance still takes its event.
	if _, woken, err := e.PublishEvent(ctx, "payment", "o1", []byte("2"), time.Time{}, ""); err != nil || woken != 1 {
		t.Fatalf("PublishEvent = %d woken, %v", woken, err)
	}
	waitStatus(t, e, waiting, workflowpb.Status_STATUS_COMPLETED)
}
