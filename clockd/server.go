package clockd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/clockd/internal/monitor"
	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/backoff"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
)

// Name is the daemon's name.
const Name = "clockd"

// Default addresses (see the ports table in README.md).
const (
	DefaultBusAddr    = "127.0.0.1:7404"
	DefaultAdminAddr  = "127.0.0.1:7504"
	DefaultStoredAddr = "127.0.0.1:7401"
	DefaultGossipAddr = "127.0.0.1:7403"
)

// ReadyCheck is the name of the readiness check the server registers.
const ReadyCheck = Name

// OffsetsPath is the admin view of the per-peer offset estimates.
const OffsetsPath = "/v1/offsets"

// Config configures the clockd server.
type Config struct {
	// StoredAddr is the bus address of the node's stored, the home of the
	// persisted wall-time bound (see StoreBound). The daemon keeps the
	// bound in a file of its data directory instead when it is empty
	// (FileBound). Default 127.0.0.1:7401.
	StoredAddr string
	// GossipAddr is the bus address of the node's gossipd. When set,
	// clockd publishes AdvertiseAddr in the node's gossip metadata (key
	// MetadataKey) and probes the clockd address every alive or suspect
	// member publishes, in place of Peers, once gossipd answers. Empty
	// disables gossip. Default 127.0.0.1:7403.
	GossipAddr string
	// AdvertiseAddr is the bus address other nodes reach this clockd at,
	// published in gossip metadata. Empty means the bus's bound address;
	// when that is a wildcard (0.0.0.0, ::) nothing is published, so set
	// it then. Default empty.
	AdvertiseAddr string
	// Peers are the bus addresses of the peer clockds the monitor probes
	// until gossipd's membership is known (or always, without GossipAddr).
	// The node's own address may be listed: it is recognised by node id
	// and skipped. Default none.
	Peers []string
	// MaxOffset is the largest tolerated clock offset between nodes.
	// Update refuses timestamps further ahead of physical time.
	// Default 500ms.
	MaxOffset time.Duration
	// OffsetFraction: the node is unhealthy when its offset from a
	// majority of reachable peers exceeds OffsetFraction*MaxOffset.
	// In (0, 1]; default 0.8.
	OffsetFraction float64
	// FatalOnUnhealthy makes an unhealthy verdict a fatal error on Err,
	// so the daemon exits non-zero. Default false.
	FatalOnUnhealthy bool
	// ProbeInterval is the period of the offset probes. Default 1s.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe. Default 1s.
	ProbeTimeout time.Duration
	// ReadError is added to every estimate's uncertainty for reading the
	// two physical clocks. Default 1µs.
	ReadError time.Duration
	// BoundWindow is how far ahead of the clock the persisted wall-time
	// bound is kept; a restart waits up to about 1.5 windows.
	// Default 1s.
	BoundWindow time.Duration
	// ForwardJumpThreshold: a forward step of the physical clock larger
	// than this between two readings (taken at least every BoundWindow/4)
	// is logged and counted. Zero disables it. Default 0.
	ForwardJumpThreshold time.Duration
	// FatalOnForwardJump makes a detected forward jump fatal on Err.
	FatalOnForwardJump bool
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	return Config{
		StoredAddr:     DefaultStoredAddr,
		GossipAddr:     DefaultGossipAddr,
		MaxOffset:      500 * time.Millisecond,
		OffsetFraction: 0.8,
		ProbeInterval:  time.Second,
		ProbeTimeout:   time.Second,
		ReadError:      time.Microsecond,
		BoundWindow:    time.Second,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.StoredAddr != "" {
		if err := config.ValidateAddr(c.StoredAddr); err != nil {
			return fmt.Errorf("clockd: StoredAddr %q: %w", c.StoredAddr, err)
		}
	}
	if c.GossipAddr != "" {
		if err := config.ValidateAddr(c.GossipAddr); err != nil {
			return fmt.Errorf("clockd: GossipAddr %q: %w", c.GossipAddr, err)
		}
	}
	if c.AdvertiseAddr != "" {
		if err := config.ValidateAddr(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("clockd: AdvertiseAddr %q: %w", c.AdvertiseAddr, err)
		}
	}
	for _, a := range c.Peers {
		if err := config.ValidateAddr(a); err != nil {
			return fmt.Errorf("clockd: Peers %q: %w", a, err)
		}
	}
	switch {
	case c.MaxOffset <= 0:
		return fmt.Errorf("clockd: MaxOffset %v must be positive", c.MaxOffset)
	case !(c.OffsetFraction > 0 && c.OffsetFraction <= 1):
		return fmt.Errorf("clockd: OffsetFraction %v must be in (0, 1]", c.OffsetFraction)
	case c.ProbeInterval <= 0 || c.ProbeTimeout <= 0:
		return fmt.Errorf("clockd: ProbeInterval %v and ProbeTimeout %v must be positive", c.ProbeInterval, c.ProbeTimeout)
	case c.BoundWindow < 4*time.Millisecond:
		return fmt.Errorf("clockd: BoundWindow %v must be at least 4ms", c.BoundWindow)
	case c.ReadError < 0 || c.ForwardJumpThreshold < 0:
		return fmt.Errorf("clockd: ReadError and ForwardJumpThreshold must not be negative")
	}
	return nil
}

// Deps are the server's injected dependencies.
type Deps struct {
	// Logger is the daemon's logger. Required.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Bus is the daemon's bus endpoint, not yet started. Required.
	Bus *bus.Bus
	// Admin receives the readiness check and /v1/offsets. Required.
	Admin *admin.Server
	// Bound persists the wall-time upper bound: a StoreBound over the
	// node's stored, or a FileBound without one. Required.
	Bound BoundStore
	// NodeID is this node's id; probes answered with it are the node's
	// own and skipped.
	NodeID uint64
	// Physical is the physical clock (Unix ns); nil is the system clock.
	// Tests inject skewed or stepped clocks here.
	Physical func() int64
}

// Server is the clockd daemon.
type Server struct {
	cfg      Config
	log      *slog.Logger
	bus      *bus.Bus
	store    BoundStore
	nodeID   uint64
	physical func() int64
	clock    *hlc.Clock
	met      *metrics

	ready chan struct{}
	errc  chan error
	done  chan struct{} // closed by Stop
	wg    sync.WaitGroup

	serving   atomic.Bool
	bound     atomic.Int64 // persisted bound, valid once serving
	persistMu sync.Mutex

	mu struct {
		sync.Mutex
		started, stopped bool
		cancel           context.CancelFunc
		startErr         error // last failure while waiting to serve
		peerAddrs        []string
		fromGossip       bool // peerAddrs come from gossip membership
		peers            map[string]*peerState
		verdict          monitor.Verdict
		verdictAt        hlc.Timestamp
		subs             map[chan *clockpb.Health]struct{}
	}
}

// peerState is the monitor's knowledge of one peer.
type peerState struct {
	est       monitor.Estimate
	ok        bool  // last probe succeeded
	lastOK    int64 // physical ns of the last successful probe
	lastProbe int64 // physical ns of the last probe
	err       string
	nodeID    uint64
	self      bool
}

// New validates cfg, registers the bus handlers, the readiness check and
// /v1/offsets, and returns an unstarted server.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil || deps.Bus == nil || deps.Admin == nil || deps.Bound == nil {
		return nil, errors.New("clockd: Deps.Logger, Bus, Admin and Bound are required")
	}
	s := &Server{
		cfg: cfg, log: deps.Logger, bus: deps.Bus, store: deps.Bound, nodeID: deps.NodeID,
		physical: deps.Physical,
		ready:    make(chan struct{}), errc: make(chan error, 1), done: make(chan struct{}),
	}
	if s.physical == nil {
		s.physical = hlc.NewWallClock().Now
	}
	met, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	s.met = met
	s.clock = hlc.NewClock(hlc.Config{
		Physical:             s.physical,
		MaxOffset:            cfg.MaxOffset,
		ForwardJumpThreshold: cfg.ForwardJumpThreshold,
		OnForwardJump:        s.onForwardJump,
	})
	s.mu.peers = make(map[string]*peerState)
	s.mu.peerAddrs = slices.Clone(cfg.Peers)
	s.mu.subs = make(map[chan *clockpb.Health]struct{})
	s.mu.verdict = monitor.Verdict{Healthy: true}
	s.register()
	deps.Admin.AddReadyCheck(ReadyCheck, s.readyCheck)
	deps.Admin.SetAddress("stored", cfg.StoredAddr)
	deps.Admin.SetAddress("gossip", cfg.GossipAddr)
	deps.Admin.Handle(OffsetsPath, s.offsetsHandler())
	return s, nil
}

// Clock returns the server's clock (tests and benchmarks).
func (s *Server) Clock() *hlc.Clock { return s.clock }

func (s *Server) onForwardJump(jump time.Duration) {
	s.met.forwardJumps.Inc()
	s.log.Warn("physical clock jumped forward", slog.Duration("jump", jump), slog.Duration("threshold", s.cfg.ForwardJumpThreshold))
	if s.cfg.FatalOnForwardJump {
		s.fail(fmt.Errorf("clockd: physical clock jumped forward by %v (threshold %v)", jump, s.cfg.ForwardJumpThreshold))
	}
}

// fail reports a fatal error on Err (the first one only).
func (s *Server) fail(err error) {
	select {
	case s.errc <- err:
	default:
	}
}

func (s *Server) readyCheck(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.mu.stopped:
		return errors.New("stopped")
	case !s.mu.started:
		return errors.New("not started")
	case !s.serving.Load():
		if s.mu.startErr != nil {
			return fmt.Errorf("not serving: %w", s.mu.startErr)
		}
		return errors.New("waiting for physical time to pass the persisted wall-time bound")
	case !s.mu.verdict.Healthy:
		return errors.New(s.mu.verdict.Reason)
	}
	return nil
}

// Start starts the server; it does not block. The server serves Now and
// Update once physical time has passed the bound persisted by the previous
// run and a new bound is persisted; Ready is closed then.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.started || s.mu.stopped {
		return errors.New("clockd: already started or stopped")
	}
	s.mu.started = true
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.mu.cancel = cancel
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		s.run(rctx)
	}()
	go func() {
		defer s.wg.Done()
		s.monitorLoop(rctx)
	}()
	if s.cfg.GossipAddr != "" {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.gossipLoop(rctx)
		}()
	}
	s.log.Info("clockd server started", slog.String("stored_addr", s.cfg.StoredAddr),
		slog.String("gossip_addr", s.cfg.GossipAddr), slog.Any("peers", s.cfg.Peers), slog.Duration("max_offset", s.cfg.MaxOffset))
	return nil
}

// run waits out the previous run's bound, then keeps the bound ahead.
func (s *Server) run(ctx context.Context) {
	if !s.waitBound(ctx) {
		return
	}
	s.serving.Store(true)
	close(s.ready)
	s.log.Info("clockd serving", slog.String("now", s.clock.Now().String()), slog.Int64("bound_ns", s.bound.Load()))
	t := time.NewTicker(s.cfg.BoundWindow / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Reading the clock here also feeds forward-jump detection.
		now := s.clock.Now()
		if err := s.persist(ctx, now.WallTime+int64(s.cfg.BoundWindow/2)); err != nil && ctx.Err() == nil {
			s.log.Warn("renewing the wall-time bound failed", slog.Any("err", err))
		}
	}
}

// waitBound loads the persisted bound, waits until physical time has
// passed it, and persists a new one. It reports false when ctx ends first.
func (s *Server) waitBound(ctx context.Context) bool {
	setErr := func(err error) {
		s.mu.Lock()
		s.mu.startErr = err
		s.mu.Unlock()
	}
	retry := backoff.New(10*time.Millisecond, time.Second)
	var old int64
	for {
		b, err := s.store.LoadBound(ctx)
		if err == nil {
			old = b
			break
		}
		setErr(fmt.Errorf("load the wall-time bound: %w", err))
		s.log.Warn("loading the wall-time bound failed; retrying", slog.Any("err", err))
		if !retry.Wait(ctx) {
			return false
		}
	}
	if p := s.physical(); p <= old {
		s.log.Info("waiting for physical time to pass the persisted bound", slog.Duration("wait", time.Duration(old-p)))
	}
	for {
		p := s.physical()
		if p > old {
			break
		}
		// The physical clock may be a test's; poll rather than trust one
		// long timer.
		if !s.pause(ctx, min(time.Duration(old-p+1), 10*time.Millisecond)) {
			return false
		}
	}
	s.clock.Forward(hlc.Timestamp{WallTime: old})
	retry.Reset()
	for {
		err := s.persist(ctx, s.physical())
		if err == nil {
			setErr(nil)
			return true
		}
		setErr(err)
		s.log.Warn("persisting the wall-time bound failed; retrying", slog.Any("err", err))
		if !retry.Wait(ctx) {
			return false
		}
	}
}

func (s *Server) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// persist makes sure the persisted bound is above need: if it is not, it
// saves max(need, physical, clock) + BoundWindow.
func (s *Server) persist(ctx context.Context, need int64) error {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	if need < s.bound.Load() {
		return nil
	}
	nb := max(need, s.physical(), s.clock.Peek().WallTime) + int64(s.cfg.BoundWindow)
	if err := s.store.SaveBound(ctx, nb); err != nil {
		return fmt.Errorf("clockd: persist wall-time bound: %w", err)
	}
	s.bound.Store(nb)
	s.met.bound.Set(float64(nb) / 1e9)
	return nil
}

// covered makes sure ts is below the persisted bound before it leaves.
func (s *Server) covered(ctx context.Context, ts hlc.Timestamp) error {
	if ts.WallTime < s.bound.Load() {
		return nil
	}
	if err := s.persist(ctx, ts.WallTime); err != nil {
		return bus.Errorf(bus.CodeUnavailable, "clockd: cannot persist the wall-time bound: %v", err)
	}
	return nil
}

// Now returns a reading of the clock that is covered by the persisted
// bound; it fails with bus.CodeUnavailable before the server serves.
func (s *Server) Now(ctx context.Context) (hlc.Timestamp, error) {
	if !s.serving.Load() {
		return hlc.Timestamp{}, errNotServing
	}
	ts := s.clock.Now()
	if err := s.covered(ctx, ts); err != nil {
		return hlc.Timestamp{}, err
	}
	return ts, nil
}

// Update folds observed into the clock; a negative timestamp or one more
// than MaxOffset ahead of physical time is refused with
// bus.CodeInvalidArgument and leaves the clock unchanged.
func (s *Server) Update(ctx context.Context, observed hlc.Timestamp) (hlc.Timestamp, error) {
	if err := observed.Valid(); err != nil {
		return hlc.Timestamp{}, bus.Errorf(bus.CodeInvalidArgument, "clockd: %v", err)
	}
	if !s.serving.Load() {
		return hlc.Timestamp{}, errNotServing
	}
	ts, err := s.clock.Update(observed)
	if err != nil {
		s.met.refused.Inc()
		return hlc.Timestamp{}, bus.Errorf(bus.CodeInvalidArgument, "clockd: %v", err)
	}
	if err := s.covered(ctx, ts); err != nil {
		return hlc.Timestamp{}, err
	}
	return ts, nil
}

var errNotServing = bus.Errorf(bus.CodeUnavailable, "clockd: not serving yet (waiting for physical time to pass the persisted wall-time bound)")

// Ready is closed once the server serves.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err delivers a fatal failure after Start: an unhealthy verdict with
// FatalOnUnhealthy, a forward jump with FatalOnForwardJump.
func (s *Server) Err() <-chan error { return s.errc }

// Stop stops the server's loops and health streams; it is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.mu.stopped {
		s.mu.Unlock()
		return nil
	}
	s.mu.stopped = true
	close(s.done)
	if s.mu.cancel != nil {
		s.mu.cancel()
	}
	s.mu.Unlock()
	s.serving.Store(false)
	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("clockd: stop: %w", ctx.Err())
	}
}
