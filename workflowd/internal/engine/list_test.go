package engine_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/workflowd/internal/engine"
	"github.com/pleiades-db/pleiades/workflowd/workflow"
)

// scanHookKV runs hook (once) before the first scan that starts with
// prefix.
type scanHookKV struct {
	*kvclient.Client
	prefix []byte
	once   sync.Once
	hook   func()
}

func (k *scanHookKV) Scan(ctx context.Context, start, end []byte, opts kvclient.ScanOptions) *kvclient.Iterator {
	if bytes.HasPrefix(start, k.prefix) {
		k.once.Do(k.hook)
	}
	return k.Client.Scan(ctx, start, end, opts)
}

// TestListStatusChangeDuringList: an instance that finishes between
// List's scan of running instances and its scan of finished ones is
// listed once, with its newer status.
func TestListStatusChangeDuringList(t *testing.T) {
	v := newEnv(t)
	ctx := t.Context()
	listPrefix := append(append([]byte{}, kvpb.WorkflowPrefix...), "ls/"...)
	armed := make(chan struct{})
	var e *engine.Engine
	var id string
	hk := &scanHookKV{Client: v.kv, prefix: append(listPrefix, byte(workflowpb.Status_STATUS_SUSPENDED), '/')}
	hk.hook = func() {
		select {
		case <-armed:
		default:
			return // a scan before the test's List
		}
		if _, _, err := e.PublishEvent(ctx, "payment", "o1", []byte("1"), time.Time{}, ""); err != nil {
			t.Error(err)
			return
		}
		waitStatus(t, e, id, workflowpb.Status_STATUS_COMPLETED)
	}
	e = v.engine(1, []*workflow.Definition{waitDef()}, func(_ *engine.Config, d *engine.Deps) { d.KV = hk })
	id = start(t, e, "wait", `{"id": "o1"}`)
	waitFor(t, "subscribed", func() bool {
		rec, _ := e.Get(ctx, id)
		return len(rec.GetSubscriptions()) == 1 && rec.GetOwner() == 0
	})
	close(armed)
	list, _, err := e.List(ctx, engine.ListFilter{Definition: "wait"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].GetId() != id || list[0].GetStatus() != workflowpb.Status_STATUS_COMPLETED {
		t.Fatalf("List = %v; want %s once, completed", list, id)
	}
}
