package stored

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/stored/engine"
)

// Name is the daemon's name.
const Name = "stored"

// Default addresses (see the ports table in README.md).
const (
	DefaultBusAddr   = "127.0.0.1:7401"
	DefaultAdminAddr = "127.0.0.1:7501"
)

// ReadyCheck is the name of the readiness check the server registers.
const ReadyCheck = Name

// DiskCondition is the name of the readiness condition that fails (the
// daemon stays ready) while writes are refused for want of disk space.
const DiskCondition = "disk"

// Deps are the server's injected dependencies.
type Deps struct {
	// Logger is the daemon's logger. Required.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Bus is the daemon's bus endpoint. Required.
	Bus *bus.Bus
	// Admin receives the readiness check and the /v1/store view. Required.
	Admin *admin.Server
	// Now is the clock of leases; nil means time.Now.
	Now func() time.Time
	// NodeID is the node's id: only daemons with a node certificate of
	// this id may use the engine (see rules), and disk-full errors name
	// it. Required.
	NodeID uint64
	// StatFS reads the free space of Config.Dir's filesystem; nil means
	// statfs(2).
	StatFS StatFS
}

// Server is the stored daemon: the engine served on the bus.
type Server struct {
	cfg     Config
	log     *slog.Logger
	nodeID  uint64
	now     func() time.Time
	ready   chan struct{}
	errc    chan error
	metrics *metrics
	disk    *diskMonitor

	// eng is the open engine between Start and Stop, nil otherwise;
	// handlers load it once per call.
	eng atomic.Pointer[engine.Engine]

	snaps   leaseTable[*engine.Snapshot]
	ingests leaseTable[*ingest]
	stages  leaseTable[*staged]

	// stopc is closed by Stop: it ends the reaper and running streams.
	stopc chan struct{}
	wg    sync.WaitGroup

	mu struct {
		sync.Mutex
		started, stopped bool
	}
}

// New validates cfg, registers the store protocol on deps.Bus, the
// readiness check and the /v1/store view on deps.Admin and the metrics,
// and returns an unstarted server. The database opens in Start.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.NodeID == 0 {
		return nil, errors.New("stored: Deps.NodeID is required")
	}
	if deps.Logger == nil || deps.Bus == nil || deps.Admin == nil {
		return nil, errors.New("stored: Deps.Logger, Bus and Admin are required")
	}
	s := &Server{
		cfg: cfg, log: deps.Logger, now: deps.Now,
		ready: make(chan struct{}), errc: make(chan error, 1), stopc: make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	seed := uint64(s.now().UnixMicro()) // ids never repeat across restarts
	s.snaps.init(cfg.MaxSnapshots, seed, func(sn *engine.Snapshot) { sn.Release() })
	s.ingests.init(cfg.MaxIngests, seed, func(in *ingest) { in.close() })
	s.stages.init(cfg.MaxStagedWrites, seed, func(st *staged) { st.close() })
	s.disk = newDiskMonitor(cfg, deps.NodeID, deps.StatFS, s.log, time.Now) // not the lease clock
	s.metrics = newMetrics(s)
	if deps.Registerer != nil {
		if err := s.metrics.register(deps.Registerer); err != nil {
			return nil, fmt.Errorf("stored: register metrics: %w", err)
		}
	}
	s.nodeID = deps.NodeID
	switch p := cfg.SocketPath(); {
	case p == "":
	case len(p) > bus.MaxSocketPath && !filepath.IsAbs(cfg.LocalSocket):
		// Under a deep data dir: the daemons still talk over QUIC.
		s.log.Warn("stored: no local socket: its path is too long for a Unix socket; give --local-socket a shorter absolute path",
			slog.String("path", p), slog.Int("limit", bus.MaxSocketPath))
	default:
		if err := deps.Bus.ListenLocal(p); err != nil {
			return nil, fmt.Errorf("stored: local socket: %w", err)
		}
	}
	s.register(deps.Bus)
	deps.Admin.AddReadyCheck(ReadyCheck, s.readyCheck)
	deps.Admin.AddCondition(DiskCondition, s.disk.condition)
	deps.Admin.Handle("/v1/store", admin.JSON(func(*http.Request) (any, error) { return s.Status() }))
	return s, nil
}

func (s *Server) readyCheck(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.mu.stopped:
		return errors.New("stopped")
	case !s.mu.started:
		return errors.New("not started")
	}
	if e := s.eng.Load(); e != nil {
		return e.Failed()
	}
	return nil
}

// Start opens the database in Config.DBDir and starts the lease reaper;
// it does not block.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.started || s.mu.stopped {
		return errors.New("stored: already started or stopped")
	}
	// The first disk check runs before RocksDB opens: on a full disk it
	// releases the ballast, which gives the open (a new WAL, manifest
	// and options file) its room.
	s.disk.start()
	e, err := engine.Open(s.cfg.DBDir(), s.cfg.Engine)
	if err != nil {
		return fmt.Errorf("stored: %w", err)
	}
	s.eng.Store(e)
	s.mu.started = true
	s.wg.Add(2)
	go s.reapLoop()
	go func() {
		defer s.wg.Done()
		s.disk.loop(s.stopc)
	}()
	close(s.ready)
	s.log.Info("stored server started", slog.String("db", s.cfg.DBDir()))
	return nil
}

// reapLoop drops expired snapshots and ingest sessions every
// ReapInterval; it exits when Stop closes stopc.
func (s *Server) reapLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
			now := s.now()
			if n := s.snaps.reap(now); n > 0 {
				s.log.Debug("snapshots expired", slog.Int("count", n))
			}
			if n := s.ingests.reap(now); n > 0 {
				s.log.Debug("ingest sessions expired", slog.Int("count", n))
			}
			if n := s.stages.reap(now); n > 0 {
				s.log.Warn("staged writes expired unwritten", slog.Int("count", n))
			}
		}
	}
}

// Ready is closed once the server has started.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err delivers a fatal failure after Start: a failed WAL fsync, after
// which the database refuses writes until the daemon restarts.
func (s *Server) Err() <-chan error { return s.errc }

// Engine returns the open engine, nil before Start and after Stop. It is
// meant for in-process tools and tests; daemons use the bus.
func (s *Server) Engine() *engine.Engine { return s.eng.Load() }

// Stop refuses new calls (CodeUnavailable), ends running streams, stops
// the reaper, releases every snapshot and ingest session and closes the
// database once the calls in flight are done. It is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.stopped {
		return nil
	}
	s.mu.stopped = true
	e := s.eng.Swap(nil)
	close(s.stopc)
	s.wg.Wait()
	s.snaps.closeAll()
	s.ingests.closeAll()
	s.stages.closeAll()
	if e == nil {
		return nil
	}
	// Close waits for the engine calls in flight; each is short (a
	// stream checks stopc between chunks).
	if err := e.Close(); err != nil {
		return fmt.Errorf("stored: %w", err)
	}
	s.log.Info("stored server stopped")
	return nil
}
