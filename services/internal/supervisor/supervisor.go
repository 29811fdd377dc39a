package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/backoff"
)

// Child describes one daemon process.
type Child struct {
	// Name identifies the child in logs and status, e.g. "stored" or
	// "node2/raftd".
	Name string
	// Path is the executable.
	Path string
	// Args are the arguments after the executable's name.
	Args []string
	// Env is added to the supervisor's environment for this child.
	Env []string
	// AdminAddr is the child's admin endpoint ("host:port"), polled on
	// /readyz. Required.
	AdminAddr string
	// BusAddr is the child's bus address, shown in status only.
	BusAddr string
	// LogFile receives the child's stdout and stderr (appended); empty
	// means the supervisor's own stderr.
	LogFile string
}

// Config configures a Supervisor. Zero durations mean their defaults.
type Config struct {
	// Children in start order; they stop in reverse order.
	Children []Child
	// ReadyTimeout bounds the wait for a child's first /readyz 200 at
	// start-up. Default 60s.
	ReadyTimeout time.Duration
	// StopGrace is how long a child may take to exit after SIGTERM before
	// it gets SIGKILL. Default 10s.
	StopGrace time.Duration
	// BackoffMin and BackoffMax bound the wait before a restart. Defaults
	// 250ms and 30s.
	BackoffMin, BackoffMax time.Duration
	// StableAfter resets the backoff when a run lasted this long. Default 30s.
	StableAfter time.Duration
	// PollInterval is how often readiness is polled. Default 100ms while
	// starting, and ten times that once ready.
	PollInterval time.Duration
	// TimerSlack is the Linux timer slack the children start with (every
	// thread of a child inherits it): how much later than asked the kernel
	// may end a timed sleep, to merge wake-ups. The Go runtime's monitor
	// thread sleeps 20µs at a time while a process is busy; on virtual
	// machines each wake-up is a costly context switch, and a millisecond
	// of slack removes most of them (raftd/BENCHMARKS.md). 0 leaves the
	// slack the supervisor has (the kernel's default is 50µs).
	TimerSlack time.Duration
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReadyTimeout, 60*time.Second)
	def(&c.StopGrace, 10*time.Second)
	def(&c.BackoffMin, 250*time.Millisecond)
	def(&c.BackoffMax, 30*time.Second)
	def(&c.StableAfter, 30*time.Second)
	def(&c.PollInterval, 100*time.Millisecond)
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if len(c.Children) == 0 {
		return errors.New("supervisor: no children")
	}
	seen := map[string]bool{}
	for i, ch := range c.Children {
		switch {
		case ch.Name == "":
			return fmt.Errorf("supervisor: child %d has no name", i)
		case seen[ch.Name]:
			return fmt.Errorf("supervisor: child %q listed twice", ch.Name)
		case ch.Path == "":
			return fmt.Errorf("supervisor: child %q has no executable", ch.Name)
		case ch.AdminAddr == "":
			return fmt.Errorf("supervisor: child %q has no admin address", ch.Name)
		}
		seen[ch.Name] = true
	}
	if c.BackoffMax < c.BackoffMin {
		return errors.New("supervisor: BackoffMax is below BackoffMin")
	}
	if c.TimerSlack < 0 || c.TimerSlack > MaxTimerSlack {
		return fmt.Errorf("supervisor: TimerSlack %v: want 0 to %v", c.TimerSlack, MaxTimerSlack)
	}
	return nil
}

// slowStop is how long a child may take to stop after SIGTERM before the
// supervisor logs that it is still waiting for it.
const slowStop = time.Second

// MaxTimerSlack bounds Config.TimerSlack: the daemons' own timers (raft
// ticks, QUIC loss detection) run at millisecond scale.
const MaxTimerSlack = 100 * time.Millisecond

// Deps are the supervisor's injected dependencies.
type Deps struct {
	// Logger receives lifecycle logs (start, ready, exit, restart, stop). Required.
	Logger *slog.Logger
	// HTTPClient polls /readyz; nil means a client with a 2s timeout.
	HTTPClient *http.Client
	// Registerer receives the supervisor's metrics (see Collector); nil
	// registers nothing.
	Registerer prometheus.Registerer
}

// State is a child's lifecycle state.
type State string

// The states of a child.
const (
	StateStarting State = "starting" // process started, not ready yet
	StateReady    State = "ready"    // /readyz answered 200
	StateBackoff  State = "backoff"  // exited; waiting to restart
	StateStopping State = "stopping" // SIGTERM sent
	StateStopped  State = "stopped"  // not running, by request
	StateFailed   State = "failed"   // could not be started
	StatePending  State = "pending"  // not started yet
)

// ChildStatus is a snapshot of one child.
type ChildStatus struct {
	Name      string    `json:"name"`
	State     State     `json:"state"`
	PID       int       `json:"pid"`
	Restarts  int       `json:"restarts"`
	Ready     bool      `json:"ready"`
	LastExit  string    `json:"last_exit,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Exits counts the times the child exited or could not be started
	// while it was meant to run (its restarts follow them).
	Exits     int    `json:"exits"`
	BusAddr   string `json:"bus_addr,omitempty"`
	AdminAddr string `json:"admin_addr"`
	Detail    string `json:"detail,omitempty"`
	// Conditions are the failing conditions of a ready daemon, one per
	// line as /readyz lists them ("disk degraded: disk full on node 1
	// ..."): it serves, with that limitation.
	Conditions string `json:"conditions,omitempty"`
}

// Supervisor runs children; see the package doc.
type Supervisor struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	procs  []*proc
}

// proc is the supervisor's record of one child.
type proc struct {
	child Child

	mu struct {
		sync.Mutex
		st       ChildStatus
		cmd      *exec.Cmd
		stopping bool
		// exits counts unwanted exits by kind (see exitKind).
		exits map[string]int
	}
	started chan struct{} // closed after the first start attempt
	ready   chan struct{} // closed when a poll first finds it ready
	exited  chan struct{} // closed when the manage goroutine returns
	stop    chan struct{} // closed to ask the manage goroutine to stop
}

// New validates cfg and returns a supervisor that has started nothing.
func New(cfg Config, deps Deps) (*Supervisor, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		return nil, errors.New("supervisor: Deps.Logger is required")
	}
	client := deps.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	s := &Supervisor{cfg: cfg, log: deps.Logger, client: client}
	for _, ch := range cfg.Children {
		p := &proc{child: ch, started: make(chan struct{}), ready: make(chan struct{}), exited: make(chan struct{}), stop: make(chan struct{})}
		p.mu.st = ChildStatus{Name: ch.Name, State: StatePending, BusAddr: ch.BusAddr, AdminAddr: ch.AdminAddr}
		p.mu.exits = map[string]int{}
		s.procs = append(s.procs, p)
	}
	if deps.Registerer != nil {
		if err := deps.Registerer.Register(collector{s}); err != nil {
			return nil, fmt.Errorf("supervisor: register metrics: %w", err)
		}
	}
	return s, nil
}

// Status returns a snapshot of every child, in start order.
func (s *Supervisor) Status() []ChildStatus {
	out := make([]ChildStatus, 0, len(s.procs))
	for _, p := range s.procs {
		p.mu.Lock()
		out = append(out, p.mu.st)
		p.mu.Unlock()
	}
	return out
}

// Ready returns nil when every child is ready, else an error naming those
// that are not. It is the supervisor's admin readiness check.
func (s *Supervisor) Ready(context.Context) error {
	var bad []string
	for _, st := range s.Status() {
		if !st.Ready {
			bad = append(bad, fmt.Sprintf("%s: %s", st.Name, st.State))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("not ready: %v", bad)
	}
	return nil
}

// Signal sends sig to every running child (SIGHUP forwarding, say).
func (s *Supervisor) Signal(sig os.Signal) {
	for _, p := range s.procs {
		p.mu.Lock()
		if p.mu.cmd != nil && p.mu.cmd.Process != nil && p.mu.st.PID != 0 {
			_ = p.mu.cmd.Process.Signal(sig)
		}
		p.mu.Unlock()
	}
}

// Run starts the children in order, each after the previous one is ready,
// keeps them running until ctx ends, then stops them in reverse order and
// returns. onReady, if not nil, is called once every child is ready. If a
// child cannot be started or made ready at start-up, Run stops what it
// started and returns the error.
func (s *Supervisor) Run(ctx context.Context, onReady func()) error {
	var wg sync.WaitGroup
	defer func() {
		s.stopAll()
		wg.Wait()
	}()
	for _, p := range s.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.manage(p)
		}()
		<-p.started
		if err := s.waitReady(ctx, p); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	s.log.Info("all daemons ready", slog.Int("daemons", len(s.procs)))
	if onReady != nil {
		onReady()
	}
	<-ctx.Done()
	return nil
}

// waitReady waits until p's manage goroutine, the only one that polls
// p's /readyz (two pollers of one endpoint made Go's HTTP client dial
// spare connections, which held the endpoint's shutdown), first finds it
// ready, or ctx's end or ReadyTimeout.
func (s *Supervisor) waitReady(ctx context.Context, p *proc) error {
	deadline := time.NewTimer(s.cfg.ReadyTimeout)
	defer deadline.Stop()
	select {
	case <-p.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-deadline.C:
		p.mu.Lock()
		last := p.mu.st.Detail
		if last == "" {
			last = string(p.mu.st.State)
		}
		p.mu.Unlock()
		return fmt.Errorf("supervisor: %s not ready after %v: %s (log: %s)", p.child.Name, s.cfg.ReadyTimeout, last, p.child.LogFile)
	}
}

// poll asks p's /readyz once and records the outcome.
func (s *Supervisor) poll(ctx context.Context, p *proc) (bool, string) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ok, detail, err := admin.FetchReady(pctx, s.client, p.child.AdminAddr)
	if err != nil {
		detail = err.Error()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.st.State == StateStarting || p.mu.st.State == StateReady {
		was := p.mu.st.Ready
		p.mu.st.Ready = ok
		p.mu.st.Detail = ""
		p.mu.st.Conditions = degraded(detail)
		if ok {
			p.mu.st.State = StateReady
			if !was {
				s.log.Info("daemon ready", slog.String("daemon", p.child.Name), slog.Int("pid", p.mu.st.PID))
			}
			select {
			case <-p.ready:
			default:
				close(p.ready)
			}
		} else {
			p.mu.st.State = StateStarting
			p.mu.st.Detail = detail
		}
	}
	return ok, detail
}

// degraded returns the failing conditions of a /readyz answer, one per
// line without their "[!]" mark.
func degraded(body string) string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if c, ok := strings.CutPrefix(line, "[!]"); ok {
			out = append(out, c)
		}
	}
	return strings.Join(out, "\n")
}

// manage owns one child for the supervisor's lifetime: it starts it,
// waits for it, restarts it with backoff, and returns once asked to stop
// and the process is gone. It keeps its OS thread locked so that the
// child's parent-death signal stays armed (see the package doc).
func (s *Supervisor) manage(p *proc) {
	runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
	defer close(p.exited)
	log := s.log.With(slog.String("daemon", p.child.Name))
	retry := backoff.New(s.cfg.BackoffMin, s.cfg.BackoffMax)
	first := true
	for {
		cmd, err := s.start(p)
		var wait time.Duration
		if first {
			close(p.started)
			first = false
		}
		if err != nil {
			wait = retry.Next()
			log.Error("start failed", slog.Any("err", err), slog.Duration("backoff", wait))
			p.set(func(st *ChildStatus) { st.State = StateFailed; st.LastExit = err.Error(); st.Ready = false })
			p.countExit(exitStartFailed)
		} else {
			log.Info("daemon started", slog.Int("pid", cmd.Process.Pid))
			began := time.Now()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			pollEvery := s.cfg.PollInterval
			tick := time.NewTicker(pollEvery)
			var werr error
		running:
			for {
				select {
				case werr = <-done:
					break running
				case <-tick.C:
					s.poll(context.Background(), p)
					if p.isReady() && pollEvery == s.cfg.PollInterval {
						pollEvery = 10 * s.cfg.PollInterval
						tick.Reset(pollEvery)
					}
				case <-p.stop:
					s.terminate(p, cmd, done, log)
					tick.Stop()
					return
				}
			}
			tick.Stop()
			exit := describeExit(werr, cmd)
			if time.Since(began) >= s.cfg.StableAfter {
				retry.Reset()
			}
			wait = retry.Next()
			log.Warn("daemon exited; restarting", slog.String("exit", exit), slog.Duration("backoff", wait))
			p.set(func(st *ChildStatus) {
				st.State, st.PID, st.Ready, st.LastExit = StateBackoff, 0, false, exit
			})
			p.countExit(exitKind(cmd))
		}
		select {
		case <-p.stop:
			p.set(func(st *ChildStatus) { st.State = StateStopped })
			return
		case <-time.After(wait):
		}
		p.set(func(st *ChildStatus) { st.Restarts++ })
	}
}

// The kinds of an unwanted exit, the kind label of
// pleiades_supervisor_daemon_exits_total.
const (
	exitStartFailed = "start_failed" // the process could not be started
	exitCode        = "exit"         // it exited by itself
	exitSignal      = "signal"       // a signal killed it
)

// exitKind classifies how cmd's process ended.
func exitKind(cmd *exec.Cmd) string {
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignal
	}
	return exitCode
}

// countExit records an unwanted exit of kind.
func (p *proc) countExit(kind string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.exits[kind]++
	p.mu.st.Exits++
}

func (p *proc) set(f func(*ChildStatus)) {
	p.mu.Lock()
	f(&p.mu.st)
	p.mu.Unlock()
}

func (p *proc) isReady() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.st.Ready
}

// start launches p's process.
func (s *Supervisor) start(p *proc) (*exec.Cmd, error) {
	cmd := exec.Command(p.child.Path, p.child.Args...)
	cmd.Env = childEnviron(os.Environ(), p.child.Env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var logf *os.File
	if p.child.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(p.child.LogFile), 0o755); err != nil {
			return nil, fmt.Errorf("log dir: %w", err)
		}
		f, err := os.OpenFile(p.child.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open log: %w", err)
		}
		logf = f
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	err := startWithTimerSlack(cmd, s.cfg.TimerSlack)
	if logf != nil {
		logf.Close() // the child holds its own descriptor
	}
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.mu.cmd = cmd
	p.mu.st.State, p.mu.st.PID, p.mu.st.Ready, p.mu.st.StartedAt = StateStarting, cmd.Process.Pid, false, time.Now()
	p.mu.Unlock()
	return cmd, nil
}

// terminate stops a running child: SIGTERM, then SIGKILL after StopGrace.
func (s *Supervisor) terminate(p *proc, cmd *exec.Cmd, done <-chan error, log *slog.Logger) {
	p.set(func(st *ChildStatus) { st.State, st.Ready = StateStopping, false })
	began := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	grace := time.NewTimer(s.cfg.StopGrace)
	defer grace.Stop()
	slow := time.NewTimer(slowStop)
	defer slow.Stop()
	var werr error
wait:
	for {
		select {
		case werr = <-done:
			break wait
		case <-slow.C:
			// The daemon's own log says what its stop waits for.
			log.Warn("daemon still stopping", slog.Int("pid", cmd.Process.Pid), slog.Duration("after", slowStop),
				slog.Duration("kill_after", s.cfg.StopGrace), slog.String("log", p.child.LogFile))
		case <-grace.C:
			log.Warn("daemon did not stop in time; killing", slog.Duration("grace", s.cfg.StopGrace))
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			werr = <-done
			break wait
		}
	}
	exit := describeExit(werr, cmd)
	log.Info("daemon stopped", slog.String("exit", exit), slog.Duration("took", time.Since(began)))
	p.set(func(st *ChildStatus) { st.State, st.PID, st.LastExit = StateStopped, 0, exit })
}

// stopAll stops every child in reverse start order, each fully before the next.
func (s *Supervisor) stopAll() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		select {
		case <-p.started:
		default:
			continue // never started
		}
		close(p.stop)
		<-p.exited
	}
}

func describeExit(err error, cmd *exec.Cmd) string {
	if cmd.ProcessState == nil {
		if err != nil {
			return err.Error()
		}
		return "unknown"
	}
	return cmd.ProcessState.String()
}
