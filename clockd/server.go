package clockd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
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

// Config configures the clockd server.
type Config struct {
	// StoredAddr is the bus address of the node's stored, where the
	// persisted wall-time upper bound will live.
	// Default 127.0.0.1:7401.
	StoredAddr string
	// GossipAddr is the bus address of the node's gossipd (peer list);
	// optional at start-up.
	// Default 127.0.0.1:7403.
	GossipAddr string
	// Peers are the bus addresses of peer clockds to probe when
	// gossipd is absent. Default none.
	Peers []string
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	return Config{StoredAddr: DefaultStoredAddr, GossipAddr: DefaultGossipAddr}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if err := config.ValidateAddr(c.StoredAddr); err != nil {
		return fmt.Errorf("clockd: StoredAddr %q: %w", c.StoredAddr, err)
	}
	if err := config.ValidateAddr(c.GossipAddr); err != nil {
		return fmt.Errorf("clockd: GossipAddr %q: %w", c.GossipAddr, err)
	}
	for _, a := range c.Peers {
		if err := config.ValidateAddr(a); err != nil {
			return fmt.Errorf("clockd: Peers %q: %w", a, err)
		}
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
}

// Server is the clockd daemon.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}
	errc  chan error

	mu struct {
		sync.Mutex
		started, stopped bool
	}
}

// New validates cfg, registers the readiness check on deps.Admin and
// returns an unstarted server.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil || deps.Bus == nil || deps.Admin == nil {
		return nil, errors.New("clockd: Deps.Logger, Bus and Admin are required")
	}
	s := &Server{cfg: cfg, log: deps.Logger, ready: make(chan struct{}), errc: make(chan error, 1)}
	deps.Admin.AddReadyCheck(ReadyCheck, s.readyCheck)
	deps.Admin.SetAddress("stored", cfg.StoredAddr)
	deps.Admin.SetAddress("gossip", cfg.GossipAddr)
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
	return nil
}

// Start starts the server; it does not block.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.started || s.mu.stopped {
		return fmt.Errorf("clockd: already started or stopped")
	}
	s.mu.started = true
	close(s.ready)
	s.log.Info("clockd server started", slog.String("stored_addr", s.cfg.StoredAddr), slog.String("gossip_addr", s.cfg.GossipAddr), slog.Any("peers", s.cfg.Peers))
	return nil
}

// Ready is closed once the server has started.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err delivers a fatal failure after Start.
func (s *Server) Err() <-chan error { return s.errc }

// Stop stops the server; it is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.stopped = true
	return nil
}
