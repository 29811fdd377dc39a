package workflowd_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
	"github.com/pleiades-db/pleiades/workflowd"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	t     *testing.T
	srv   *workflowd.Server
	c     *workflowclient.Client
	admin string
	addr  string   // workflowd's bus address
	cb    *bus.Bus // the unlimited client's bus
	ca    daemontest.Issuer
	fc    *kvclienttest.Cluster
}

// newFixture starts a fake KV cluster, a workflowd on it with fast timers
// and a client of its host API.
func newFixture(t *testing.T, opts ...func(*workflowd.Config)) *fixture {
	t.Helper()
	ca := daemontest.CA(t)
	fc := kvclienttest.Start(t, kvclienttest.Options{Nodes: 1, CA: ca})
	rt := daemontest.NewUnstartedRuntime(t, workflowd.Name, ca, daemontest.Common(t))
	cfg := workflowd.DefaultConfig()
	cfg.RaftAddrs, cfg.NodeID = fc.Addrs(), rt.NodeID
	cfg.LeaseDuration, cfg.PollInterval, cfg.CountsInterval = time.Second, 20*time.Millisecond, 50*time.Millisecond
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := workflowd.New(cfg, workflowd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	client := daemontest.NewRuntimeWithCA(t, "client", ca, daemontest.Common(t))
	return &fixture{t: t, srv: srv, c: workflowclient.New(client.Bus, rt.Bus.Addr().String()), admin: rt.Admin.Addr().String(),
		addr: rt.Bus.Addr().String(), cb: client.Bus, ca: ca, fc: fc}
}

func (f *fixture) define(doc string) {
	f.t.Helper()
	if _, err := f.c.Define(f.t.Context(), []byte(doc)); err != nil {
		f.t.Fatalf("Define: %v", err)
	}
}

func (f *fixture) start(def, data string) string {
	f.t.Helper()
	r, err := f.c.Start(f.t.Context(), &workflowpb.StartRequest{Definition: def, Data: []byte(data)})
	if err != nil {
		f.t.Fatalf("Start(%s): %v", def, err)
	}
	return r.GetInstanceId()
}

func (f *fixture) wait(id string, want workflowpb.Status) *workflowpb.Instance {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var in *workflowpb.Instance
	for time.Now().Before(deadline) {
		var err error
		if in, err = f.c.Get(f.t.Context(), id); err != nil {
			f.t.Fatal(err)
		}
		if in.GetStatus() == want {
			return in
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.t.Fatalf("instance %s: %v (%q), active %v; want %v", id, in.GetStatus(), in.GetError(), in.GetActiveSteps(), want)
	return nil
}

func data(t *testing.T, in *workflowpb.Instance) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(in.GetData(), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLifecycle: workflowd goes through what every daemon's server must
// (daemontest.CheckLifecycle), serving its workflows view once ready.
func TestLifecycle(t *testing.T) {
	ca := daemontest.CA(t)
	fc := kvclienttest.Start(t, kvclienttest.Options{Nodes: 1, CA: ca})
	rt := daemontest.NewUnstartedRuntime(t, workflowd.Name, ca, daemontest.Common(t))
	cfg := workflowd.DefaultConfig()
	cfg.RaftAddrs, cfg.NodeID = fc.Addrs(), rt.NodeID
	srv, err := workflowd.New(cfg, workflowd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin})
	if err != nil {
		t.Fatal(err)
	}
	daemontest.CheckLifecycle(t, daemontest.Lifecycle{Runtime: rt, Service: srv, ReadyCheck: workflowd.ReadyCheck,
		Admin: map[string][]string{"/v1/workflows": {"counts"}, "/metrics": {"pleiades_workflowd_instances_started_total"}}})
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*workflowd.Config)
		ok   bool
	}{
		{"default", func(*workflowd.Config) {}, true},
		{"no node", func(c *workflowd.Config) { c.NodeID = 0 }, false},
		{"bad raft", func(c *workflowd.Config) { c.RaftAddrs = []string{"raftd"} }, false},
		{"no raft", func(c *workflowd.Config) { c.RaftAddrs = nil }, false},
		{"bad gossip", func(c *workflowd.Config) { c.GossipAddr = "" }, false},
		{"tiny lease", func(c *workflowd.Config) { c.LeaseDuration = time.Millisecond }, false},
		{"poll past lease", func(c *workflowd.Config) { c.PollInterval = time.Minute }, false},
		{"no runners", func(c *workflowd.Config) { c.MaxRunning = 0 }, false},
	} {
		c := workflowd.DefaultConfig()
		c.NodeID = 1
		tt.mod(&c)
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v; want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// TestHostAPI drives every host API method through the bus client.
func TestHostAPI(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.define(`
id: order
version: 1
steps:
  - name: reserve
    set: {reserved: 'true'}
  - name: paid
    wait: {event: '"paid"', key: 'data.id', output: payment}
  - name: done
    set: {total: 'data.payment.amount * 2'}
`)
	sub, err := f.c.Subscribe(ctx, &workflowpb.SubscribeRequest{Definition: "order"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	done, err := f.c.Subscribe(ctx, &workflowpb.SubscribeRequest{Types: []string{"completed"}})
	if err != nil {
		t.Fatal(err)
	}
	defer done.Close()
	st, err := f.c.Start(ctx, &workflowpb.StartRequest{Definition: "order", Data: []byte(`{"id": "o1"}`), IdempotencyKey: "req-1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.c.Start(ctx, &workflowpb.StartRequest{Definition: "order", Data: []byte(`{"id": "o1"}`), IdempotencyKey: "req-1"})
	if err != nil || again.GetInstanceId() != st.GetInstanceId() || !again.GetExisting() {
		t.Fatalf("second Start with the key = %v, %v; want the same instance, existing", again, err)
	}
	id := st.GetInstanceId()
	waitFor(t, "waiting for paid", func() bool {
		in, _ := f.c.Get(ctx, id)
		return len(in.GetWaiting()) == 1 && in.GetWaiting()[0] == "paid/o1"
	})
	if s, err := f.c.Suspend(ctx, id); err != nil || s != workflowpb.Status_STATUS_SUSPENDED {
		t.Fatalf("Suspend = %v, %v", s, err)
	}
	list, err := f.c.List(ctx, &workflowpb.ListRequest{Status: workflowpb.Status_STATUS_SUSPENDED})
	if err != nil || len(list.GetInstances()) != 1 || list.GetInstances()[0].GetId() != id {
		t.Fatalf("List(suspended) = %v, %v", list, err)
	}
	if _, err := f.c.Resume(ctx, id); err != nil {
		t.Fatal(err)
	}
	pe, err := f.c.PublishEvent(ctx, &workflowpb.PublishEventRequest{Name: "paid", Key: "o1", Data: []byte(`{"amount": 21}`)})
	if err != nil {
		t.Fatal(err)
	}
	in := f.wait(id, workflowpb.Status_STATUS_COMPLETED)
	if d := data(t, in); d["total"] != 42.0 || d["reserved"] != true {
		t.Errorf("data %v; want total 42, reserved", d)
	}
	if pe.GetWoken() != 1 {
		t.Errorf("event woke %d; want 1", pe.GetWoken())
	}
	// Lifecycle events arrived, in order, ending with completed.
	var types []string
	for len(types) == 0 || types[len(types)-1] != "completed" {
		ev, err := sub.Recv()
		if err != nil {
			t.Fatalf("Recv after %v: %v", types, err)
		}
		if ev.GetInstanceId() == id {
			types = append(types, ev.GetType())
		}
	}
	if strings.Join(types, " ") != "started step_started step_completed suspended resumed step_completed step_started step_completed completed" {
		t.Errorf("events %v", types)
	}
	if ev, err := done.Recv(); err != nil || ev.GetType() != "completed" || ev.GetInstanceId() != id {
		t.Errorf("first event of the completed-only stream = %v, %v", ev, err)
	}
	// Bad input, clear errors, nothing changed.
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"unknown definition", func() error { _, err := f.c.Start(ctx, &workflowpb.StartRequest{Definition: "nope"}); return err }(), bus.ErrNotFound},
		{"malformed data", func() error {
			_, err := f.c.Start(ctx, &workflowpb.StartRequest{Definition: "order", Data: []byte(`{"id": `)})
			return err
		}(), bus.ErrInvalidArgument},
		{"event for a finished instance", func() error {
			_, err := f.c.PublishEvent(ctx, &workflowpb.PublishEventRequest{Name: "paid", Key: "o1", InstanceId: id})
			return err
		}(), bus.ErrFailedPrecondition},
		{"resume a completed instance", func() error { _, err := f.c.Resume(ctx, id); return err }(), bus.ErrFailedPrecondition},
		{"get unknown", func() error { _, err := f.c.Get(ctx, "nope"); return err }(), bus.ErrNotFound},
		{"malformed document", func() error {
			_, err := f.c.Define(ctx, []byte("id: x\nversion: 1\nsteps:\n  - name: a\n    sett: {}\n"))
			return err
		}(), bus.ErrInvalidArgument},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: %v; want %v", tt.name, tt.err, tt.want)
		}
	}
	all, err := f.c.List(ctx, &workflowpb.ListRequest{})
	if err != nil || len(all.GetInstances()) != 1 {
		t.Errorf("List = %v, %v; want the one instance", all, err)
	}
	defs, err := f.c.Definitions(ctx)
	var ids []string
	for _, d := range defs {
		ids = append(ids, d.GetId())
	}
	// The defined document, and the built-in lifecycle workflows.
	if want := "order pleiades.decommission pleiades.rebalance pleiades.rereplicate"; err != nil || strings.Join(ids, " ") != want || defs[0].GetSteps() != 3 {
		t.Errorf("Definitions = %v, %v; want %s", defs, err, want)
	}

	// The admin view.
	var view workflowd.WorkflowsView
	getJSON(t, "http://"+f.admin+"/v1/workflows", &view)
	if view.Counts["completed"] != 1 || len(view.Instances) != 1 {
		t.Errorf("/v1/workflows = %+v", view)
	}
	var one map[string]any
	getJSON(t, "http://"+f.admin+"/v1/workflows/"+id, &one)
	if one["id"] != id {
		t.Errorf("/v1/workflows/%s = %v", id, one)
	}
	resp, err := http.Get("http://" + f.admin + "/v1/workflows/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown instance view: %d; want 404", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestListPaging(t *testing.T) {
	f := newFixture(t)
	f.define("id: noop\nversion: 1\nsteps:\n  - noop: true\n")
	var ids []string
	for range 7 {
		ids = append(ids, f.start("noop", `{}`))
	}
	for _, id := range ids {
		f.wait(id, workflowpb.Status_STATUS_COMPLETED)
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		r, err := f.c.List(t.Context(), &workflowpb.ListRequest{Limit: 3, PageToken: token, Definition: "noop"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range r.GetInstances() {
			got = append(got, s.GetId())
		}
		if token = r.GetNextPageToken(); token == "" {
			break
		}
		if pages > 5 {
			t.Fatal("too many pages")
		}
	}
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("paged list %v; want %v in creation order", got, ids)
	}
	r, err := f.c.List(t.Context(), &workflowpb.ListRequest{CreatedAfterUnixNano: time.Now().Add(time.Hour).UnixNano()})
	if err != nil || len(r.GetInstances()) != 0 {
		t.Errorf("List created after an hour from now = %v, %v", r, err)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, b)
	}
}

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
