package stored

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/bus"
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

// Config configures the stored server.
type Config struct {
	// Dir is the daemon's own directory, normally <data-dir>/stored (the
	// runtime's DataDir). Required.
	Dir string
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	return Config{}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("stored: Dir is empty")
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

// Server is the stored daemon.
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
		return nil, errors.New("stored: Deps.Logger, Bus and Admin are required")
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
		return fmt.Errorf("stored: already started or stopped")
	}
	s.mu.started = true
	close(s.ready)
	s.log.Info("stored server started", slog.String("dir", s.cfg.Dir))
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
