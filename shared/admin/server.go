package admin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pleiades-db/pleiades/shared/proto/adminpb"
)

// DefaultCheckTimeout bounds one run of one check.
const DefaultCheckTimeout = 2 * time.Second

// Config configures the admin server.
type Config struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:7501"; port 0
	// picks a free port (read it back with Addr). Required.
	Addr string
	// CheckTimeout bounds each health or readiness check. Default 2s.
	CheckTimeout time.Duration
	// Pprof serves /debug/pprof/ (the runtime profiles); off by default.
	Pprof bool
	// Token, when set, is the bearer token /metrics, /v1/... and
	// /debug/pprof/ require ("Authorization: Bearer <token>"); /healthz
	// and /readyz stay open for probes.
	Token string
}

// Deps are the server's injected dependencies.
type Deps struct {
	// Logger receives lifecycle and error logs. Required.
	Logger *slog.Logger
	// Gatherer is the registry /metrics serves; nil serves an empty one.
	Gatherer prometheus.Gatherer
}

// Info identifies the daemon in its status.
type Info struct {
	// Daemon is the daemon's name, e.g. "stored".
	Daemon string
	// NodeID is the node's identity.
	NodeID uint64
	// Version is the build version of the binary.
	Version string
}

// CheckFunc is a health or readiness check: nil means healthy or ready.
type CheckFunc func(ctx context.Context) error

// Server is a daemon's HTTP admin endpoint.
type Server struct {
	cfg     Config
	log     *slog.Logger
	info    Info
	started time.Time
	mux     *http.ServeMux
	errc    chan error

	// base is every request's parent context; Stop cancels it, so that
	// handlers still running (a readiness check waiting on something that
	// is stopping, a profile) end instead of holding the shutdown.
	base       context.Context
	cancelBase context.CancelFunc

	mu struct {
		sync.Mutex
		ready     map[string]CheckFunc
		health    map[string]CheckFunc
		addresses map[string]string
		notAfter  func() time.Time
		srv       *http.Server
		ln        net.Listener
		done      chan struct{} // closed when Serve returns
		stopped   bool
		// inflight are the requests being served, for the log of a slow
		// stop.
		inflight map[*http.Request]time.Time
		// conns are the open connections and their states.
		conns map[net.Conn]connState

		// conditions are readiness checks whose failure degrades the
		// daemon without making it unready (AddCondition).
		conditions map[string]CheckFunc
	}
}

// New validates cfg and returns an unstarted server.
func New(cfg Config, deps Deps, info Info) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("admin: Config.Addr is required")
	}
	if deps.Logger == nil {
		return nil, errors.New("admin: Deps.Logger is required")
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	g := deps.Gatherer
	if g == nil {
		g = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:     cfg,
		log:     deps.Logger,
		info:    info,
		started: time.Now(),
		mux:     http.NewServeMux(),
		errc:    make(chan error, 1),
	}
	s.mu.ready = map[string]CheckFunc{}
	s.mu.health = map[string]CheckFunc{}
	s.mu.conditions = map[string]CheckFunc{}
	s.mu.addresses = map[string]string{}
	s.mu.inflight = map[*http.Request]time.Time{}
	s.mu.conns = map[net.Conn]connState{}
	s.base, s.cancelBase = context.WithCancel(context.Background())

	s.mux.Handle("/healthz", s.checksHandler("healthz", func() (map[string]CheckFunc, map[string]CheckFunc) { return s.checks(false), nil }))
	s.mux.Handle("/readyz", s.checksHandler("readyz", func() (map[string]CheckFunc, map[string]CheckFunc) { return s.checks(true), s.conditions() }))
	s.mux.Handle("/metrics", s.guard(promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)})))
	if cfg.Pprof {
		s.mux.Handle("/debug/pprof/", s.guard(http.HandlerFunc(pprof.Index)))
		s.mux.Handle("/debug/pprof/cmdline", s.guard(http.HandlerFunc(pprof.Cmdline)))
		s.mux.Handle("/debug/pprof/profile", s.guard(http.HandlerFunc(pprof.Profile)))
		s.mux.Handle("/debug/pprof/symbol", s.guard(http.HandlerFunc(pprof.Symbol)))
		s.mux.Handle("/debug/pprof/trace", s.guard(http.HandlerFunc(pprof.Trace)))
	}
	s.Handle("/v1/status", JSON(func(r *http.Request) (any, error) {
		st, err := s.Status(r.Context())
		if err != nil {
			return nil, err
		}
		return StatusJSON(st), nil
	}))
	return s, nil
}

// AddReadyCheck registers (or replaces) a readiness check.
func (s *Server) AddReadyCheck(name string, check CheckFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.ready[name] = check
}

// AddCondition registers (or replaces) a condition: a check whose failure
// degrades the daemon without making it unready. The daemon still serves,
// with a limitation the error names (stored refusing writes on a full
// disk, while reads go on), so supervisors and load balancers keep it in
// service. /readyz still answers 200, listing each failing condition as a
// "[!]name degraded: error" line; /v1/status reports it in checks (ok
// false, degraded true) and sets degraded. A name used by a readiness
// check must not be reused for a condition.
func (s *Server) AddCondition(name string, check CheckFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.conditions[name] = check
}

func (s *Server) conditions() map[string]CheckFunc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.mu.conditions)
}

// AddHealthCheck registers (or replaces) a liveness check.
func (s *Server) AddHealthCheck(name string, check CheckFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.health[name] = check
}

// SetCertNotAfter sets how Status learns the end of validity of the
// daemon's certificate.
func (s *Server) SetCertNotAfter(f func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.notAfter = f
}

// SetAddress records a bound address under name ("bus", "nats", ...) for
// the status. The admin address itself is recorded by Start.
func (s *Server) SetAddress(name, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.addresses[name] = addr
}

// Handle mounts h at pattern (net/http.ServeMux syntax), for a daemon's
// own /v1/... views. It panics if pattern is already taken, like ServeMux.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.guard(h))
}

// Handler returns the server's routes, e.g. for httptest.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) checks(ready bool) map[string]CheckFunc {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ready {
		return maps.Clone(s.mu.ready)
	}
	return maps.Clone(s.mu.health)
}

// runChecks runs every check concurrently, each under the check timeout,
// and returns each one's error (nil when it passed).
func (s *Server) runChecks(ctx context.Context, checks map[string]CheckFunc) map[string]error {
	out := make(map[string]error, len(checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, check := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
			defer cancel()
			err := runCheck(cctx, check)
			mu.Lock()
			out[name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// runCheck runs check, returning early with ctx's error if the check
// ignores its deadline. HAZARD: such a check's goroutine is abandoned and
// finishes on its own; checks must honour ctx so that none outlives Stop.
func runCheck(ctx context.Context, check CheckFunc) error {
	done := make(chan error, 1)
	go func() { done <- check(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("check timed out: %w", ctx.Err())
	}
}

// Ready runs the readiness checks and reports whether all passed, with
// the error of each failed check.
func (s *Server) Ready(ctx context.Context) (bool, map[string]error) {
	res := s.runChecks(ctx, s.checks(true))
	failed := map[string]error{}
	for name, err := range res {
		if err != nil {
			failed[name] = err
		}
	}
	return len(failed) == 0, failed
}

// Status runs the readiness checks and conditions and returns the
// daemon's status.
func (s *Server) Status(ctx context.Context) (*adminpb.Status, error) {
	res := s.runChecks(ctx, s.checks(true))
	conds := s.runChecks(ctx, s.conditions())
	s.mu.Lock()
	addrs := maps.Clone(s.mu.addresses)
	notAfter := s.mu.notAfter
	s.mu.Unlock()
	st := &adminpb.Status{
		Daemon:            s.info.Daemon,
		NodeId:            s.info.NodeID,
		Version:           s.info.Version,
		UptimeSeconds:     time.Since(s.started).Seconds(),
		StartedAtUnixNano: s.started.UnixNano(),
		Addresses:         addrs,
		Ready:             true,
		Checks:            make(map[string]*adminpb.Check, len(res)),
	}
	if notAfter != nil {
		if t := notAfter(); !t.IsZero() {
			st.CertNotAfterUnix = t.Unix()
		}
	}
	for name, err := range res {
		c := &adminpb.Check{Ok: err == nil}
		if err != nil {
			c.Error = err.Error()
			st.Ready = false
		}
		st.Checks[name] = c
	}
	for name, err := range conds {
		c := &adminpb.Check{Ok: err == nil}
		if err != nil {
			c.Error, c.Degraded = err.Error(), true
			st.Degraded = true
		}
		st.Checks[name] = c
	}
	return st, nil
}

// checksHandler serves /healthz or /readyz: get returns the checks, whose
// failure fails the answer, and the conditions, whose failure is listed
// only (see AddCondition).
func (s *Server) checksHandler(what string, get func() (checks, conditions map[string]CheckFunc)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		_, verbose := q["verbose"]
		checks, conds := get()
		for _, name := range q["exclude"] {
			delete(checks, name)
			delete(conds, name)
		}
		all := maps.Clone(checks)
		maps.Copy(all, conds)
		res := s.runChecks(r.Context(), all)
		names := slices.Sorted(maps.Keys(res))
		var body []byte
		failed := false
		for _, name := range names {
			_, cond := conds[name]
			switch err := res[name]; {
			case err != nil && cond:
				body = fmt.Appendf(body, "[!]%s degraded: %v\n", name, err)
			case err != nil:
				failed = true
				body = fmt.Appendf(body, "[-]%s failed: %v\n", name, err)
			case verbose:
				body = fmt.Appendf(body, "[+]%s ok\n", name)
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if failed {
			w.WriteHeader(http.StatusServiceUnavailable)
			body = fmt.Appendf(body, "%s check failed\n", what)
		} else {
			body = fmt.Appendf(body, "ok\n")
		}
		_, _ = w.Write(body)
	})
}

// Start listens on Config.Addr and serves in the background. ctx bounds
// start-up only. Serving failures after start arrive on Err.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.srv != nil || s.mu.stopped {
		return errors.New("admin: already started or stopped")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin: listen %s: %w", s.cfg.Addr, err)
	}
	s.mu.ln = ln
	s.mu.addresses["admin"] = ln.Addr().String()
	if !loopbackOnly(ln.Addr()) {
		s.log.Warn("admin endpoint listens beyond loopback: anyone who reaches it reads /metrics and /v1/...; "+
			"bind it to 127.0.0.1 or set a bearer token (--admin-token-file)",
			slog.String("addr", ln.Addr().String()), slog.Bool("token", s.cfg.Token != ""))
	}
	s.mu.srv = &http.Server{
		Handler:           s.track(s.mux),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ConnState:         s.connState,
	}
	s.mu.done = make(chan struct{})
	srv, done := s.mu.srv, s.mu.done
	// The serve goroutine exits when Stop shuts the server down (or the
	// listener fails); Stop waits for it via done.
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			select {
			case s.errc <- fmt.Errorf("admin: serve: %w", err):
			default:
			}
		}
	}()
	return nil
}

// Addr returns the bound address (nil before Start).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.ln == nil {
		return nil
	}
	return s.mu.ln.Addr()
}

// Err delivers a serving failure after Start, at most once.
func (s *Server) Err() <-chan error { return s.errc }

// slowStop is how long a stop may take before the server logs what it
// waits for.
const slowStop = time.Second

// connState is a connection's state and since when.
type connState struct {
	state http.ConnState
	since time.Time
}

// connState records each connection's state (http.Server.ConnState).
func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(s.mu.conns, c)
	default:
		s.mu.conns[c] = connState{st, time.Now()}
	}
}

// connStates counts the open connections by state, e.g. "new:1 idle:2".
func (s *Server) connStates() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := map[string]int{}
	for _, cs := range s.mu.conns {
		n[cs.state.String()]++
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, n[k]))
	}
	return strings.Join(parts, " ")
}

// track wraps h to record the requests in flight.
func (s *Server) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.mu.inflight[r] = time.Now()
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.mu.inflight, r)
			s.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

// inflight describes the requests in flight, oldest first, e.g.
// "GET /readyz from 127.0.0.1:40612 for 1.2s".
func (s *Server) inflight() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	type req struct {
		desc  string
		since time.Time
	}
	var rs []req
	for r, t := range s.mu.inflight {
		rs = append(rs, req{fmt.Sprintf("%s %s from %s", r.Method, r.URL.Path, r.RemoteAddr), t})
	}
	slices.SortFunc(rs, func(a, b req) int { return a.since.Compare(b.since) })
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s for %v", r.desc, time.Since(r.since).Round(time.Millisecond))
	}
	return out
}

// closeUnused closes the connections on which no request has begun: a
// client opened them and sent nothing yet. http.Server.Shutdown counts
// such a connection as busy until it is five seconds old, which made the
// stop of a daemon polled by the supervisor wait up to five seconds for
// nothing (Go's HTTP client dials a spare connection when two requests to
// one host overlap, and may never use it).
func (s *Server) closeUnused() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c, cs := range s.mu.conns {
		if cs.state == http.StateNew {
			_ = c.Close()
		}
	}
}

// sweepEvery is how often a stop closes the unused connections that
// arrived meanwhile (until Shutdown has closed the listener).
const sweepEvery = 10 * time.Millisecond

// Stop shuts the server down: it stops accepting, cancels the context of
// the requests in flight (their handlers see ctx.Done and answer at once),
// waits for them until ctx ends, then closes what is left. Idle keep-alive
// connections, and connections that never carried a request, close at
// once. A stop that takes longer than a second logs what it still waits
// for. It is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.mu.stopped = true
	srv, done := s.mu.srv, s.mu.done
	s.mu.srv = nil
	s.mu.Unlock()
	s.cancelBase()
	if srv == nil {
		return nil
	}
	s.closeUnused()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }() // ends by ctx at the latest; waited for below
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	slow := time.NewTimer(slowStop)
	defer slow.Stop()
	var err error
wait:
	for {
		select {
		case err = <-shut:
			break wait
		case <-sweep.C:
			s.closeUnused()
		case <-slow.C:
			s.log.Warn("admin server still stopping", slog.Duration("after", slowStop),
				slog.Any("waiting_for", s.inflight()), slog.String("connections", s.connStates()))
		}
	}
	if err != nil {
		err = fmt.Errorf("admin: shutdown: %w (requests in flight: %v)", err, s.inflight())
		_ = srv.Close()
	}
	<-done
	return err
}

// guard requires the bearer token on h when one is configured.
func (s *Server) guard(h http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return h
	}
	want := []byte("Bearer " + s.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pleiades"`)
			http.Error(w, "admin endpoint: bearer token required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackOnly reports whether a is a loopback address.
func loopbackOnly(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
