package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
)

// The test binary doubles as the fake daemon: with FAKE_CHILD set it runs
// fakeChild instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("FAKE_CHILD") != "" {
		fakeChild()
		return
	}
	goleak.VerifyTestMain(m)
}

// fakeChild serves /readyz on FAKE_ADMIN after FAKE_READY_DELAY, records
// "start NAME", "ready NAME", "stop NAME" and, with FAKE_RECORD_CONNS and
// FAKE_RECORD_POLLS, "conn NAME" per connection and "poll NAME" per
// /readyz lines in FAKE_EVENTS, exits 0
// on SIGTERM unless FAKE_IGNORE_TERM is set.
func fakeChild() {
	name, events := os.Getenv("FAKE_CHILD"), os.Getenv("FAKE_EVENTS")
	record := func(what string) {
		f, err := os.OpenFile(events, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			os.Exit(3)
		}
		fmt.Fprintf(f, "%s %s\n", what, name)
		f.Close()
	}
	record("start")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	delay, _ := time.ParseDuration(os.Getenv("FAKE_READY_DELAY"))
	readyAt := time.Now().Add(delay)
	var once sync.Once
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("FAKE_RECORD_POLLS") != "" {
			record("poll")
		}
		if time.Now().Before(readyAt) || os.Getenv("FAKE_NEVER_READY") != "" {
			http.Error(w, "warming up", http.StatusServiceUnavailable)
			return
		}
		once.Do(func() { record("ready") })
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", os.Getenv("FAKE_ADMIN"))
	if err != nil {
		os.Exit(4)
	}
	srv := &http.Server{ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew && os.Getenv("FAKE_RECORD_CONNS") != "" {
			record("conn")
		}
	}}
	go srv.Serve(ln)
	for range sigs {
		if os.Getenv("FAKE_IGNORE_TERM") != "" {
			continue
		}
		record("stop")
		os.Exit(0)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func fake(t *testing.T, name, events string, env ...string) Child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	return Child{
		Name:      name,
		Path:      exe,
		AdminAddr: addr,
		Env:       append([]string{"FAKE_CHILD=" + name, "FAKE_EVENTS=" + events, "FAKE_ADMIN=" + addr}, env...),
		LogFile:   filepath.Join(filepath.Dir(events), "logs", name+".log"),
	}
}

func testConfig(children ...Child) Config {
	return Config{
		Children:     children,
		ReadyTimeout: 10 * time.Second,
		StopGrace:    5 * time.Second,
		BackoffMin:   50 * time.Millisecond,
		BackoffMax:   200 * time.Millisecond,
		PollInterval: 20 * time.Millisecond,
	}
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func readEvents(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
}

// run starts a supervisor in the background and returns a stop function
// that cancels it and returns Run's error.
func run(t *testing.T, s *Supervisor) (ready <-chan struct{}, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx, func() { close(r) }) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-errc })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return r, stop
}

// runReady is run, returning once every child is ready.
func runReady(t *testing.T, s *Supervisor) (stop func() error) {
	t.Helper()
	ready, stop := run(t, s)
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("not ready")
	}
	return stop
}

func TestStartOrderReadinessAndReverseStop(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events")
	s, err := New(testConfig(
		fake(t, "a", events, "FAKE_READY_DELAY=300ms"),
		fake(t, "b", events, "FAKE_READY_DELAY=100ms"),
		fake(t, "c", events),
	), Deps{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := runReady(t, s)
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready() = %v after onReady", err)
	}
	for _, st := range s.Status() {
		if st.State != StateReady || st.PID == 0 || !st.Ready {
			t.Errorf("status %+v; want ready with a pid", st)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	got := strings.Join(readEvents(t, events), " ")
	want := "start_a ready_a start_b ready_b start_c ready_c stop_c stop_b stop_a"
	if got != want {
		t.Fatalf("events = %q; want %q", got, want)
	}
	for _, st := range s.Status() {
		if st.State != StateStopped || st.PID != 0 {
			t.Errorf("after stop: %+v", st)
		}
	}
}

func TestRestartWithBackoff(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events")
	reg := prometheus.NewRegistry()
	s, err := New(testConfig(fake(t, "a", events)), Deps{Logger: logger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ready, stop := run(t, s)
	<-ready
	for name, want := range map[string]float64{
		`pleiades_supervisor_daemon_ready{daemon="a"}`:                     1,
		`pleiades_supervisor_daemon_state{daemon="a",state="ready"}`:       1,
		`pleiades_supervisor_daemon_state{daemon="a",state="starting"}`:    0,
		`pleiades_supervisor_daemon_restarts_total{daemon="a"}`:            0,
		`pleiades_supervisor_daemon_exits_total{daemon="a",kind="signal"}`: 0,
	} {
		if got := metric(t, reg, name); got != want {
			t.Errorf("%s = %v before any kill; want %v", name, got, want)
		}
	}
	for kill := 1; kill <= 2; kill++ {
		pid := s.Status()[0].PID
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually.True(t, 15*time.Second, "restart", func() bool {
			st := s.Status()[0]
			return st.Restarts == kill && st.Ready && st.PID != pid
		})
	}
	st := s.Status()[0]
	if !strings.Contains(st.LastExit, "killed") || st.Exits != 2 {
		t.Errorf("LastExit = %q, exits %d; want the kills recorded", st.LastExit, st.Exits)
	}
	for name, want := range map[string]float64{
		`pleiades_supervisor_daemon_ready{daemon="a"}`:                     1,
		`pleiades_supervisor_daemon_restarts_total{daemon="a"}`:            2,
		`pleiades_supervisor_daemon_exits_total{daemon="a",kind="signal"}`: 2,
		`pleiades_supervisor_daemon_exits_total{daemon="a",kind="exit"}`:   0,
	} {
		if got := metric(t, reg, name); got != want {
			t.Errorf("%s = %v after two kills; want %v", name, got, want)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestKillAfterGrace(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events")
	cfg := testConfig(fake(t, "stubborn", events, "FAKE_IGNORE_TERM=1"))
	cfg.StopGrace = 200 * time.Millisecond
	s, err := New(cfg, Deps{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ready, stop := run(t, s)
	<-ready
	pid := s.Status()[0].PID
	begin := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < cfg.StopGrace {
		t.Errorf("stopped after %v; the child ignores SIGTERM, so it should take the grace period", took)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("pid %d still alive after stop", pid)
	}
	if st := s.Status()[0]; !strings.Contains(st.LastExit, "killed") {
		t.Errorf("LastExit = %q; want killed", st.LastExit)
	}
}

func TestReadyTimeout(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events")
	cfg := testConfig(fake(t, "slow", events, "FAKE_NEVER_READY=1"), fake(t, "never-started", events))
	cfg.ReadyTimeout = 300 * time.Millisecond
	s, err := New(cfg, Deps{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "slow not ready") {
		t.Fatalf("Run = %v; want a readiness timeout naming the child", err)
	}
	if got := strings.Join(readEvents(t, events), " "); strings.Contains(got, "never-started") {
		t.Errorf("events = %q: the second child started although the first never got ready", got)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Child{Name: "a", Path: "/bin/true", AdminAddr: "127.0.0.1:1"}
	for _, tt := range []struct {
		name     string
		children []Child
		slack    time.Duration
		wantErr  string
	}{
		{"none", nil, 0, "no children"},
		{"no name", []Child{{Path: "x", AdminAddr: "y"}}, 0, "no name"},
		{"duplicate", []Child{ok, ok}, 0, "twice"},
		{"no path", []Child{{Name: "a", AdminAddr: "y"}}, 0, "no executable"},
		{"no admin", []Child{{Name: "a", Path: "x"}}, 0, "no admin address"},
		{"negative timer slack", []Child{ok}, -time.Millisecond, "TimerSlack"},
		{"huge timer slack", []Child{ok}, time.Second, "TimerSlack"},
	} {
		_, err := New(Config{Children: tt.children, TimerSlack: tt.slack}, Deps{Logger: slog.New(slog.DiscardHandler)})
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: New = %v; want error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

// TestOnePollerPerChild: a child's /readyz is polled by one goroutine, on
// one kept-alive connection. Two pollers (start-up's wait and the child's
// manager) made Go's HTTP client dial spare connections that carried no
// request, and an HTTP server's shutdown waits up to five seconds for such
// a connection: a 3-node dev cluster took 5-10 s to stop.
func TestOnePollerPerChild(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events")
	cfg := testConfig(fake(t, "a", events, "FAKE_READY_DELAY=300ms", "FAKE_RECORD_POLLS=1", "FAKE_RECORD_CONNS=1"))
	cfg.PollInterval = 20 * time.Millisecond
	s, err := New(cfg, Deps{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ready, stop := run(t, s)
	<-ready
	// A few more polls once ready (every 10 poll intervals).
	polls := func() int {
		b, _ := os.ReadFile(events)
		_, after, _ := strings.Cut(string(b), "ready a\n")
		return strings.Count(after, "poll a\n")
	}
	eventually.True(t, 10*time.Second, "three more polls", func() bool { return polls() >= 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(events)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "conn a\n"); n != 1 {
		t.Errorf("%d connections to the child's admin endpoint; want 1:\n%s", n, b)
	}
}

// TestSlowStopLogged: a child that takes longer than a second to stop is
// named in a log line while the supervisor waits.
func TestSlowStopLogged(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "events")
	cfg := testConfig(fake(t, "stubborn", events, "FAKE_IGNORE_TERM=1"))
	cfg.StopGrace = 1500 * time.Millisecond
	var logs daemontest.Buffer
	s, err := New(cfg, Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ready, stop := run(t, s)
	<-ready
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, `msg="daemon still stopping" daemon=stubborn`) {
		t.Errorf("no log of the slow stop:\n%s", l)
	}
}

// metric returns the value of the series named like
// `name{label="value",...}` (labels in name order) in reg, failing t when
// there is none.
func metric(t *testing.T, reg *prometheus.Registry, series string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			if name != series {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

func TestDegraded(t *testing.T) {
	for _, tt := range []struct{ body, want string }{
		{"ok\n", ""},
		{"[+]stored ok\n[+]disk ok\nok\n", ""},
		{"[!]disk degraded: disk full on node 1 (free 1 B)\nok\n", "disk degraded: disk full on node 1 (free 1 B)"},
		{"[!]a degraded: x\n[-]b failed: y\n[!]c degraded: z\nreadyz check failed\n", "a degraded: x\nc degraded: z"},
	} {
		if got := degraded(tt.body); got != tt.want {
			t.Errorf("degraded(%q) = %q; want %q", tt.body, got, tt.want)
		}
	}
}
