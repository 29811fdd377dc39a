package msgd

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
const Name = "msgd"

// Defaults (see the ports table).
const (
	DefaultBusAddr         = "127.0.0.1:7406"
	DefaultAdminAddr       = "127.0.0.1:7506"
	DefaultGossipAddr      = "127.0.0.1:7403"
	DefaultNATSPort        = 4222
	DefaultNATSClusterPort = 6222
)

// ReadyCheck is the name of the readiness check the server registers.
const ReadyCheck = Name

// Config configures the messaging server.
type Config struct {
	// NATSPort is the TCP port of the NATS client listener. Default 4222.
	NATSPort int
	// NATSClusterPort is the TCP port of the NATS route listener. Default 6222.
	NATSClusterPort int
	// GossipAddr is the bus address of the node's gossipd, used to find
	// the other hosts' routes; optional at start-up. Default 127.0.0.1:7403.
	GossipAddr string
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	return Config{NATSPort: DefaultNATSPort, NATSClusterPort: DefaultNATSClusterPort, GossipAddr: DefaultGossipAddr}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.NATSPort < 0 || c.NATSPort > 65535 {
		return fmt.Errorf("msgd: NATSPort %d out of range 0..65535", c.NATSPort)
	}
	if c.NATSClusterPort < 0 || c.NATSClusterPort > 65535 {
		return fmt.Errorf("msgd: NATSClusterPort %d out of range 0..65535", c.NATSClusterPort)
	}
	if c.NATSPort != 0 && c.NATSPort == c.NATSClusterPort {
		return fmt.Errorf("msgd: NATSPort and NATSClusterPort are both %d", c.NATSPort)
	}
	if err := config.ValidateAddr(c.GossipAddr); err != nil {
		return fmt.Errorf("msgd: GossipAddr %q: %w", c.GossipAddr, err)
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
	// Admin receives the readiness check and, later, /v1 views. Required.
	Admin *admin.Server
}

// Server is the messaging daemon.
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
		return nil, errors.New("msgd: Deps.Logger, Bus and Admin are required")
	}
	s := &Server{cfg: cfg, log: deps.Logger, ready: make(chan struct{}), errc: make(chan error, 1)}
	deps.Admin.AddReadyCheck(ReadyCheck, s.readyCheck)
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
		return errors.New("msgd: already started or stopped")
	}
	s.mu.started = true
	close(s.ready)
	s.log.Info("messaging server started", slog.Int("nats_port", s.cfg.NATSPort), slog.Int("nats_cluster_port", s.cfg.NATSClusterPort))
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
