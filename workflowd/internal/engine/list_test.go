package engine_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
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

// change is a status change a test makes while List or Counts runs.
type change struct {
	before workflowpb.Status // the scan it comes before
	op     string            // "publish" (the instance completes), "suspend", "resume", "terminate"
	then   workflowpb.Status
}

// apply makes the change on instance id and waits for its status.
func (c change) apply(t *testing.T, e *engine.Engine, id string) {
	var err error
	if c.op == "publish" {
		_, _, err = e.PublishEvent(t.Context(), "payment", "o1", []byte("1"), time.Time{}, "")
	} else {
		_, err = e.Control(t.Context(), id, c.op, "test")
	}
	if err != nil {
		t.Error(err)
		return
	}
	waitStatus(t, e, id, c.then)
}

// hookChanges arms one scan hook per change and returns a check that
// each ran.
func hookChanges(t *testing.T, hk *scanHookKV, e **engine.Engine, id *string, changes []change) func() {
	for _, c := range changes {
		hk.hooks = append(hk.hooks, &scanHook{prefix: listPrefix(c.before), run: func() { c.apply(t, *e, *id) }})
	}
	return func() {
		for _, h := range hk.hooks {
			h.once.Do(func() { t.Errorf("no scan of %q", h.prefix) })
		}
	}
}

const (
	running    = workflowpb.Status_STATUS_RUNNING
	suspended  = workflowpb.Status_STATUS_SUSPENDED
	completed  = workflowpb.Status_STATUS_COMPLETED
	terminated = workflowpb.Status_STATUS_TERMINATED
)

// statusChangeCases are instances whose status changes between List's or
// Counts' scans of two statuses: each is found once, under its status
// when the call began (setup, if any, runs before it).
type statusChangeCase struct {
	name    string
	setup   []change
	changes []change
	want    workflowpb.Status
}

var statusChangeCases = []statusChangeCase{
	{"nothing changes", nil, nil, running},
	{"completes after the running scan", nil, []change{{suspended, "publish", completed}}, running},
	{"suspended after the running scan", nil, []change{{suspended, "suspend", suspended}}, running},
	{"suspended, then terminated", nil, []change{{suspended, "suspend", suspended}, {terminated, "terminate", terminated}}, running},
	{"resumed after the running scan", []change{{op: "suspend", then: suspended}}, []change{{suspended, "resume", running}}, suspended},
}

// armedStatusChange parks an instance, applies tc's setup and arms the
// scan hook that makes tc's changes between the status scans; ran checks
// that they all happened.
func armedStatusChange(t *testing.T, tc statusChangeCase) (e *engine.Engine, id string, ran func()) {
	t.Helper()
	v := newEnv(t)
	hk := &scanHookKV{Client: v.kv}
	ran = hookChanges(t, hk, &e, &id, tc.changes)
	e, id = parkedWait(t, v, hk)
	for _, c := range tc.setup {
		c.apply(t, e, id)
	}
	hk.armed.Store(true)
	return e, id, ran
}

// TestListStatusChangeDuringList: an instance whose status changes
// between List's scans of two statuses is listed once, with its status
// when List began.
func TestListStatusChangeDuringList(t *testing.T) {
	for _, tc := range statusChangeCases {
		t.Run(tc.name, func(t *testing.T) {
			e, id, ran := armedStatusChange(t, tc)
			list, next, err := e.List(t.Context(), engine.ListFilter{Definition: "wait"})
			if err != nil {
				t.Fatal(err)
			}
			ran()
			if len(list) != 1 || list[0].GetId() != id || list[0].GetStatus() != tc.want || next != "" {
				t.Fatalf("List = %v, %q; want %s once, %s, no next page", list, next, id, tc.want)
			}
		})
	}
}

// TestCountsStatusChangeDuringCounts: an instance whose status changes
// between Counts' scans of two statuses (once or twice) is counted once,
// under its status when Counts began.
func TestCountsStatusChangeDuringCounts(t *testing.T) {
	for _, tc := range statusChangeCases {
		t.Run(tc.name, func(t *testing.T) {
			e, _, ran := armedStatusChange(t, tc)
			got, err := e.Counts(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			ran()
			for st, n := range got {
				if n == 0 {
					delete(got, st)
				}
			}
			if want := map[workflowpb.Status]int{tc.want: 1}; !maps.Equal(got, want) {
				t.Fatalf("Counts = %v; want %v", got, want)
			}
		})
	}
}

// TestListPagesOneSnapshot: the pages of one listing read the snapshot of
// its first page, so an instance whose status changes between two pages
// is on exactly one of them.
func TestListPagesOneSnapshot(t *testing.T) {
	v := newEnv(t)
	e, first := parkedWait(t, v, &scanHookKV{Client: v.kv})
	second := start(t, e, "wait", `{"id": "o2"}`)
	waitFor(t, "both parked", func() bool {
		rec, _ := e.Get(t.Context(), second)
		return len(rec.GetSubscriptions()) == 1 && rec.GetOwner() == 0
	})
	f := engine.ListFilter{Definition: "wait", Limit: 1}
	page, next, err := e.List(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || page[0].GetId() != first || next == "" {
		t.Fatalf("first page = %v, %q; want %s and a next page", page, next, first)
	}
	// The listed instance moves to a status scanned later.
	change{op: "suspend", then: suspended}.apply(t, e, first)
	got := map[string]workflowpb.Status{first: page[0].GetStatus()}
	for pages := 1; next != ""; pages++ {
		if pages > 3 {
			t.Fatalf("more than 3 pages")
		}
		f.PageToken = next
		if page, next, err = e.List(t.Context(), f); err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			if _, dup := got[s.GetId()]; dup {
				t.Fatalf("%s listed twice (%v then %v)", s.GetId(), got[s.GetId()], s.GetStatus())
			}
			got[s.GetId()] = s.GetStatus()
		}
	}
	if want := map[string]workflowpb.Status{first: running, second: running}; !maps.Equal(got, want) {
		t.Fatalf("listed %v; want %v", got, want)
	}
	// A new listing sees the change.
	if page, _, err = e.List(t.Context(), engine.ListFilter{Status: suspended}); err != nil || len(page) != 1 || page[0].GetId() != first {
		t.Fatalf("suspended = %v, %v; want %s", page, err, first)
	}
}

// TestListPageTokens: a token whose snapshot is older than the version
// retention window is refused as a failed precondition, a malformed one
// as invalid; neither lists anything.
func TestListPageTokens(t *testing.T) {
	v := newEnv(t)
	e, _ := parkedWait(t, v, &scanHookKV{Client: v.kv})
	start(t, e, "wait", `{"id": "o2"}`)
	_, next, err := e.List(t.Context(), engine.ListFilter{Limit: 1})
	if err != nil || next == "" {
		t.Fatalf("List = %q, %v; want a next page", next, err)
	}
	k, _, ok := strings.Cut(next, "@")
	if !ok {
		t.Fatalf("token %q has no snapshot timestamp", next)
	}
	old := hlc.Timestamp{WallTime: time.Now().Add(-kvclienttest.VersionRetention - time.Hour).UnixNano()}
	for _, tc := range []struct {
		token string
		want  error
	}{
		{k + "@" + hex.EncodeToString(old.AppendBytes(nil)), engine.ErrPrecondition},
		{"zz", engine.ErrInvalid},
		{"01", engine.ErrInvalid},
		{k + "@", engine.ErrInvalid},
		{k + "@0102", engine.ErrInvalid},
		{k + "@" + hex.EncodeToString(hlc.Timestamp{}.AppendBytes(nil)), engine.ErrInvalid},
		{k + "@" + hex.EncodeToString(hlc.Timestamp{WallTime: time.Now().Add(time.Hour).UnixNano()}.AppendBytes(nil)), engine.ErrInvalid},
	} {
		list, next, err := e.List(t.Context(), engine.ListFilter{Limit: 1, PageToken: tc.token})
		if !errors.Is(err, tc.want) || list != nil || next != "" {
			t.Errorf("List(token %q) = %v, %q, %v; want %v", tc.token, list, next, err, tc.want)
		}
	}
	// A token without a timestamp (an older workflowd's) still pages on.
	if list, _, err := e.List(t.Context(), engine.ListFilter{Limit: 1, PageToken: k}); err != nil || len(list) != 1 {
		t.Errorf("List(token %q) = %v, %v; want one instance", k, list, err)
	}
}
