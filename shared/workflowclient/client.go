// Package workflowclient is the Go client of workflowd's host API
// (wire.ProtoWorkflow, messages in shared/proto/workflowpb) over the bus.
//
//	c := workflowclient.New(b, "127.0.0.1:7405")
//	def, err := c.Define(ctx, yamlBytes)
//	st, err := c.Start(ctx, &workflowpb.StartRequest{Definition: "order", Data: []byte(`{"id":"o1"}`)})
//	inst, err := c.Get(ctx, st.GetInstanceId())
//	_, err = c.PublishEvent(ctx, &workflowpb.PublishEventRequest{Name: "paid", Key: "o1"})
//	w, err := c.Subscribe(ctx, &workflowpb.SubscribeRequest{Definition: "order"})
//	for { ev, err := w.Recv(); ... }
//
// Every workflowd serves every instance (instances live in the KV), so any
// workflowd's address will do, except for Subscribe, which streams the
// lifecycle events of the instances the workflowd it is sent to runs.
// Errors are bus errors: errors.Is(err, bus.ErrNotFound) for an unknown
// definition or instance, bus.ErrInvalidArgument for malformed input,
// bus.ErrFailedPrecondition for an operation the instance's status
// forbids. A Client is safe for concurrent use.
package workflowclient

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Method names on wire.ProtoWorkflow.
const (
	MethodDefine       = "Define"
	MethodDefinitions  = "Definitions"
	MethodStart        = "Start"
	MethodGet          = "Get"
	MethodList         = "List"
	MethodSuspend      = "Suspend"
	MethodResume       = "Resume"
	MethodTerminate    = "Terminate"
	MethodPublishEvent = "PublishEvent"
	MethodSubscribe    = "Subscribe"
	// MethodDecommission and MethodNodes are the cluster lifecycle's
	// admin methods (admin and node certificates only).
	MethodDecommission = "Decommission"
	MethodNodes        = "Nodes"
)

// Client calls one workflowd.
type Client struct {
	b    *bus.Bus
	addr string
}

// New returns a client of the workflowd at addr, calling through b.
func New(b *bus.Bus, addr string) *Client { return &Client{b: b, addr: addr} }

// Addr returns the workflowd's address.
func (c *Client) Addr() string { return c.addr }

func (c *Client) call(ctx context.Context, method string, req, resp proto.Message) error {
	if err := c.b.Call(ctx, c.addr, wire.ProtoWorkflow, method, req, resp); err != nil {
		return fmt.Errorf("workflowclient: %s: %w", method, err)
	}
	return nil
}

// Define registers a definition document (YAML or JSON).
func (c *Client) Define(ctx context.Context, doc []byte) (*workflowpb.DefineResponse, error) {
	var resp workflowpb.DefineResponse
	return &resp, c.call(ctx, MethodDefine, &workflowpb.DefineRequest{Document: doc}, &resp)
}

// Definitions lists the registered definitions.
func (c *Client) Definitions(ctx context.Context) ([]*workflowpb.DefinitionInfo, error) {
	var resp workflowpb.DefinitionsResponse
	if err := c.call(ctx, MethodDefinitions, &workflowpb.DefinitionsRequest{}, &resp); err != nil {
		return nil, err
	}
	return resp.GetDefinitions(), nil
}

// Start starts an instance.
func (c *Client) Start(ctx context.Context, req *workflowpb.StartRequest) (*workflowpb.StartResponse, error) {
	var resp workflowpb.StartResponse
	return &resp, c.call(ctx, MethodStart, req, &resp)
}

// Get returns an instance.
func (c *Client) Get(ctx context.Context, id string) (*workflowpb.Instance, error) {
	var resp workflowpb.Instance
	return &resp, c.call(ctx, MethodGet, &workflowpb.GetRequest{InstanceId: id}, &resp)
}

// List returns one page of instances.
func (c *Client) List(ctx context.Context, req *workflowpb.ListRequest) (*workflowpb.ListResponse, error) {
	var resp workflowpb.ListResponse
	return &resp, c.call(ctx, MethodList, req, &resp)
}

// Suspend suspends a running instance (its owner, if it runs now,
// applies it after the step in flight).
func (c *Client) Suspend(ctx context.Context, id string) (workflowpb.Status, error) {
	return c.control(ctx, MethodSuspend, id, "")
}

// Resume resumes a suspended instance.
func (c *Client) Resume(ctx context.Context, id string) (workflowpb.Status, error) {
	return c.control(ctx, MethodResume, id, "")
}

// Terminate stops an instance for good; reason is recorded as its error.
func (c *Client) Terminate(ctx context.Context, id, reason string) (workflowpb.Status, error) {
	return c.control(ctx, MethodTerminate, id, reason)
}

func (c *Client) control(ctx context.Context, method, id, reason string) (workflowpb.Status, error) {
	var resp workflowpb.ControlResponse
	err := c.call(ctx, method, &workflowpb.ControlRequest{InstanceId: id, Reason: reason}, &resp)
	return resp.GetStatus(), err
}

// PublishEvent publishes an event.
func (c *Client) PublishEvent(ctx context.Context, req *workflowpb.PublishEventRequest) (*workflowpb.PublishEventResponse, error) {
	var resp workflowpb.PublishEventResponse
	return &resp, c.call(ctx, MethodPublishEvent, req, &resp)
}

// Stream delivers lifecycle events.
type Stream struct{ s *bus.ClientStream }

// Subscribe opens a stream of the lifecycle events of the instances the
// workflowd runs. Close it (or cancel ctx) to stop.
func (c *Client) Subscribe(ctx context.Context, req *workflowpb.SubscribeRequest) (*Stream, error) {
	s, err := c.b.Stream(ctx, c.addr, wire.ProtoWorkflow, MethodSubscribe, req)
	if err != nil {
		return nil, fmt.Errorf("workflowclient: Subscribe: %w", err)
	}
	return &Stream{s: s}, nil
}

// Recv returns the next event; io.EOF when the server ends the stream.
func (s *Stream) Recv() (*workflowpb.LifecycleEvent, error) {
	var ev workflowpb.LifecycleEvent
	if err := s.s.Recv(&ev); err != nil {
		return nil, err
	}
	return &ev, nil
}

// Close ends the subscription.
func (s *Stream) Close() error { return s.s.Close() }

// Decommission starts moving every replica off a node (the built-in
// decommission workflow), or returns the decommission already under way.
// An unknown node, or one whose removal would leave fewer live nodes than
// a range has replicas, is refused and nothing changes.
func (c *Client) Decommission(ctx context.Context, nodeID uint64) (*workflowpb.DecommissionResponse, error) {
	var resp workflowpb.DecommissionResponse
	return &resp, c.call(ctx, MethodDecommission, &workflowpb.DecommissionRequest{NodeId: nodeID}, &resp)
}

// CancelDecommission stops a node's decommission under way (its
// workflow is terminated; the replicas moved off stay moved) and returns
// its instance id. Refused when none is under way.
func (c *Client) CancelDecommission(ctx context.Context, nodeID uint64) (string, error) {
	var resp workflowpb.DecommissionResponse
	if err := c.call(ctx, MethodDecommission, &workflowpb.DecommissionRequest{NodeId: nodeID, Cancel: true}, &resp); err != nil {
		return "", err
	}
	return resp.GetInstanceId(), nil
}

// Nodes lists the cluster's nodes as the lifecycle workflows see them:
// membership, replicas named by descriptors, decommission state.
func (c *Client) Nodes(ctx context.Context) ([]*workflowpb.NodeLifecycle, error) {
	var resp workflowpb.NodesResponse
	if err := c.call(ctx, MethodNodes, &workflowpb.NodesRequest{}, &resp); err != nil {
		return nil, err
	}
	return resp.GetNodes(), nil
}
