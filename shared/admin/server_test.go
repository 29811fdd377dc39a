package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/eventually"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startServer starts a server on 127.0.0.1:0 and stops it at cleanup.
func startServer(t *testing.T, reg *prometheus.Registry) *Server {
	t.Helper()
	return startServerWith(t, reg, Config{Addr: "127.0.0.1:0", CheckTimeout: 200 * time.Millisecond, Pprof: true})
}

func startServerWith(t *testing.T, reg *prometheus.Registry, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg,
		Deps{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Gatherer: reg},
		Info{Daemon: "testd", NodeID: 12, Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

func get(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestChecks(t *testing.T) {
	s := startServer(t, nil)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s.AddReadyCheck("good", func(context.Context) error { return nil })
	s.AddReadyCheck("bad", func(context.Context) error { return errors.New("disk on fire") })
	s.AddReadyCheck("stuck", func(context.Context) error { <-release; return nil })
	s.AddHealthCheck("alive", func(context.Context) error { return nil })

	tests := []struct {
		path      string
		wantCode  int
		want      []string
		wantNotIn []string
	}{
		{"/healthz", 200, []string{"ok"}, nil},
		{"/healthz?verbose", 200, []string{"[+]alive ok"}, nil},
		{"/readyz", 503, []string{"[-]bad failed: disk on fire", "[-]stuck failed: check timed out", "readyz check failed"}, []string{"good"}},
		{"/readyz?verbose", 503, []string{"[+]good ok", "[-]bad failed"}, nil},
		{"/readyz?exclude=bad", 503, []string{"[-]stuck failed"}, []string{"bad"}},
		{"/readyz?exclude=bad&exclude=stuck", 200, []string{"ok"}, []string{"failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, body := get(t, s, tt.path)
			if code != tt.wantCode {
				t.Errorf("GET %s = %d; want %d (body %q)", tt.path, code, tt.wantCode, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("GET %s body %q lacks %q", tt.path, body, w)
				}
			}
			for _, w := range tt.wantNotIn {
				if strings.Contains(body, w) {
					t.Errorf("GET %s body %q contains %q", tt.path, body, w)
				}
			}
		})
	}
}

func TestStatus(t *testing.T) {
	s := startServer(t, nil)
	s.SetAddress("bus", "127.0.0.1:7401")
	s.AddReadyCheck("bus", func(context.Context) error { return nil })
	code, body := get(t, s, "/v1/status")
	if code != 200 {
		t.Fatalf("GET /v1/status = %d %s", code, body)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	if st.Daemon != "testd" || st.NodeID != 12 || st.Version != "v1.2.3" || !st.Ready {
		t.Errorf("status = %+v; want testd/12/v1.2.3 ready", st)
	}
	if st.Addresses["bus"] != "127.0.0.1:7401" || st.Addresses["admin"] != s.Addr().String() {
		t.Errorf("addresses = %v; want bus and admin", st.Addresses)
	}
	if !st.Checks["bus"].OK || st.UptimeSeconds < 0 || time.Since(st.StartedAt) > time.Minute {
		t.Errorf("status = %+v", st)
	}
	for _, key := range []string{`"uptime_seconds"`, `"started_at"`, `"node_id"`, `"checks"`} {
		if !strings.Contains(body, key) {
			t.Errorf("status JSON lacks %s: %s", key, body)
		}
	}

	s.AddReadyCheck("raft", func(context.Context) error { return errors.New("no leader") })
	pst, err := s.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if pst.Ready || pst.Checks["raft"].GetError() != "no leader" || !pst.Checks["bus"].GetOk() {
		t.Errorf("Status() = %v; want not ready with raft failing", pst)
	}
}

// A failing condition leaves the daemon ready but degraded, in /readyz,
// /v1/status and Status; once it passes, nothing of it remains.
func TestConditions(t *testing.T) {
	s := startServer(t, nil)
	s.AddReadyCheck("store", func(context.Context) error { return nil })
	var full atomic.Bool
	full.Store(true)
	s.AddCondition("disk", func(context.Context) error {
		if full.Load() {
			return errors.New("disk full on node 12")
		}
		return nil
	})
	for _, tt := range []struct {
		path     string
		full     bool
		wantCode int
		want     string
	}{
		{"/readyz", true, 200, "[!]disk degraded: disk full on node 12\nok\n"},
		{"/readyz?exclude=disk", true, 200, "ok\n"},
		{"/readyz", false, 200, "ok\n"},
		{"/readyz?verbose", false, 200, "[+]disk ok\n[+]store ok\nok\n"},
	} {
		full.Store(tt.full)
		if code, body := get(t, s, tt.path); code != tt.wantCode || body != tt.want {
			t.Errorf("GET %s (full %v) = %d %q; want %d %q", tt.path, tt.full, code, body, tt.wantCode, tt.want)
		}
	}
	full.Store(true)
	_, body := get(t, s, "/v1/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	if want := (Check{Error: "disk full on node 12", Degraded: true}); !st.Ready || !st.Degraded || st.Checks["disk"] != want {
		t.Errorf("/v1/status = %+v; want ready, degraded, disk %+v", st, want)
	}
	full.Store(false)
	pst, err := s.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !pst.GetReady() || pst.GetDegraded() || !pst.GetChecks()["disk"].GetOk() {
		t.Errorf("Status() = %v; want ready, not degraded", pst)
	}
}

func TestMetricsAndPprof(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "pleiades_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	s := startServer(t, reg)
	code, body := get(t, s, "/metrics")
	if code != 200 || !strings.Contains(body, "pleiades_test_things_total 3") {
		t.Errorf("GET /metrics = %d %q; want the registry's counter", code, body)
	}
	if strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics serves the default registry, not the daemon's")
	}
	code, body = get(t, s, "/debug/pprof/")
	if code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/ = %d", code)
	}
}

func TestHandleJSON(t *testing.T) {
	s := startServer(t, nil)
	s.Handle("/v1/things", JSON(func(r *http.Request) (any, error) {
		switch r.URL.Query().Get("k") {
		case "missing":
			return nil, bus.Errorf(bus.CodeNotFound, "thing missing")
		case "bad":
			return nil, bus.Errorf(bus.CodeInvalidArgument, "bad k")
		case "boom":
			return nil, errors.New("boom")
		}
		return map[string]int{"n": 1}, nil
	}))
	tests := []struct {
		q        string
		wantCode int
		want     string
	}{
		{"", 200, `"n": 1`},
		{"?k=missing", 404, "thing missing"},
		{"?k=bad", 400, "bad k"},
		{"?k=boom", 500, "boom"},
	}
	for _, tt := range tests {
		code, body := get(t, s, "/v1/things"+tt.q)
		if code != tt.wantCode || !strings.Contains(body, tt.want) {
			t.Errorf("GET /v1/things%s = %d %q; want %d containing %q", tt.q, code, body, tt.wantCode, tt.want)
		}
	}
}

func TestStopGraceful(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}, Info{Daemon: "testd"})
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	s.Handle("/v1/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		time.Sleep(100 * time.Millisecond) // an in-flight request Stop must wait for
		_, _ = io.WriteString(w, "done")
	}))
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	result := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/v1/slow")
		if err != nil {
			result <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		result <- string(b)
	}()
	<-entered
	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if got := <-result; got != "done" {
		t.Errorf("in-flight request got %q; want done", got)
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Errorf("server still answers after Stop")
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}, Deps{Logger: slog.New(slog.DiscardHandler)}, Info{}); err == nil {
		t.Error("New without Addr succeeded")
	}
	if _, err := New(Config{Addr: ":0"}, Deps{}, Info{}); err == nil {
		t.Error("New without Logger succeeded")
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStopCancelsRequests: a readiness check still waiting when the
// server stops (its daemon's dependencies are stopping too) sees its
// context end, so Stop does not wait out the check's timeout (an hour
// here; a daemon's shutdown waited seconds on such a request).
func TestStopCancelsRequests(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0", CheckTimeout: time.Hour}, Deps{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}, Info{Daemon: "testd"})
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	s.AddReadyCheck("waits", func(ctx context.Context) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	done := make(chan int, 1)
	go func() {
		resp, err := client.Get("http://" + s.Addr().String() + "/readyz")
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-entered
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop with a check in flight: %v; want it cancelled and Stop done", err)
	}
	if code := <-done; code != http.StatusServiceUnavailable {
		t.Errorf("/readyz in flight at Stop = %d; want 503 (the check was cancelled)", code)
	}
}

// TestSlowStopSaysWhatItWaitsFor: a handler that ignores cancellation
// holds the stop; after a second the server logs the request it waits
// for.
func TestSlowStopSaysWhatItWaitsFor(t *testing.T) {
	var logs syncBuffer
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, Info{Daemon: "testd"})
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	s.Handle("/v1/stuck", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	}))
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{}
	defer client.CloseIdleConnections()
	go func() {
		if resp, err := client.Get("http://" + s.Addr().String() + "/v1/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop(context.Background()) }()
	eventually.True(t, 10*time.Second, "the slow stop logged", func() bool {
		return strings.Contains(logs.String(), "admin server still stopping")
	})
	if l := logs.String(); !strings.Contains(l, "GET /v1/stuck from 127.0.0.1:") {
		t.Errorf("the slow stop's log does not name the request:\n%s", l)
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// TestStopClosesUnusedConnections: a connection a client opened without
// sending a request (Go's HTTP client dials a spare one when two requests
// overlap) does not hold the stop: http.Server.Shutdown alone waits until
// such a connection is five seconds old, so a stop bounded by four
// seconds would fail.
func TestStopClosesUnusedConnections(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}, Info{Daemon: "testd"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually.True(t, 10*time.Second, "the connection accepted", func() bool { return s.connStates() == "new:1" })
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop with an unused connection open: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the unused connection is still open after Stop")
	}
}

// TestPprofOffAndToken: without Pprof there is no /debug/pprof/; with a
// token, /metrics, /v1/... and /debug/pprof/ want it and the probes do
// not.
func TestPprofOffAndToken(t *testing.T) {
	off := startServerWith(t, prometheus.NewRegistry(), Config{Addr: "127.0.0.1:0"})
	if code, _ := get(t, off, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ without Pprof = %d; want 404", code)
	}
	s := startServerWith(t, prometheus.NewRegistry(), Config{Addr: "127.0.0.1:0", Pprof: true, Token: "s3cret"})
	s.Handle("/v1/things", JSON(func(*http.Request) (any, error) { return 1, nil }))
	for _, tt := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", "Bearer nope", http.StatusUnauthorized},
		{"/metrics", "Bearer s3cret", http.StatusOK},
		{"/v1/status", "", http.StatusUnauthorized},
		{"/v1/status", "Bearer s3cret", http.StatusOK},
		{"/v1/things", "s3cret", http.StatusUnauthorized},
		{"/v1/things", "Bearer s3cret", http.StatusOK},
		{"/debug/pprof/", "", http.StatusUnauthorized},
		{"/debug/pprof/", "Bearer s3cret", http.StatusOK},
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
	} {
		req, err := http.NewRequest(http.MethodGet, "http://"+s.Addr().String()+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s with %q = %d; want %d", tt.path, tt.auth, resp.StatusCode, tt.want)
		}
	}
}
