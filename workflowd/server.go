package workflowd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/wire"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
	"github.com/pleiades-db/pleiades/workflowd/internal/document"
	"github.com/pleiades-db/pleiades/workflowd/internal/engine"
	"github.com/pleiades-db/pleiades/workflowd/internal/lifecycle"
	"github.com/pleiades-db/pleiades/workflowd/workflow"
)

// Name is the daemon's name.
const Name = "workflowd"

// Default addresses (see the ports table).
const (
	DefaultBusAddr    = "127.0.0.1:7405"
	DefaultAdminAddr  = "127.0.0.1:7505"
	DefaultRaftAddr   = "127.0.0.1:7402"
	DefaultGossipAddr = "127.0.0.1:7403"
)

// ReadyCheck is the name of the readiness check the server registers.
const ReadyCheck = Name

// Config configures the workflow server.
type Config struct {
	// RaftAddrs are bus addresses of raftds (the KV holding workflow
	// state); the node's own first. Default 127.0.0.1:7402.
	RaftAddrs []string
	// GossipAddr is the bus address of the node's gossipd (membership,
	// for the lifecycle workflows). Default 127.0.0.1:7403.
	GossipAddr string
	// NodeID identifies this workflowd as an instance owner. Required
	// (the daemon runtime's node id).
	NodeID uint64
	// LeaseDuration: how long a claim on an instance lasts unrenewed; a
	// dead owner's instances are taken over after it. Default 10s.
	LeaseDuration time.Duration
	// PollInterval: how often the runnable and timer indexes are
	// scanned (the precision of parked timers). Default 1s.
	PollInterval time.Duration
	// MaxRunning caps the instances run at once. Default 1024.
	MaxRunning int
	// CountsInterval: how often the instances-by-status gauge is
	// recomputed from the list index. Default 30s.
	CountsInterval time.Duration
	// MaxClockOffset is the cluster's max clock offset, added to a lease
	// before another owner takes it. Default 500ms.
	MaxClockOffset time.Duration
	// HistoryLen is how many recent step records an instance keeps (in
	// its record, so each costs bytes on every step's write). Default 16.
	HistoryLen int
	// Retention: how long a finished instance is kept after its end
	// before it is deleted (with its idempotency key). Negative: for
	// ever. Default 7 days.
	Retention time.Duration
	// EventRetention: how long a published event is kept after its
	// effective time. Negative: for ever. Default 7 days.
	EventRetention time.Duration
	// PurgeInterval: how often finished instances and old events are
	// looked for. Default 10m.
	PurgeInterval time.Duration
	// HTTPDeny are the networks built-in HTTP steps may not connect to
	// (checked on the resolved address of every connection, redirects
	// included). Default DefaultHTTPDeny (loopback, unspecified,
	// link-local); empty allows every address.
	HTTPDeny []netip.Prefix
	// DeadNodeTimeout: how long a node must stay dead in gossip before
	// the re-replication workflow replaces its replicas. Default 5m.
	DeadNodeTimeout time.Duration
	// LifecycleRetry: how long a lifecycle workflow that cannot move a
	// replica (no live node to take it, a failed change) waits before it
	// tries again. Default 5s.
	LifecycleRetry time.Duration
	// RebalanceInterval: how often replica counts are compared for
	// rebalancing; 0 turns rebalancing off. Default 0.
	RebalanceInterval time.Duration
	// RebalanceThreshold: a replica moves when the fullest and the
	// emptiest live node differ by more replicas than this. Default 2.
	RebalanceThreshold int
	// MoveConcurrency: how many ranges a re-replication or decommission
	// moves at once (each a replica change sending a snapshot). Default 4.
	MoveConcurrency int
}

// DefaultConfig returns the production configuration (NodeID unset).
func DefaultConfig() Config {
	return Config{RaftAddrs: []string{DefaultRaftAddr}, GossipAddr: DefaultGossipAddr, LeaseDuration: 10 * time.Second,
		PollInterval: time.Second, MaxRunning: 1024, CountsInterval: 30 * time.Second, MaxClockOffset: 500 * time.Millisecond, HistoryLen: 16,
		Retention: 7 * 24 * time.Hour, EventRetention: 7 * 24 * time.Hour, PurgeInterval: 10 * time.Minute,
		HTTPDeny: DefaultHTTPDeny(), DeadNodeTimeout: 5 * time.Minute, LifecycleRetry: 5 * time.Second, RebalanceThreshold: 2, MoveConcurrency: 4}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if len(c.RaftAddrs) == 0 {
		return errors.New("workflowd: RaftAddrs is empty")
	}
	for _, a := range c.RaftAddrs {
		if err := config.ValidateAddr(a); err != nil {
			return fmt.Errorf("workflowd: RaftAddrs %q: %w", a, err)
		}
	}
	if err := config.ValidateAddr(c.GossipAddr); err != nil {
		return fmt.Errorf("workflowd: GossipAddr %q: %w", c.GossipAddr, err)
	}
	switch {
	case c.NodeID == 0:
		return errors.New("workflowd: NodeID is required")
	case c.LeaseDuration < 100*time.Millisecond:
		return fmt.Errorf("workflowd: LeaseDuration %v is below 100ms", c.LeaseDuration)
	case c.PollInterval <= 0 || c.PollInterval > c.LeaseDuration:
		return fmt.Errorf("workflowd: PollInterval %v must be positive and at most LeaseDuration", c.PollInterval)
	case c.MaxRunning < 1:
		return fmt.Errorf("workflowd: MaxRunning %d is below 1", c.MaxRunning)
	case c.Retention == 0 || c.EventRetention == 0:
		return fmt.Errorf("workflowd: a Retention or EventRetention of 0 would delete at once: give a duration, or a negative one to keep for ever")
	case c.PurgeInterval <= 0:
		return fmt.Errorf("workflowd: PurgeInterval %v must be positive", c.PurgeInterval)
	case c.CountsInterval <= 0:
		return fmt.Errorf("workflowd: CountsInterval %v must be positive", c.CountsInterval)
	case c.MaxClockOffset < 0:
		return fmt.Errorf("workflowd: MaxClockOffset %v is negative", c.MaxClockOffset)
	case c.HistoryLen < 0:
		return fmt.Errorf("workflowd: HistoryLen %d is negative", c.HistoryLen)
	case c.DeadNodeTimeout <= 0:
		return fmt.Errorf("workflowd: DeadNodeTimeout %v must be positive", c.DeadNodeTimeout)
	case c.LifecycleRetry <= 0:
		return fmt.Errorf("workflowd: LifecycleRetry %v must be positive", c.LifecycleRetry)
	case c.RebalanceInterval < 0 || c.RebalanceThreshold < 1:
		return fmt.Errorf("workflowd: RebalanceInterval %v must not be negative and RebalanceThreshold %d must be at least 1", c.RebalanceInterval, c.RebalanceThreshold)
	case c.MoveConcurrency < 1:
		return fmt.Errorf("workflowd: MoveConcurrency %d is below 1", c.MoveConcurrency)
	}
	return nil
}

// Deps are the server's injected dependencies.
type Deps struct {
	// Logger is the daemon's logger. Required.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Bus is the daemon's bus endpoint: the host API is served on it and
	// the KV is reached through it. Required.
	Bus *bus.Bus
	// Admin receives the readiness check and /v1/workflows. Required.
	Admin *admin.Server
	// Definitions are Go definitions to register (see package workflow).
	Definitions []*workflow.Definition
	// Membership is where the lifecycle workflows read gossip
	// membership; nil: the gossipd at Config.GossipAddr.
	Membership lifecycle.Membership
	// Knobs are test hooks; nil in production.
	Knobs *engine.Knobs
}

// Server is the workflow daemon.
type Server struct {
	cfg    Config
	log    *slog.Logger
	eng    *engine.Engine
	kv     *kvclient.Client
	userKV *kvclient.Client
	m      *engine.Metrics
	lc     *lifecycle.Manager
	ready  chan struct{}
	errc   chan error
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		started, stopped bool
	}
}

// New validates cfg, builds the engine, registers the host API on
// deps.Bus and the readiness check and views on deps.Admin, and returns
// an unstarted server.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil || deps.Bus == nil || deps.Admin == nil {
		return nil, errors.New("workflowd: Deps.Logger, Bus and Admin are required")
	}
	s := &Server{cfg: cfg, log: deps.Logger, ready: make(chan struct{}), errc: make(chan error, 1)}
	var err error
	s.kv, err = kvclient.New(context.Background(), kvclient.Config{Addrs: cfg.RaftAddrs, Bus: deps.Bus, System: true, Logger: deps.Logger})
	if err != nil {
		return nil, fmt.Errorf("workflowd: KV client: %w", err)
	}
	s.userKV, err = kvclient.New(context.Background(), kvclient.Config{Addrs: cfg.RaftAddrs, Bus: deps.Bus, Logger: deps.Logger})
	if err != nil {
		return nil, fmt.Errorf("workflowd: KV client: %w", err)
	}
	s.m = engine.NewMetrics(deps.Registerer)
	s.eng, err = engine.New(engine.Config{NodeID: cfg.NodeID, LeaseDuration: cfg.LeaseDuration, PollInterval: cfg.PollInterval,
		MaxRunning: cfg.MaxRunning, ClockSkew: cfg.MaxClockOffset, HistoryLen: cfg.HistoryLen,
		Retention: cfg.Retention, EventRetention: cfg.EventRetention, PurgeInterval: cfg.PurgeInterval},
		engine.Deps{KV: s.kv, UserKV: document.KV{C: s.userKV}, HTTP: egressClient(cfg.HTTPDeny, 30*time.Second), Logger: deps.Logger, Metrics: s.m, Documents: document.Compile, Knobs: deps.Knobs})
	if err != nil {
		return nil, fmt.Errorf("workflowd: %w", err)
	}
	mem := deps.Membership
	if mem == nil {
		mem = gossipclient.New(deps.Bus, cfg.GossipAddr)
	}
	s.lc = lifecycle.New(lifecycle.Config{DeadNodeTimeout: cfg.DeadNodeTimeout, RetryInterval: cfg.LifecycleRetry,
		RebalanceInterval: cfg.RebalanceInterval, RebalanceThreshold: cfg.RebalanceThreshold, MoveConcurrency: cfg.MoveConcurrency}, s.kv, mem, engineStarter{s.eng}, deps.Logger)
	for _, d := range append(s.lc.Definitions(), deps.Definitions...) {
		if err := s.eng.Register(d.Compiled()); err != nil {
			return nil, fmt.Errorf("workflowd: %w", err)
		}
	}
	s.register(deps.Bus)
	deps.Admin.AddReadyCheck(ReadyCheck, s.readyCheck)
	deps.Admin.SetAddress("raft", cfg.RaftAddrs[0])
	deps.Admin.SetAddress("gossip", cfg.GossipAddr)
	deps.Admin.Handle("/v1/workflows", admin.JSON(s.workflowsView))
	deps.Admin.Handle("/v1/workflows/", admin.JSON(s.instanceView))
	return s, nil
}

// Register adds a Go definition (before or after Start).
func (s *Server) Register(d *workflow.Definition) error { return s.eng.Register(d.Compiled()) }

func (s *Server) readyCheck(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.mu.stopped:
		return errors.New("stopped")
	case !s.mu.started:
		return errors.New("not started")
	}
	return nil
}

// Start starts the engine's pollers and the status counter; it does not
// block.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.started || s.mu.stopped {
		return errors.New("workflowd: already started or stopped")
	}
	s.mu.started = true
	s.eng.StartWorkers()
	cctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.countLoop(cctx)
	}()
	go func() {
		defer s.wg.Done()
		s.lc.Run(cctx)
	}()
	close(s.ready)
	s.log.Info("workflow server started", slog.Any("raft_addrs", s.cfg.RaftAddrs), slog.Duration("lease", s.cfg.LeaseDuration),
		slog.Duration("dead_node_timeout", s.cfg.DeadNodeTimeout))
	return nil
}

// countLoop refreshes the instances-by-status gauge until ctx ends.
func (s *Server) countLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CountsInterval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CountsInterval)
		counts, err := s.eng.Counts(cctx)
		cancel()
		if err == nil {
			for st, name := range workflowpb.Status_name {
				if st != 0 {
					s.m.Instances.WithLabelValues(statusLabel(name)).Set(float64(counts[workflowpb.Status(st)]))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func statusLabel(name string) string { return strings.ToLower(strings.TrimPrefix(name, "STATUS_")) }

// Ready is closed once the server has started.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err delivers a fatal failure after Start.
func (s *Server) Err() <-chan error { return s.errc }

// Stop stops the engine (each running instance is handed back, so
// another workflowd takes it at once); it is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.mu.stopped {
		s.mu.Unlock()
		return nil
	}
	s.mu.stopped = true
	started := s.mu.started
	s.mu.Unlock()
	var errs []error
	if err := s.eng.Stop(ctx); err != nil {
		errs = append(errs, err)
	}
	if started {
		s.cancel()
		s.wg.Wait()
	}
	for _, c := range []*kvclient.Client{s.kv, s.userKV} {
		if err := c.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// wireErr maps engine errors to bus codes.
func wireErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, engine.ErrNotFound), errors.Is(err, lifecycle.ErrNotFound):
		return bus.Errorf(bus.CodeNotFound, "%v", err)
	case errors.Is(err, engine.ErrInvalid), errors.Is(err, lifecycle.ErrInvalid):
		return bus.Errorf(bus.CodeInvalidArgument, "%v", err)
	case errors.Is(err, engine.ErrPrecondition), errors.Is(err, lifecycle.ErrPrecondition):
		return bus.Errorf(bus.CodeFailedPrecondition, "%v", err)
	case errors.Is(err, engine.ErrDenied):
		return &bus.Error{Code: bus.CodePermissionDenied, Reason: bus.ReasonPermissionDenied, Message: err.Error()}
	}
	return err
}

// register installs the workflow protocol on b; its authorization is
// rules (authz.go).
func (s *Server) register(b *bus.Bus) {
	p := wire.ProtoWorkflow
	b.Authorize(p, rules())
	bus.HandleUnary(b, p, workflowclient.MethodDefine, func(ctx context.Context, req *workflowpb.DefineRequest) (*workflowpb.DefineResponse, error) {
		d, unchanged, err := s.eng.Define(ctx, req.GetDocument(), callerScope(ctx).Prefixes)
		if err != nil {
			return nil, wireErr(err)
		}
		return &workflowpb.DefineResponse{Id: d.ID, Version: d.Version, Unchanged: unchanged}, nil
	})
	bus.HandleUnary(b, p, workflowclient.MethodDefinitions, func(ctx context.Context, _ *workflowpb.DefinitionsRequest) (*workflowpb.DefinitionsResponse, error) {
		defs, err := s.eng.Definitions(ctx)
		sc := callerScope(ctx)
		defs = slices.DeleteFunc(defs, func(d *workflowpb.DefinitionInfo) bool { return !sc.AllowsKey([]byte(d.GetId())) })
		return &workflowpb.DefinitionsResponse{Definitions: defs}, wireErr(err)
	})
	bus.HandleUnary(b, p, workflowclient.MethodStart, func(ctx context.Context, req *workflowpb.StartRequest) (*workflowpb.StartResponse, error) {
		if strings.HasPrefix(req.GetDefinition(), lifecycle.Reserved) {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "definition %q is one of the cluster's own lifecycle workflows: workflowd starts them (pleiades node decommission for a decommission)", req.GetDefinition())
		}
		if err := allowDefinition(ctx, req.GetDefinition()); err != nil {
			return nil, err
		}
		id, ver, existing, err := s.eng.Start(ctx, req.GetDefinition(), engine.StartOptions{Version: req.GetVersion(), Data: req.GetData(), IdempotencyKey: req.GetIdempotencyKey()})
		if err != nil {
			return nil, wireErr(err)
		}
		return &workflowpb.StartResponse{InstanceId: id, Existing: existing, Version: ver}, nil
	})
	bus.HandleUnary(b, p, workflowclient.MethodGet, func(ctx context.Context, req *workflowpb.GetRequest) (*workflowpb.Instance, error) {
		rec, err := s.eng.Get(ctx, req.GetInstanceId())
		if err != nil {
			return nil, wireErr(err)
		}
		if err := allowDefinition(ctx, rec.GetDefinition()); err != nil {
			return nil, err
		}
		v := View(rec)
		v.ActiveSteps = s.eng.ActiveSteps(ctx, rec)
		return v, nil
	})
	bus.HandleUnary(b, p, workflowclient.MethodList, func(ctx context.Context, req *workflowpb.ListRequest) (*workflowpb.ListResponse, error) {
		sc := callerScope(ctx)
		if req.GetDefinition() != "" {
			if err := allowDefinition(ctx, req.GetDefinition()); err != nil {
				return nil, err
			}
		} else if len(sc.Prefixes) > 0 {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "workflow: a client limited to key prefixes lists one definition's instances (set the definition)")
		}
		list, next, err := s.eng.List(ctx, engine.ListFilter{Status: req.GetStatus(), Definition: req.GetDefinition(),
			CreatedAfter: req.GetCreatedAfterUnixNano(), Before: req.GetCreatedBeforeUnixNano(), Limit: int(req.GetLimit()), PageToken: req.GetPageToken()})
		if err != nil {
			return nil, wireErr(err)
		}
		return &workflowpb.ListResponse{Instances: list, NextPageToken: next}, nil
	})
	control := func(op string) func(context.Context, *workflowpb.ControlRequest) (*workflowpb.ControlResponse, error) {
		return func(ctx context.Context, req *workflowpb.ControlRequest) (*workflowpb.ControlResponse, error) {
			if err := s.authorizeLifecycle(ctx, p, op, req.GetInstanceId()); err != nil {
				return nil, err
			}
			if err := s.allowInstance(ctx, req.GetInstanceId()); err != nil {
				return nil, err
			}
			st, err := s.eng.Control(ctx, req.GetInstanceId(), op, req.GetReason())
			if err != nil {
				return nil, wireErr(err)
			}
			return &workflowpb.ControlResponse{Status: st}, nil
		}
	}
	bus.HandleUnary(b, p, workflowclient.MethodSuspend, control("suspend"))
	bus.HandleUnary(b, p, workflowclient.MethodResume, control("resume"))
	bus.HandleUnary(b, p, workflowclient.MethodTerminate, control("terminate"))
	bus.HandleUnary(b, p, workflowclient.MethodPublishEvent, func(ctx context.Context, req *workflowpb.PublishEventRequest) (*workflowpb.PublishEventResponse, error) {
		if !callerScope(ctx).AllowsKey([]byte(req.GetName())) {
			return nil, &bus.Error{Code: bus.CodePermissionDenied, Reason: bus.ReasonPermissionDenied,
				Message: fmt.Sprintf("workflow: event %q is outside the certificate's key prefixes", req.GetName())}
		}
		if req.GetInstanceId() != "" {
			if err := s.allowInstance(ctx, req.GetInstanceId()); err != nil {
				return nil, err
			}
		}
		var at time.Time
		if req.GetEffectiveUnixNano() != 0 {
			at = time.Unix(0, req.GetEffectiveUnixNano())
		}
		id, woken, err := s.eng.PublishEvent(ctx, req.GetName(), req.GetKey(), req.GetData(), at, req.GetInstanceId())
		if err != nil {
			return nil, wireErr(err)
		}
		return &workflowpb.PublishEventResponse{EventId: id, Woken: uint32(woken)}, nil
	})
	bus.HandleUnary(b, p, workflowclient.MethodDecommission, func(ctx context.Context, req *workflowpb.DecommissionRequest) (*workflowpb.DecommissionResponse, error) {
		if req.GetCancel() {
			id, err := s.lc.CancelDecommission(ctx, req.GetNodeId())
			if err != nil {
				return nil, wireErr(err)
			}
			return &workflowpb.DecommissionResponse{InstanceId: id, Existing: true}, nil
		}
		id, existing, err := s.lc.Decommission(ctx, req.GetNodeId())
		if err != nil {
			return nil, wireErr(err)
		}
		return &workflowpb.DecommissionResponse{InstanceId: id, Existing: existing}, nil
	})
	bus.HandleUnary(b, p, workflowclient.MethodNodes, func(ctx context.Context, _ *workflowpb.NodesRequest) (*workflowpb.NodesResponse, error) {
		nodes, err := s.lc.Nodes(ctx)
		if err != nil {
			return nil, wireErr(err)
		}
		return &workflowpb.NodesResponse{Nodes: nodes}, nil
	})
	bus.HandleStream(b, p, workflowclient.MethodSubscribe, func(ctx context.Context, req *workflowpb.SubscribeRequest, send func(*workflowpb.LifecycleEvent) error) error {
		switch {
		case req.GetInstanceId() != "":
			if err := s.allowInstance(ctx, req.GetInstanceId()); err != nil {
				return err
			}
		case req.GetDefinition() != "":
			if err := allowDefinition(ctx, req.GetDefinition()); err != nil {
				return err
			}
		case len(callerScope(ctx).Prefixes) > 0:
			return bus.Errorf(bus.CodeInvalidArgument, "workflow: a client limited to key prefixes subscribes to one definition or instance")
		}
		sub := s.eng.Subscribe(req.GetInstanceId(), req.GetDefinition(), req.GetTypes(), 1024)
		defer sub.Close()
		for {
			select {
			case ev, ok := <-sub.C:
				if !ok {
					return nil
				}
				if err := send(ev); err != nil {
					return err
				}
			case <-ctx.Done():
				return nil
			}
		}
	})
}

// View is the public view of an instance record.
func View(rec *workflowpb.InstanceRecord) *workflowpb.Instance {
	v := &workflowpb.Instance{Id: rec.GetId(), Definition: rec.GetDefinition(), Version: rec.GetVersion(), Status: rec.GetStatus(),
		Data: rec.GetData(), CreatedUnixNano: rec.GetCreatedUnixNano(), UpdatedUnixNano: rec.GetUpdatedUnixNano(),
		EndedUnixNano: rec.GetEndedUnixNano(), Error: rec.GetError(), StepsCompleted: rec.GetStepsCompleted(), History: rec.GetHistory(),
		Owner: rec.GetOwner(), Epoch: rec.GetEpoch(), LeaseUnixNano: rec.GetLeaseUnixNano(), ParentId: rec.GetParentId()}
	for _, p := range rec.GetPointers() {
		switch p.GetState() {
		case workflowpb.PointerState_POINTER_STATE_WAITING_EVENT:
			v.Waiting = append(v.Waiting, p.GetEventName()+"/"+p.GetEventKey())
		case workflowpb.PointerState_POINTER_STATE_SLEEPING:
			if v.WakeUnixNano == 0 || p.GetWakeUnixNano() < v.WakeUnixNano {
				v.WakeUnixNano = p.GetWakeUnixNano()
			}
		}
	}
	return v
}

// WorkflowsView is the JSON of /v1/workflows.
type WorkflowsView struct {
	Node        uint64                        `json:"node"`
	Owned       int                           `json:"owned"`
	Counts      map[string]int                `json:"counts"`
	Definitions []*workflowpb.DefinitionInfo  `json:"definitions"`
	Instances   []*workflowpb.InstanceSummary `json:"instances"`
	NextPage    string                        `json:"next_page,omitempty"`
}

// workflowsView serves /v1/workflows?status=running&definition=x&limit=n&page=t.
func (s *Server) workflowsView(r *http.Request) (any, error) {
	ctx := r.Context()
	q := r.URL.Query()
	f := engine.ListFilter{Definition: q.Get("definition"), PageToken: q.Get("page"), Limit: 50}
	if v := q.Get("status"); v != "" {
		st, ok := workflowpb.Status_value["STATUS_"+strings.ToUpper(v)]
		if !ok {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "unknown status %q", v)
		}
		f.Status = workflowpb.Status(st)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "limit %q: %v", v, err)
		}
		f.Limit = n
	}
	list, next, err := s.eng.List(ctx, f)
	if err != nil {
		return nil, wireErr(err)
	}
	counts, err := s.eng.Counts(ctx)
	if err != nil {
		return nil, err
	}
	defs, err := s.eng.Definitions(ctx)
	if err != nil {
		return nil, err
	}
	v := WorkflowsView{Node: s.cfg.NodeID, Owned: s.eng.Running(), Counts: map[string]int{}, Definitions: defs, Instances: list, NextPage: next}
	for st, n := range counts {
		v.Counts[statusLabel(st.String())] = n
	}
	return v, nil
}

// instanceView serves /v1/workflows/<id>.
func (s *Server) instanceView(r *http.Request) (any, error) {
	id := strings.TrimPrefix(r.URL.Path, "/v1/workflows/")
	rec, err := s.eng.Get(r.Context(), id)
	if err != nil {
		return nil, wireErr(err)
	}
	v := View(rec)
	v.ActiveSteps = s.eng.ActiveSteps(r.Context(), rec)
	return v, nil
}

// engineStarter adapts the engine to lifecycle.Engine.
type engineStarter struct{ e *engine.Engine }

func (a engineStarter) Start(ctx context.Context, def string, data []byte, idem string) (string, bool, error) {
	id, _, existing, err := a.e.Start(ctx, def, engine.StartOptions{Data: data, IdempotencyKey: idem})
	return id, existing, err
}

func (a engineStarter) Terminate(ctx context.Context, id, reason string) error {
	_, err := a.e.Control(ctx, id, "terminate", reason)
	return err
}

func (a engineStarter) Status(ctx context.Context, id string) (workflowpb.Status, error) {
	rec, err := a.e.Get(ctx, id)
	if err != nil {
		return 0, err
	}
	return rec.GetStatus(), nil
}
