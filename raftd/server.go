package raftd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/multiraft"
	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/backoff"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Name is the daemon's name.
const Name = "raftd"

// Default addresses (see the ports table in README.md).
const (
	DefaultBusAddr    = "127.0.0.1:7402"
	DefaultAdminAddr  = "127.0.0.1:7502"
	DefaultStoredAddr = "127.0.0.1:7401"
	DefaultGossipAddr = "127.0.0.1:7403"
	DefaultClockAddr  = "127.0.0.1:7404"
)

// ReadyCheck is the name of the readiness check the server registers.
const ReadyCheck = Name

// MethodInit is the KV protocol's cluster bootstrap method.
const MethodInit = "Init"

// Config configures the raftd server.
type Config struct {
	// StoredAddr is the bus address of the node's stored (raft log and
	// range data). Empty runs on a volatile in-memory engine that loses
	// everything on exit (tests and demos only).
	// Default 127.0.0.1:7401.
	StoredAddr string
	// StoredSocket is the path of the local (Unix domain) socket that
	// the stored at StoredAddr also listens on (stored --local-socket,
	// by default <data-dir>/stored/stored.sock). The calls to stored
	// (raft log writes and reads, range data) then go over it, skipping
	// QUIC's goroutine handoffs; while it cannot be reached they take
	// QUIC (see "Local sockets" in package bus). Needs StoredAddr.
	// Default "": QUIC only.
	StoredSocket string
	// GossipAddr is the bus address of the node's gossipd (who is alive,
	// where); optional at start-up.
	// Default 127.0.0.1:7403.
	GossipAddr string
	// ClockAddr is the bus address of the node's clockd (timestamps,
	// clock health).
	// Default 127.0.0.1:7404.
	ClockAddr string
	// Peers are the bus addresses of other nodes' raftds, for
	// clusters without gossipd; with gossipd the peers are learned from
	// its membership (discovery.go) and these are added. Default none.
	Peers []string
	// AdvertiseAddr is the bus address other nodes reach this raftd at,
	// published in gossip metadata, sent with raft messages and recorded
	// in the cluster layout. Empty means the bound bus address; a bus on
	// a wildcard address (0.0.0.0, ::) then fails Start. Default empty.
	AdvertiseAddr string
	// TickInterval is the raft tick. Default 100ms.
	TickInterval time.Duration
	// ElectionTicks is the raft election timeout in ticks. Default 10.
	ElectionTicks int
	// HeartbeatTicks is the leader heartbeat interval in ticks. Default 1.
	HeartbeatTicks int
	// MaxOffset is the largest clock offset tolerated between nodes.
	// Default 500ms.
	MaxOffset time.Duration
	// ClosedTimestampLag is how far behind its clock a leader closes
	// timestamps (follower reads and watch checkpoints trail by about
	// this much); more than twice MaxOffset. Default (0) 3s.
	ClosedTimestampLag time.Duration
	// MaxKeyBytes and MaxValueBytes bound user keys and values. Defaults
	// 64 KiB and 8 MiB (below the 16 MiB bus frame an entry travels in).
	MaxKeyBytes, MaxValueBytes int
	// ValueCacheBytes bounds the cache of recently written and read values
	// that serves reads without a stored round trip. Default 64 MiB;
	// negative disables it.
	ValueCacheBytes int
	// SplitBytes splits a range this node leads once its data grows past
	// it, at its middle key. Default 512 MiB; negative: no automatic
	// splits.
	SplitBytes int64
	// SplitQPS splits a range this node leads once it serves more
	// requests a second than this, at the median of the keys requested.
	// Default 0: no splits by load (they are opt-in until ranges are
	// rebalanced; 2500 is CockroachDB's figure).
	SplitQPS float64
	// VersionRetention is how long superseded versions stay readable
	// (reads at a timestamp, watches from a timestamp); older ones are
	// collected in the background. Every node of a cluster should use the
	// same. Default 4 hours.
	VersionRetention time.Duration
	// VersionGCInterval is how often the versions older than the
	// retention window are collected. Default 1 minute; negative: never.
	VersionGCInterval time.Duration
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	return Config{StoredAddr: DefaultStoredAddr, GossipAddr: DefaultGossipAddr, ClockAddr: DefaultClockAddr,
		TickInterval: 100 * time.Millisecond, ElectionTicks: 10, HeartbeatTicks: 1, MaxOffset: 500 * time.Millisecond,
		MaxKeyBytes: kvpb.MaxKeyBytes, MaxValueBytes: kvpb.MaxValueBytes, ValueCacheBytes: 64 << 20, SplitBytes: 512 << 20}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.StoredAddr != "" {
		if err := config.ValidateAddr(c.StoredAddr); err != nil {
			return fmt.Errorf("raftd: StoredAddr %q: %w", c.StoredAddr, err)
		}
	}
	if c.StoredSocket != "" && c.StoredAddr == "" {
		return fmt.Errorf("raftd: StoredSocket %q without a StoredAddr", c.StoredSocket)
	}
	if c.GossipAddr != "" {
		if err := config.ValidateAddr(c.GossipAddr); err != nil {
			return fmt.Errorf("raftd: GossipAddr %q: %w", c.GossipAddr, err)
		}
	}
	if err := config.ValidateAddr(c.ClockAddr); err != nil {
		return fmt.Errorf("raftd: ClockAddr %q: %w", c.ClockAddr, err)
	}
	for _, a := range c.Peers {
		if err := config.ValidateAddr(a); err != nil {
			return fmt.Errorf("raftd: Peers %q: %w", a, err)
		}
	}
	if c.AdvertiseAddr != "" {
		if err := config.ValidateAdvertiseAddr(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("raftd: AdvertiseAddr %q: %w", c.AdvertiseAddr, err)
		}
	}
	switch {
	case c.TickInterval < 0:
		return fmt.Errorf("raftd: TickInterval %v must not be negative", c.TickInterval)
	case c.ElectionTicks < 0 || c.HeartbeatTicks < 0:
		return errors.New("raftd: ElectionTicks and HeartbeatTicks must not be negative")
	case c.ElectionTicks > 0 && c.HeartbeatTicks >= c.ElectionTicks:
		return fmt.Errorf("raftd: HeartbeatTicks %d must be below ElectionTicks %d", c.HeartbeatTicks, c.ElectionTicks)
	case c.MaxOffset < 0 || c.MaxKeyBytes < 0 || c.MaxValueBytes < 0:
		return errors.New("raftd: MaxOffset, MaxKeyBytes and MaxValueBytes must not be negative")
	}
	return nil
}

// Deps are the server's injected dependencies.
type Deps struct {
	// Logger is the daemon's logger. Required.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Bus is the daemon's bus endpoint. Required.
	Bus *bus.Bus
	// Admin receives the readiness check and the daemon's /v1 views. Required.
	Admin *admin.Server
	// NodeID is the node's id (daemon.Runtime.NodeID). Required.
	NodeID uint64
	// Engine overrides the storage engine (tests); nil uses stored at
	// Config.StoredAddr.
	Engine storage.Engine
}

// Server is the raftd daemon: the multi-raft store of this node and the
// KV protocol on the bus.
type Server struct {
	cfg   Config
	d     Deps
	log   *slog.Logger
	clock *hlc.Clock
	ready chan struct{}
	errc  chan error
	stopc chan struct{}
	// ctx is the server's lifetime context, cancelled by Stop.
	ctx    context.Context
	cancel context.CancelFunc
	// tasks are the server's goroutines; Stop closes and waits for them.
	tasks daemon.Tasks

	mu struct {
		sync.Mutex
		started, stopped bool
		store            *multiraft.Store
		transport        *busTransport
		// gossipPeers are the other nodes' raftds by node id, as gossip
		// last listed them (discovery.go).
		gossipPeers map[uint64]gossipPeer
	}
	// initSem admits one Init at a time (a channel, so waiting honours
	// the caller's context).
	initSem chan struct{}
	// stopDone is closed when Stop has stopped everything.
	stopDone chan struct{}
	// lostInit is the last Init this node ran to the end after its
	// caller had given up, with its answer; guarded by initSem.
	lostInit struct {
		req  *kvpb.InitRequest
		resp *kvpb.InitResponse
	}
	// initCallersGone counts Init calls whose caller left before the answer.
	initCallersGone atomic.Uint64
	// adoptInBackground lets run adopt a peer's layout (tests turn it off).
	adoptInBackground bool
}

// New validates cfg, registers the bus handlers, the readiness check and
// /v1/ranges, and returns an unstarted server.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil || deps.Bus == nil || deps.Admin == nil || deps.NodeID == 0 {
		return nil, errors.New("raftd: Deps.Logger, Bus, Admin and NodeID are required")
	}
	maxOffset := cfg.MaxOffset
	if maxOffset == 0 {
		maxOffset = 500 * time.Millisecond
	}
	s := &Server{cfg: cfg, d: deps, log: deps.Logger, ready: make(chan struct{}), errc: make(chan error, 1), stopc: make(chan struct{}),
		initSem: make(chan struct{}, 1), adoptInBackground: true, clock: hlc.NewClock(hlc.Config{MaxOffset: maxOffset})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	deps.Admin.AddReadyCheck(ReadyCheck, s.readyCheck)
	deps.Admin.AddCondition(DiskCondition, s.diskCondition)
	deps.Admin.SetAddress("stored", cfg.StoredAddr)
	if cfg.StoredSocket != "" && deps.Engine == nil {
		if err := deps.Bus.AddLocalPeer(cfg.StoredAddr, cfg.StoredSocket); err != nil {
			return nil, fmt.Errorf("raftd: %w", err)
		}
		deps.Admin.SetAddress("stored_socket", cfg.StoredSocket)
	}
	deps.Admin.SetAddress("gossip", cfg.GossipAddr)
	deps.Admin.SetAddress("clock", cfg.ClockAddr)
	deps.Admin.Handle("/v1/ranges", admin.JSON(func(r *http.Request) (any, error) {
		resp, err := s.Ranges(r.Context())
		if err != nil {
			return nil, err
		}
		b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
		return json.RawMessage(b), err
	}))
	s.registerHandlers()
	if deps.Registerer != nil {
		s.registerMetrics(deps.Registerer)
	}
	return s, nil
}

func (s *Server) store() *multiraft.Store {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.store
}

var errNotStarted = bus.Errorf(bus.CodeUnavailable, "raftd: not started")

func kvHandler[Req any, Resp proto.Message, PReq interface {
	*Req
	proto.Message
}](s *Server, method string, f func(*multiraft.Store, context.Context, PReq) (Resp, error)) {
	bus.HandleUnary(s.d.Bus, wire.ProtoKV, method, func(ctx context.Context, req PReq) (Resp, error) {
		st := s.store()
		if st == nil {
			var zero Resp
			return zero, errNotStarted
		}
		return f(st, ctx, req)
	})
}

// registerHandlers registers raftd's handlers; their authorization is
// kvRules and raftRules (authz.go).
func (s *Server) registerHandlers() {
	s.d.Bus.Authorize(wire.ProtoKV, kvRules())
	s.d.Bus.Authorize(wire.ProtoRaft, raftRules())
	kvHandler(s, multiraft.MethodGet, (*multiraft.Store).Get)
	kvHandler(s, multiraft.MethodPut, (*multiraft.Store).Put)
	kvHandler(s, multiraft.MethodDelete, (*multiraft.Store).Delete)
	kvHandler(s, multiraft.MethodScan, (*multiraft.Store).Scan)
	kvHandler(s, multiraft.MethodDeleteRange, (*multiraft.Store).DeleteRange)
	kvHandler(s, multiraft.MethodCompareAndSwap, (*multiraft.Store).CompareAndSwap)
	kvHandler(s, multiraft.MethodBatch, (*multiraft.Store).Batch)
	kvHandler(s, multiraft.MethodDescriptors, (*multiraft.Store).Descriptors)
	kvHandler(s, multiraft.MethodRanges, (*multiraft.Store).Ranges)
	kvHandler(s, multiraft.MethodAdminSplit, (*multiraft.Store).AdminSplit)
	kvHandler(s, multiraft.MethodTransferLeader, (*multiraft.Store).TransferLeader)
	kvHandler(s, multiraft.MethodUpdateMeta, (*multiraft.Store).UpdateMeta)
	kvHandler(s, multiraft.MethodChangeReplicas, (*multiraft.Store).ChangeReplicas)
	kvHandler(s, multiraft.MethodCreateReplica, (*multiraft.Store).CreateReplica)
	bus.HandleUnary(s.d.Bus, wire.ProtoKV, MethodInit, s.Init)
	s.registerEvents()
	s.registerWatch()
	bus.HandleBatch(s.d.Bus, wire.ProtoRaft, methodRaft, func(ctx context.Context, from bus.Peer, batch []*raftmsgpb.MessageBatch) {
		if st := s.store(); st != nil {
			for _, b := range batch {
				st.HandleBatch(b)
			}
		}
	})
	bus.HandleUnary(s.d.Bus, wire.ProtoRaft, methodSnapshot, func(ctx context.Context, c *raftmsgpb.SnapshotChunk) (*raftmsgpb.SnapshotAck, error) {
		st := s.store()
		if st == nil {
			return nil, errNotStarted
		}
		return st.HandleSnapshot(ctx, c)
	})
	bus.HandleUnary(s.d.Bus, wire.ProtoRaft, methodHello, func(ctx context.Context, req *raftmsgpb.HelloRequest) (*raftmsgpb.HelloResponse, error) {
		st := s.store()
		if st == nil {
			return nil, errNotStarted
		}
		st.SetNodeAddr(req.GetNodeId(), req.GetAddr())
		resp := &raftmsgpb.HelloResponse{NodeId: s.d.NodeID, Addr: s.advertiseAddr(), Initialized: st.Initialized()}
		if !req.GetOmitBootstrap() {
			resp.Bootstrap = st.BootstrapRecord()
		}
		return resp, nil
	})
	bus.HandleUnary(s.d.Bus, wire.ProtoRaft, methodBootstrap, func(ctx context.Context, req *raftmsgpb.BootstrapRequest) (*raftmsgpb.BootstrapResponse, error) {
		st := s.store()
		if st == nil {
			return nil, errNotStarted
		}
		// Not the caller's context: a bootstrap write is not abandoned
		// half way because the caller gave up.
		bctx, cancel := context.WithTimeout(s.ctx, initTimeout)
		defer cancel()
		already, err := st.Bootstrap(bctx, req)
		return &raftmsgpb.BootstrapResponse{AlreadyInitialized: already}, err
	})
}

func (s *Server) readyCheck(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.mu.stopped:
		return errors.New("stopped")
	case !s.mu.started:
		return errors.New("not started")
	case s.mu.store == nil:
		return errors.New("loading replicas")
	}
	return nil
}

// Start starts the server; it does not block. Replicas are loaded from
// storage in the background (retrying while stored is unreachable); the
// readiness check passes once they are.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.started || s.mu.stopped {
		return fmt.Errorf("raftd: already started or stopped")
	}
	if s.advertiseAddr() == "" {
		return fmt.Errorf("raftd: the bus listens on the wildcard address %s, which other nodes cannot dial: set --advertise-addr", s.d.Bus.Addr())
	}
	s.mu.started = true
	eng := s.d.Engine
	if eng == nil && s.cfg.StoredAddr == "" {
		s.log.Warn("no stored address: running on a volatile in-memory engine; nothing survives a restart")
		eng = storage.NewMem()
	} else if eng == nil {
		eng = storage.NewStored(storeclient.New(s.d.Bus, s.cfg.StoredAddr))
	}
	s.tasks.Go(func() { s.run(eng) })
	if s.cfg.GossipAddr != "" {
		s.tasks.Go(s.followGossip)
	}
	s.log.Info("raftd server started", slog.String("stored_addr", s.cfg.StoredAddr), slog.String("clock_addr", s.cfg.ClockAddr),
		slog.String("gossip_addr", s.cfg.GossipAddr), slog.String("advertise_addr", s.advertiseAddr()), slog.Any("peers", s.cfg.Peers))
	return nil
}

// run opens the store, then exchanges addresses with peers until Stop.
func (s *Server) run(eng storage.Engine) {
	var st *multiraft.Store
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		var err error
		st, err = s.openStore(eng)
		if err == nil {
			break
		}
		s.log.Warn("opening the raft store failed; retrying", slog.Any("error", err), slog.Int("failures", retry.Failures()+1))
		if !retry.Wait(s.ctx) {
			return
		}
	}
	s.mu.Lock()
	if s.mu.stopped {
		s.mu.Unlock()
		st.Stop()
		return
	}
	s.mu.store = st
	setNodeAddrs(st, s.mu.gossipPeers)
	s.mu.Unlock()
	close(s.ready)
	s.tasks.Go(func() {
		select {
		case err := <-st.Err():
			select {
			case s.errc <- err:
			default:
			}
		case <-s.stopc:
		}
	})
	s.tasks.Go(func() { s.syncClock(st) })
	if s.cfg.StoredAddr != "" {
		s.tasks.Go(func() { s.watchDisk(st) })
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if answers := s.hello(st); s.adoptInBackground {
			// Not while an Init runs here: it may be the coordinator,
			// whose peers hold its layout before it does, and its own
			// bootstrap must not find a write of that layout half done.
			select {
			case s.initSem <- struct{}{}:
				s.adopt(st, answers)
				<-s.initSem
			default:
			}
		}
		select {
		case <-t.C:
		case <-s.stopc:
			return
		}
	}
}

func (s *Server) openStore(eng storage.Engine) (*multiraft.Store, error) {
	mc := multiraft.DefaultConfig()
	if s.cfg.TickInterval > 0 {
		mc.TickInterval = s.cfg.TickInterval
	}
	if s.cfg.ElectionTicks > 0 {
		mc.ElectionTicks = s.cfg.ElectionTicks
		mc.ReproposeTicks, mc.QuiesceAfterTicks = 2*mc.ElectionTicks, max(2, mc.ElectionTicks/2)
		mc.LivenessPingTicks = max(1, mc.ElectionTicks/3)
	}
	if s.cfg.ClosedTimestampLag > 0 {
		mc.ClosedTimestampLag = s.cfg.ClosedTimestampLag
	}
	if s.cfg.ValueCacheBytes != 0 {
		mc.ValueCacheBytes = s.cfg.ValueCacheBytes
	}
	if s.cfg.SplitBytes != 0 {
		mc.SplitBytes = s.cfg.SplitBytes
	}
	if s.cfg.SplitQPS != 0 {
		mc.SplitQPS = s.cfg.SplitQPS
	}
	if s.cfg.VersionRetention > 0 {
		mc.VersionRetention = s.cfg.VersionRetention
	}
	if s.cfg.VersionGCInterval != 0 {
		mc.VersionGCInterval = s.cfg.VersionGCInterval
	}
	if s.cfg.HeartbeatTicks > 0 {
		mc.HeartbeatTicks = s.cfg.HeartbeatTicks
	}
	if s.cfg.MaxKeyBytes > 0 {
		mc.MaxKeyBytes = s.cfg.MaxKeyBytes
	}
	if s.cfg.MaxValueBytes > 0 {
		mc.MaxValueBytes = s.cfg.MaxValueBytes
	}
	// A command travels whole in one raft message: keep it well inside a
	// bus frame (the default 16 MiB frame gives multiraft's own 12 MiB).
	if limit := s.d.Bus.MaxFrameSize() * 3 / 4; mc.MaxCommandBytes == 0 || mc.MaxCommandBytes > limit {
		mc.MaxCommandBytes = limit
	}
	var st *multiraft.Store
	addrOf := func(node uint64) string { return st.NodeAddr(node) }
	tr := newBusTransport(s.d.Bus, addrOf, s.log)
	var err error
	st, err = multiraft.NewStore(mc, multiraft.Deps{NodeID: s.d.NodeID, Addr: s.advertiseAddr(), Engine: eng, Transport: tr,
		Forwarder: busForwarder{b: s.d.Bus, addrOf: addrOf}, Clock: s.clock, Logger: s.log})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	if err := st.Start(ctx); err != nil {
		tr.close()
		return nil, err
	}
	s.mu.Lock()
	s.mu.transport = tr
	s.mu.Unlock()
	return st, nil
}

// hello exchanges node ids and addresses with every peer (configured or
// learned from gossip, suspect members included) and returns the answers
// by address.
func (s *Server) hello(st *multiraft.Store) map[string]*raftmsgpb.HelloResponse {
	out := map[string]*raftmsgpb.HelloResponse{}
	// Only a node that may adopt a layout needs the peers' records.
	omit := st.Initialized()
	for _, p := range s.peerAddrs(false) {
		ctx, cancel := context.WithTimeout(s.ctx, time.Second)
		resp := &raftmsgpb.HelloResponse{}
		err := s.d.Bus.Call(ctx, p, wire.ProtoRaft, methodHello, &raftmsgpb.HelloRequest{NodeId: s.d.NodeID, Addr: s.advertiseAddr(), OmitBootstrap: omit}, resp)
		cancel()
		if err != nil {
			continue
		}
		st.SetNodeAddr(resp.GetNodeId(), p)
		out[p] = resp
	}
	return out
}

// adopt bootstraps this node from a peer's bootstrap record when it missed
// the cluster's Init (down at the time, or an Init that failed part way).
// It reports whether this call bootstrapped the node.
func (s *Server) adopt(st *multiraft.Store, answers map[string]*raftmsgpb.HelloResponse) bool {
	if st.Initialized() {
		return false
	}
	for _, a := range answers {
		if rec := a.GetBootstrap(); rec != nil {
			already, err := st.Bootstrap(s.ctx, rec)
			if err != nil {
				s.log.Warn("adopting the cluster layout failed", slog.Any("error", err))
				return false
			}
			if already {
				return false
			}
			s.log.Info("adopted the cluster layout of a peer", slog.Uint64("peer", a.GetNodeId()))
			return true
		}
	}
	return false
}

// initTimeout bounds the work of one Init (peer exchanges, forwarding to
// the coordinator, the bootstrap of every node). That work runs detached
// from the caller: a caller that gives up part way leaves no node
// half-bootstrapped because of it.
const initTimeout = 2 * time.Minute

// Init bootstraps the cluster over this node and every peer: the
// configured ones and the alive members gossip lists (all must be
// reachable), and refuses with Unavailable while they are fewer than the
// request's min_nodes. It is idempotent and completes an Init that stopped part
// way: when some node already holds the layout, Init sends that layout to
// the nodes that lack it and returns the existing descriptors. See
// kvpb.InitResponse for already_initialized.
//
// The work runs on a goroutine owned by the server, bounded by
// initTimeout and Stop, not by ctx: when the caller gives up, the
// bootstrap still finishes, and a retry of the same request on this node
// gets the answer the caller missed.
func (s *Server) Init(ctx context.Context, req *kvpb.InitRequest) (*kvpb.InitResponse, error) {
	if s.store() == nil {
		return nil, errNotStarted
	}
	select {
	case s.initSem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("raftd: init: waiting for another Init: %w", ctx.Err())
	}
	type result struct {
		resp *kvpb.InitResponse
		err  error
	}
	done := make(chan result, 1)
	if !s.tasks.Go(func() {
		defer func() { <-s.initSem }()
		ictx, cancel := context.WithTimeout(s.ctx, initTimeout)
		defer cancel()
		resp, err := s.init(ictx, req)
		if err == nil && ctx.Err() != nil && !resp.GetAlreadyInitialized() {
			// The caller is gone: keep its answer for its retry.
			s.lostInit.req, s.lostInit.resp = proto.Clone(req).(*kvpb.InitRequest), resp
		}
		done <- result{resp, err}
	}) {
		<-s.initSem
		return nil, bus.Errorf(bus.CodeUnavailable, "raftd: stopping")
	}
	select {
	case r := <-done:
		return r.resp, r.err
	case <-ctx.Done():
		s.initCallersGone.Add(1)
		return nil, fmt.Errorf("raftd: init: %w (the bootstrap goes on; retry for its outcome)", ctx.Err())
	}
}

// init runs one Init; the caller holds initSem.
func (s *Server) init(ctx context.Context, req *kvpb.InitRequest) (*kvpb.InitResponse, error) {
	st := s.store()
	answers := s.hello(st)
	// A node already holds the layout (an earlier Init, maybe one that
	// stopped part way): adopt it here, complete it on every reachable
	// peer that lacks it, and report it.
	changed := s.adopt(st, answers)
	if st.Initialized() {
		rec := s.bootstrapRecord(ctx, st)
		if rec == nil {
			return nil, bus.Errorf(bus.CodeUnavailable, "raftd: init: this node is bootstrapping; retry")
		}
		peers := make([]string, 0, len(answers))
		for p := range answers {
			peers = append(peers, p)
		}
		sort.Strings(peers)
		for _, p := range peers {
			if answers[p].GetInitialized() {
				continue
			}
			resp := &raftmsgpb.BootstrapResponse{}
			if err := s.d.Bus.Call(ctx, p, wire.ProtoRaft, methodBootstrap, rec, resp); err != nil {
				return nil, fmt.Errorf("raftd: init: complete the bootstrap of %s: %w", p, err)
			}
			changed = changed || !resp.GetAlreadyInitialized()
		}
		descs, err := s.existing(ctx, st)
		if err != nil {
			return nil, err
		}
		already := !changed
		if s.lostInit.req != nil && proto.Equal(s.lostInit.req, req) {
			// The retry of an Init whose caller gave up before its answer.
			already = s.lostInit.resp.GetAlreadyInitialized()
			s.lostInit.req, s.lostInit.resp = nil, nil
		}
		return &kvpb.InitResponse{AlreadyInitialized: already, Descriptors: descs}, nil
	}
	nodes := map[uint64]string{s.d.NodeID: s.advertiseAddr()}
	for _, p := range s.peerAddrs(true) {
		a, ok := answers[p]
		if !ok {
			return nil, bus.Errorf(bus.CodeUnavailable, "raftd: init: peer %s unreachable; every peer must be up", p)
		}
		nodes[a.GetNodeId()] = p
	}
	if n := uint32(len(nodes)); n < req.GetMinNodes() {
		return nil, bus.Errorf(bus.CodeUnavailable, "raftd: init: %d nodes live, fewer than the %d asked for; waiting for more to join", n, req.GetMinNodes())
	}
	ids := make([]uint64, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	// One coordinator, the lowest node id, runs every Init, so concurrent
	// Inits on different nodes cannot lay out two different clusters.
	if ids[0] != s.d.NodeID {
		resp := &kvpb.InitResponse{}
		if err := s.d.Bus.Call(ctx, nodes[ids[0]], wire.ProtoKV, MethodInit, req, resp); err != nil {
			return nil, fmt.Errorf("raftd: init via node %d: %w", ids[0], err)
		}
		return resp, nil
	}
	descs, err := multiraft.PlanCluster(req, ids)
	if err != nil {
		return nil, bus.Errorf(bus.CodeInvalidArgument, "%v", err)
	}
	breq := &raftmsgpb.BootstrapRequest{Descriptors: descs, Nodes: nodes}
	for _, id := range ids {
		if id == s.d.NodeID {
			continue
		}
		resp := &raftmsgpb.BootstrapResponse{}
		if err := s.d.Bus.Call(ctx, nodes[id], wire.ProtoRaft, methodBootstrap, breq, resp); err != nil {
			return nil, fmt.Errorf("raftd: init: bootstrap node %d: %w", id, err)
		}
		if resp.GetAlreadyInitialized() && !s.holdsLayout(ctx, nodes[id], breq) {
			// Another Init, on another node, got there first; its layout
			// wins: a retry adopts it. (A node that adopted this Init's
			// layout from a peer already bootstrapped holds the same.)
			return nil, bus.Errorf(bus.CodeUnavailable, "raftd: init: node %d was initialized by a concurrent Init; retry", id)
		}
	}
	if already, err := st.Bootstrap(ctx, breq); err != nil {
		return nil, err
	} else if already && !proto.Equal(s.bootstrapRecord(ctx, st), breq) {
		return nil, bus.Errorf(bus.CodeUnavailable, "raftd: init: this node adopted another Init's layout; retry")
	}
	s.log.Info("cluster initialized", slog.Int("ranges", len(descs)), slog.Int("nodes", len(ids)))
	return &kvpb.InitResponse{Descriptors: descs}, nil
}

// bootstrapRecord returns the layout this initialized node was
// bootstrapped with, waiting while its bootstrap write is in progress (a
// peer's Bootstrap call or the adoption of a peer's layout); nil if ctx
// ends first.
func (s *Server) bootstrapRecord(ctx context.Context, st *multiraft.Store) *raftmsgpb.BootstrapRequest {
	for {
		if rec := st.BootstrapRecord(); rec != nil {
			return rec
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return nil
		case <-s.stopc:
			return nil
		}
	}
}

// holdsLayout reports whether the raftd at addr was bootstrapped with
// exactly rec.
func (s *Server) holdsLayout(ctx context.Context, addr string, rec *raftmsgpb.BootstrapRequest) bool {
	for {
		resp := &raftmsgpb.HelloResponse{}
		if err := s.d.Bus.Call(ctx, addr, wire.ProtoRaft, methodHello, &raftmsgpb.HelloRequest{NodeId: s.d.NodeID, Addr: s.advertiseAddr()}, resp); err != nil {
			return false
		}
		if resp.GetBootstrap() != nil || !resp.GetInitialized() {
			return proto.Equal(resp.GetBootstrap(), rec)
		}
		// Its bootstrap write is in progress: wait for the record.
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return false
		}
	}
}

// existing returns the descriptors of an initialized cluster, waiting a
// while for the meta range to elect a leader.
func (s *Server) existing(ctx context.Context, st *multiraft.Store) ([]*kvpb.RangeDescriptor, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var err error
	for {
		var d *kvpb.DescriptorsResponse
		if d, err = st.Descriptors(ctx, &kvpb.DescriptorsRequest{}); err == nil {
			return d.GetDescriptors(), nil
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return nil, fmt.Errorf("raftd: init: reading the descriptors: %w", err)
		}
	}
}

// Ranges lists the local replicas (the bus Ranges method and /v1/ranges).
func (s *Server) Ranges(ctx context.Context) (*kvpb.RangesResponse, error) {
	st := s.store()
	if st == nil {
		return nil, errNotStarted
	}
	return st.Ranges(ctx, &kvpb.RangesRequest{})
}

// Ready is closed once the replicas are loaded and the server serves.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err delivers a fatal failure after Start (a storage write failed: the
// node stops processing raft and must be restarted).
func (s *Server) Err() <-chan error { return s.errc }

// Stop stops the server and waits for its goroutines, or until ctx is
// done: then it returns ctx's error while the stopping completes in the
// background. Everything the server waits on (peer exchanges, Init,
// storage calls of the store, transport sends) is cancelled first, so it
// normally returns at once. It is idempotent; a later call waits again.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.mu.stopped {
		s.mu.stopped = true
		s.tasks.Close()
		s.stopDone = make(chan struct{})
		close(s.stopc)
		s.cancel()
		go func() {
			defer close(s.stopDone)
			_ = s.tasks.Wait(context.Background())
			// run has returned: the store and transport are final.
			s.mu.Lock()
			st, tr := s.mu.store, s.mu.transport
			s.mu.Unlock()
			if st != nil {
				st.Stop()
			}
			if tr != nil {
				tr.close()
			}
		}()
	}
	done := s.stopDone
	s.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("raftd: stop: %w", ctx.Err())
	}
}

func (s *Server) transportStat(f func(*busTransport) uint64) uint64 {
	s.mu.Lock()
	t := s.mu.transport
	s.mu.Unlock()
	if t == nil {
		return 0
	}
	return f(t)
}

func (s *Server) registerMetrics(reg prometheus.Registerer) {
	statf := func(f func(multiraft.Stats) float64) func() float64 {
		return func() float64 {
			if st := s.store(); st != nil {
				return f(st.Stats())
			}
			return 0
		}
	}
	stat := func(f func(multiraft.Stats) uint64) func() float64 {
		return statf(func(x multiraft.Stats) float64 { return float64(f(x)) })
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_scheduler_rounds_total", Help: "Scheduler rounds run."},
			stat(func(x multiraft.Stats) uint64 { return x.Rounds })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_log_writes_total", Help: "Engine writes of the scheduler rounds (one per round with anything to write)."},
			stat(func(x multiraft.Stats) uint64 { return x.Writes })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_log_sync_writes_total", Help: "Synced engine writes of the scheduler rounds."},
			stat(func(x multiraft.Stats) uint64 { return x.SyncWrites })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_log_write_seconds_total", Help: "Time scheduler rounds spent waiting on their engine writes."},
			statf(func(x multiraft.Stats) float64 { return x.WriteSeconds })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_carried_rounds_total", Help: "Rounds whose late raft messages went out in the next round's frames."},
			stat(func(x multiraft.Stats) uint64 { return x.CarriedRounds })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_prefetch_reads_total", Help: "Engine reads started after a round's write for the records its appended entries will build on when applied."},
			stat(func(x multiraft.Stats) uint64 { return x.PrefetchReads })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_apply_reads_total", Help: "Engine reads made on the apply path (records the prefetch did not bring)."},
			stat(func(x multiraft.Stats) uint64 { return x.ApplyReads })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_ticks_skipped_total", Help: "Follower ticks skipped because the follower heard from its leader since the tick before."},
			stat(func(x multiraft.Stats) uint64 { return x.TicksSkipped })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_ticks_deferred_total", Help: "Leader ticks left for the range's next pass because it had traffic since the tick before."},
			stat(func(x multiraft.Stats) uint64 { return x.TicksDeferred })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_heartbeats_sent_total", Help: "Heartbeats leaders sent to followers (quiesce heartbeats not included)."},
			stat(func(x multiraft.Stats) uint64 { return x.HeartbeatsSent })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_heartbeats_skipped_total", Help: "Heartbeats left out because the follower was sent entries lately."},
			stat(func(x multiraft.Stats) uint64 { return x.HeartbeatsSkipped })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_ranges_processed_total", Help: "Ranges processed over all rounds."},
			stat(func(x multiraft.Stats) uint64 { return x.RangesProcessed })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_inbox_dropped_messages_total", Help: "Raft messages dropped because a replica's inbox was full (raft retransmits)."},
			stat(func(x multiraft.Stats) uint64 { return x.InboxDrops })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_proposals_total", Help: "Commands proposed (re-proposals not counted)."},
			stat(func(x multiraft.Stats) uint64 { return x.Proposals })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_proposal_batches_total", Help: "Raft proposals carrying them: one per range and round."},
			stat(func(x multiraft.Stats) uint64 { return x.ProposalBatches })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_proposals_dropped_total", Help: "Writes not proposed because their caller had gone (deadline passed, cancelled) while they waited."},
			stat(func(x multiraft.Stats) uint64 { return x.ProposalsDropped })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pleiades_raftd_client_sessions", Help: "Client sessions the local replicas remember (summed over replicas)."},
			statf(func(x multiraft.Stats) float64 { return float64(x.Sessions) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pleiades_raftd_client_session_bytes", Help: "Size of the client session records of the local replicas (answers kept for retries)."},
			statf(func(x multiraft.Stats) float64 { return float64(x.SessionBytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_session_repeats_total", Help: "Writes answered from their client session: another copy or attempt of an applied write (counted by every replica)."},
			stat(func(x multiraft.Stats) uint64 { return x.SessionRepeats })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_session_refusals_total", Help: "Writes their client session refused: too old, below the first unacknowledged, or session limits reached (counted by every replica)."},
			stat(func(x multiraft.Stats) uint64 { return x.SessionRefusals })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_sessions_forgotten_total", Help: "Client sessions forgotten after their idle time or to make room (counted by every replica)."},
			stat(func(x multiraft.Stats) uint64 { return x.SessionsForgotten })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_value_cache_hits_total", Help: "Reads served by the value cache."},
			stat(func(x multiraft.Stats) uint64 { return x.ValueCacheHits })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_value_cache_misses_total", Help: "Reads the value cache could not serve (read from stored)."},
			stat(func(x multiraft.Stats) uint64 { return x.ValueCacheMisses })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_lease_reads_total", Help: "Linearizable reads served under the leader lease."},
			stat(func(x multiraft.Stats) uint64 { return x.LeaseReads })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_closed_reads_total", Help: "Bounded-staleness reads served at a replica's closed timestamp."},
			stat(func(x multiraft.Stats) uint64 { return x.ClosedReads })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_read_index_reads_total", Help: "Linearizable reads that took a ReadIndex round."},
			stat(func(x multiraft.Stats) uint64 { return x.ReadIndexReads })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_snapshots_sent_total", Help: "Range snapshots sent to lagging followers."},
			stat(func(x multiraft.Stats) uint64 { return x.SnapshotsSent })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_snapshots_applied_total", Help: "Range snapshots installed."},
			stat(func(x multiraft.Stats) uint64 { return x.SnapshotsApplied })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_snapshot_installs_recovered_total", Help: "Range snapshot installs interrupted by a crash after the data was replaced, completed at start."},
			stat(func(x multiraft.Stats) uint64 { return x.SnapshotsRecovered })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_transport_dropped_batches_total", Help: "Raft batches dropped because a peer's queue was full or its address unknown."},
			func() float64 {
				return float64(s.transportStat(func(t *busTransport) uint64 { return t.dropped.Load() }))
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_transport_send_errors_total", Help: "Failed raft batch sends."},
			func() float64 {
				return float64(s.transportStat(func(t *busTransport) uint64 { return t.sendErrors.Load() }))
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pleiades_raftd_disk_full", Help: "1 while the node's disk is full: writes to the ranges led here are refused."}, func() float64 {
			if st := s.store(); st != nil && st.DiskFull() != "" {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_disk_refusals_total", Help: "Round writes stored refused for want of disk space."},
			stat(func(x multiraft.Stats) uint64 { return x.DiskRefusals })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pleiades_raftd_replicas_held", Help: "Replicas holding a write their node's full disk refused: they sit out (and fall behind) until it has room."},
			statf(func(x multiraft.Stats) float64 { return float64(x.HeldReplicas) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_splits_total", Help: "Range splits applied by the local replicas (each replica of a range counts its own)."},
			stat(func(x multiraft.Stats) uint64 { return x.Splits })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_auto_splits_total", Help: "Splits this node started because a range it leads outgrew --split-bytes or --split-qps."},
			stat(func(x multiraft.Stats) uint64 { return x.AutoSplits })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_load_splits_total", Help: "Splits this node started because a range it leads served more than --split-qps requests a second."},
			stat(func(x multiraft.Stats) uint64 { return x.LoadSplits })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_replica_changes_total", Help: "Conf changes that changed a local replica's descriptor (replicas added, promoted, removed; each replica counts its own)."},
			stat(func(x multiraft.Stats) uint64 { return x.ReplicaChanges })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_replicas_removed_total", Help: "Local replicas destroyed: removed from their range (at apply, or found so in meta by replica GC)."},
			stat(func(x multiraft.Stats) uint64 { return x.ReplicasRemoved })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_versions_collected_total", Help: "Superseded versions older than the retention window that version collection removed."},
			stat(func(x multiraft.Stats) uint64 { return x.VersionsCollected })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pleiades_raftd_version_gc_rounds_total", Help: "Version collection rounds completed over every local replica (every --version-gc-interval)."},
			stat(func(x multiraft.Stats) uint64 { return x.VersionGCRounds })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pleiades_raftd_version_gc_running", Help: "1 while a version collection round runs."},
			statf(func(x multiraft.Stats) float64 { return float64(x.VersionGCRunning) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pleiades_raftd_replicas", Help: "Replicas hosted by this node."}, func() float64 {
			if st := s.store(); st != nil {
				return float64(len(st.Replicas()))
			}
			return 0
		}),
	)
}
