package raftd

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

// Config configures the raftd server.
type Config struct {
	// StoredAddr is the bus address of the node's stored (raft log and
	// range data).
	// Default 127.0.0.1:7401.
	StoredAddr string
	// GossipAddr is the bus address of the node's gossipd (who is alive,
	// where); optional at start-up.
	// Default 127.0.0.1:7403.
	GossipAddr string
	// ClockAddr is the bus address of the node's clockd (timestamps,
	// clock health).
	// Default 127.0.0.1:7404.
	ClockAddr string
	// Peers are the bus addresses of other nodes' raftds, for
	// clusters without gossipd. Default none.
	Peers []string
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	return Config{StoredAddr: DefaultStoredAddr, GossipAddr: DefaultGossipAddr, ClockAddr: DefaultClockAddr}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if err := config.ValidateAddr(c.StoredAddr); err != nil {
		return fmt.Errorf("raftd: StoredAddr %q: %w", c.StoredAddr, err)
	}
	if err := config.ValidateAddr(c.GossipAddr); err != nil {
		return fmt.Errorf("raftd: GossipAddr %q: %w", c.GossipAddr, err)
	}
	if err := config.ValidateAddr(c.ClockAddr); err != nil {
		return fmt.Errorf("raftd: ClockAddr %q: %w", c.ClockAddr, err)
	}
	for _, a := range c.Peers {
		if err := config.ValidateAddr(a); err != nil {
			return fmt.Errorf("raftd: Peers %q: %w", a, err)
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

// Server is the raftd daemon.
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
		return nil, errors.New("raftd: Deps.Logger, Bus and Admin are required")
	}
	s := &Server{cfg: cfg, log: deps.Logger, ready: make(chan struct{}), errc: make(chan error, 1)}
	deps.Admin.AddReadyCheck(ReadyCheck, s.readyCheck)
	deps.Admin.SetAddress("stored", cfg.StoredAddr)
	deps.Admin.SetAddress("gossip", cfg.GossipAddr)
	deps.Admin.SetAddress("clock", cfg.ClockAddr)
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
		return fmt.Errorf("raftd: already started or stopped")
	}
	s.mu.started = true
	close(s.ready)
	s.log.Info("raftd server started", slog.String("stored_addr", s.cfg.StoredAddr), slog.String("gossip_addr", s.cfg.GossipAddr), slog.String("clock_addr", s.cfg.ClockAddr), slog.Any("peers", s.cfg.Peers))
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
