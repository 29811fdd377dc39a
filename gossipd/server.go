package gossipd

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
const Name = "gossipd"

// Default addresses (see the ports table in README.md).
const (
	DefaultBusAddr   = "127.0.0.1:7403"
	DefaultAdminAddr = "127.0.0.1:7503"
)

// ReadyCheck is the name of the readiness check the server registers.
const ReadyCheck = Name

// Config configures the gossipd server.
type Config struct {
	// Join are the bus addresses of gossipds to join at start;
	// empty for the first node. Default none.
	Join []string
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	return Config{}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	for _, a := range c.Join {
		if err := config.ValidateAddr(a); err != nil {
			return fmt.Errorf("gossipd: Join %q: %w", a, err)
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

// Server is the gossipd daemon.
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
		return nil, errors.New("gossipd: Deps.Logger, Bus and Admin are required")
	}
	s := &Server{cfg: cfg, log: deps.Logger, ready: make(chan struct{}), errc: make(chan error, 1)}
	deps.Admin.AddReadyCheck(ReadyCheck, s.readyCheck)
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
		return fmt.Errorf("gossipd: already started or stopped")
	}
	s.mu.started = true
	close(s.ready)
	s.log.Info("gossipd server started", slog.Any("join", s.cfg.Join))
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
