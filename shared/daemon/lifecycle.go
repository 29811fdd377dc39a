package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Lifecycle is the start and stop bookkeeping of a daemon's server, which
// every server would otherwise write again: refusing a second Start or a
// Start after Stop, a lifetime context that Stop cancels, the goroutines
// it owns (Tasks), the Ready channel, the Err channel for a fatal failure
// after Start, and the admin readiness check that follows all of it.
//
// A server keeps one in a field and delegates to it:
//
//	func New(cfg Config, deps Deps) (*Server, error) {
//		s := &Server{life: daemon.NewLifecycle(Name)}
//		deps.Admin.AddReadyCheck(ReadyCheck, s.life.ReadyCheck)
//		return s, nil
//	}
//
//	func (s *Server) Start(ctx context.Context) error {
//		lctx, err := s.life.Start()
//		if err != nil {
//			return err
//		}
//		s.life.Go(func() { s.loop(lctx) }) // exits when Stop cancels lctx
//		s.life.MarkReady()
//		return nil
//	}
//
//	func (s *Server) Ready() <-chan struct{}   { return s.life.Ready() }
//	func (s *Server) Err() <-chan error        { return s.life.Err() }
//	func (s *Server) Stop(ctx context.Context) error { return s.life.Stop(ctx) }
//
// Its methods are safe for concurrent use.
type Lifecycle struct {
	// Tasks are the server's goroutines; Stop closes and waits for them.
	Tasks

	name  string
	ready chan struct{}
	errc  chan error

	mu struct {
		sync.Mutex
		started, stopped, ready bool
		cancel                  context.CancelFunc
	}
}

// NewLifecycle returns the lifecycle of an unstarted server of daemon
// name (used in error messages).
func NewLifecycle(name string) *Lifecycle {
	return &Lifecycle{name: name, ready: make(chan struct{}), errc: make(chan error, 1)}
}

// Start marks the server started and returns its lifetime context,
// cancelled by Stop. It fails if the server was started or stopped before.
func (l *Lifecycle) Start() (context.Context, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.started || l.mu.stopped {
		return nil, fmt.Errorf("%s: already started or stopped", l.name)
	}
	l.mu.started = true
	ctx, cancel := context.WithCancel(context.Background())
	l.mu.cancel = cancel
	return ctx, nil
}

// MarkReady closes the Ready channel (once) and makes ReadyCheck pass
// until Stop.
func (l *Lifecycle) MarkReady() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.ready || l.mu.stopped {
		return
	}
	l.mu.ready = true
	close(l.ready)
}

// Ready is closed once MarkReady was called.
func (l *Lifecycle) Ready() <-chan struct{} { return l.ready }

// Err delivers the first failure given to Fail.
func (l *Lifecycle) Err() <-chan error { return l.errc }

// Fail reports a fatal failure after Start on Err (the daemon's main then
// stops and exits 1). Only the first failure is kept.
func (l *Lifecycle) Fail(err error) {
	select {
	case l.errc <- err:
	default:
	}
}

// ReadyCheck is the server's admin readiness check: nil between
// MarkReady and Stop.
func (l *Lifecycle) ReadyCheck(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.mu.stopped:
		return errors.New("stopped")
	case !l.mu.started:
		return errors.New("not started")
	case !l.mu.ready:
		return errors.New("starting")
	}
	return nil
}

// Stopping reports whether Stop was called.
func (l *Lifecycle) Stopping() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.stopped
}

// Stop marks the server stopped, cancels the lifetime context, refuses new
// tasks and waits for the running ones until ctx ends (then it returns an
// error wrapping ctx's, and they finish on their own). It is idempotent; a
// later call waits again.
func (l *Lifecycle) Stop(ctx context.Context) error {
	l.mu.Lock()
	l.mu.stopped = true
	if l.mu.cancel != nil {
		l.mu.cancel()
	}
	l.mu.Unlock()
	if err := l.Tasks.Stop(ctx); err != nil {
		return fmt.Errorf("%s: stop: %w", l.name, err)
	}
	return nil
}
