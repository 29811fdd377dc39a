package workflowclient_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/wire"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake is a workflowd stand-in: each method records the request it got
// and answers from its table, or fails with NotFound for instance "gone".
type fake struct {
	mu  sync.Mutex
	got map[string]proto.Message
}

func (f *fake) last(method string) proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[method]
}

func unary[Req any, Resp proto.Message, PReq interface {
	*Req
	proto.Message
}](f *fake, b *bus.Bus, method string, resp func(PReq) Resp) {
	bus.HandleUnary(b, wire.ProtoWorkflow, method, func(_ context.Context, req PReq) (Resp, error) {
		f.mu.Lock()
		f.got[method] = req
		f.mu.Unlock()
		if g, ok := any(req).(interface{ GetInstanceId() string }); ok && g.GetInstanceId() == "gone" {
			var zero Resp
			return zero, bus.Errorf(bus.CodeNotFound, "workflow: instance gone not found")
		}
		return resp(req), nil
	})
}

func serve(t *testing.T) (*workflowclient.Client, *fake) {
	t.Helper()
	f := &fake{got: map[string]proto.Message{}}
	rt := daemontest.NewUnstartedRuntime(t, "workflowd", daemontest.CA(t), daemontest.Common(t))
	b := rt.Bus
	unary(f, b, workflowclient.MethodDefine, func(req *workflowpb.DefineRequest) *workflowpb.DefineResponse {
		return &workflowpb.DefineResponse{Id: string(req.GetDocument()), Version: 3}
	})
	unary(f, b, workflowclient.MethodDefinitions, func(*workflowpb.DefinitionsRequest) *workflowpb.DefinitionsResponse {
		return &workflowpb.DefinitionsResponse{Definitions: []*workflowpb.DefinitionInfo{{Id: "a"}, {Id: "b"}}}
	})
	unary(f, b, workflowclient.MethodStart, func(req *workflowpb.StartRequest) *workflowpb.StartResponse {
		return &workflowpb.StartResponse{InstanceId: "i-" + req.GetDefinition(), Existing: req.GetIdempotencyKey() != ""}
	})
	unary(f, b, workflowclient.MethodGet, func(req *workflowpb.GetRequest) *workflowpb.Instance {
		return &workflowpb.Instance{Id: req.GetInstanceId(), Status: workflowpb.Status_STATUS_RUNNING}
	})
	unary(f, b, workflowclient.MethodList, func(req *workflowpb.ListRequest) *workflowpb.ListResponse {
		return &workflowpb.ListResponse{Instances: []*workflowpb.InstanceSummary{{Id: "x", Definition: req.GetDefinition()}}, NextPageToken: "next"}
	})
	for method, st := range map[string]workflowpb.Status{
		workflowclient.MethodSuspend:   workflowpb.Status_STATUS_SUSPENDED,
		workflowclient.MethodResume:    workflowpb.Status_STATUS_RUNNING,
		workflowclient.MethodTerminate: workflowpb.Status_STATUS_TERMINATED,
	} {
		unary(f, b, method, func(*workflowpb.ControlRequest) *workflowpb.ControlResponse {
			return &workflowpb.ControlResponse{Status: st}
		})
	}
	unary(f, b, workflowclient.MethodPublishEvent, func(req *workflowpb.PublishEventRequest) *workflowpb.PublishEventResponse {
		return &workflowpb.PublishEventResponse{EventId: req.GetName() + "/" + req.GetKey(), Woken: 2}
	})
	unary(f, b, workflowclient.MethodDecommission, func(req *workflowpb.DecommissionRequest) *workflowpb.DecommissionResponse {
		return &workflowpb.DecommissionResponse{InstanceId: "d", Existing: req.GetCancel()}
	})
	unary(f, b, workflowclient.MethodNodes, func(*workflowpb.NodesRequest) *workflowpb.NodesResponse {
		return &workflowpb.NodesResponse{Nodes: []*workflowpb.NodeLifecycle{{NodeId: 4, Membership: "alive", Replicas: 9}}}
	})
	bus.HandleStream(b, wire.ProtoWorkflow, workflowclient.MethodSubscribe, func(_ context.Context, req *workflowpb.SubscribeRequest, send func(*workflowpb.LifecycleEvent) error) error {
		for _, typ := range []string{"started", "completed"} {
			if err := send(&workflowpb.LifecycleEvent{Type: typ, Definition: req.GetDefinition()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err := rt.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	client := daemontest.NewRuntime(t, "client")
	c := workflowclient.New(client.Bus, rt.Bus.Addr().String())
	if c.Addr() != rt.Bus.Addr().String() {
		t.Fatalf("Addr() = %s; want %s", c.Addr(), rt.Bus.Addr())
	}
	return c, f
}

// TestClientMethods: each method sends its request to its method and
// returns the answer.
func TestClientMethods(t *testing.T) {
	c, f := serve(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tests := []struct {
		method string
		call   func() (any, error)
		want   string // fmt of the result
		req    proto.Message
	}{
		{workflowclient.MethodDefine, func() (any, error) { r, err := c.Define(ctx, []byte("order")); return r.GetId(), err }, "order",
			&workflowpb.DefineRequest{Document: []byte("order")}},
		{workflowclient.MethodDefinitions, func() (any, error) { r, err := c.Definitions(ctx); return len(r), err }, "2", &workflowpb.DefinitionsRequest{}},
		{workflowclient.MethodStart, func() (any, error) {
			r, err := c.Start(ctx, &workflowpb.StartRequest{Definition: "order", IdempotencyKey: "k"})
			return r.GetInstanceId() + " " + map[bool]string{true: "existing"}[r.GetExisting()], err
		}, "i-order existing", &workflowpb.StartRequest{Definition: "order", IdempotencyKey: "k"}},
		{workflowclient.MethodGet, func() (any, error) { r, err := c.Get(ctx, "i1"); return r.GetStatus(), err }, "STATUS_RUNNING",
			&workflowpb.GetRequest{InstanceId: "i1"}},
		{workflowclient.MethodList, func() (any, error) {
			r, err := c.List(ctx, &workflowpb.ListRequest{Definition: "order", Limit: 5})
			return r.GetInstances()[0].GetDefinition() + " " + r.GetNextPageToken(), err
		}, "order next", &workflowpb.ListRequest{Definition: "order", Limit: 5}},
		{workflowclient.MethodSuspend, func() (any, error) { return c.Suspend(ctx, "i1") }, "STATUS_SUSPENDED", &workflowpb.ControlRequest{InstanceId: "i1"}},
		{workflowclient.MethodResume, func() (any, error) { return c.Resume(ctx, "i1") }, "STATUS_RUNNING", &workflowpb.ControlRequest{InstanceId: "i1"}},
		{workflowclient.MethodTerminate, func() (any, error) { return c.Terminate(ctx, "i1", "done") }, "STATUS_TERMINATED",
			&workflowpb.ControlRequest{InstanceId: "i1", Reason: "done"}},
		{workflowclient.MethodPublishEvent, func() (any, error) {
			r, err := c.PublishEvent(ctx, &workflowpb.PublishEventRequest{Name: "paid", Key: "o1"})
			return r.GetEventId(), err
		}, "paid/o1", &workflowpb.PublishEventRequest{Name: "paid", Key: "o1"}},
		{workflowclient.MethodDecommission, func() (any, error) {
			r, err := c.Decommission(ctx, 4)
			return r.GetInstanceId() + " " + map[bool]string{true: "existing"}[r.GetExisting()], err
		}, "d ", &workflowpb.DecommissionRequest{NodeId: 4}},
		{workflowclient.MethodDecommission, func() (any, error) { return c.CancelDecommission(ctx, 4) }, "d",
			&workflowpb.DecommissionRequest{NodeId: 4, Cancel: true}},
		{workflowclient.MethodNodes, func() (any, error) {
			r, err := c.Nodes(ctx)
			if len(r) != 1 {
				return len(r), err
			}
			return r[0].GetMembership(), err
		}, "alive", &workflowpb.NodesRequest{}},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatal(err)
			}
			if s := fmt.Sprint(got); s != tt.want {
				t.Errorf("result %q; want %q", s, tt.want)
			}
			if !proto.Equal(f.last(tt.method), tt.req) {
				t.Errorf("server got %v; want %v", f.last(tt.method), tt.req)
			}
		})
	}
}

// TestClientErrors: a server's error reaches the caller as the bus error
// it is, named by the method.
func TestClientErrors(t *testing.T) {
	c, _ := serve(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for name, call := range map[string]func() error{
		workflowclient.MethodGet:       func() error { _, err := c.Get(ctx, "gone"); return err },
		workflowclient.MethodTerminate: func() error { _, err := c.Terminate(ctx, "gone", ""); return err },
	} {
		err := call()
		if !errors.Is(err, bus.ErrNotFound) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s of an unknown instance: %v; want NotFound naming the method", name, err)
		}
	}
}

// TestSubscribe: the stream delivers the server's events, then io.EOF.
func TestSubscribe(t *testing.T) {
	c, _ := serve(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := c.Subscribe(ctx, &workflowpb.SubscribeRequest{Definition: "order"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []string
	for {
		ev, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.GetType()+":"+ev.GetDefinition())
	}
	if want := "started:order completed:order"; strings.Join(got, " ") != want {
		t.Errorf("events %q; want %q", got, want)
	}
}
