package daemon_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
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

func TestRuntimeStatusOverBusAndHTTP(t *testing.T) {
	rt := daemontest.NewRuntime(t, "testd")
	client := daemontest.NewRuntime(t, "client")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := admin.CallStatus(ctx, client.Bus, rt.Bus.Addr().String())
	if err != nil {
		t.Fatalf("bus Status: %v", err)
	}
	if st.GetDaemon() != "testd" || st.GetNodeId() != rt.NodeID || !st.GetReady() || !st.GetChecks()["bus"].GetOk() {
		t.Errorf("bus Status = %v; want testd, node %d, ready with bus check", &st, rt.NodeID)
	}
	if st.GetAddresses()["bus"] != rt.Bus.Addr().String() || st.GetAddresses()["admin"] != rt.Admin.Addr().String() {
		t.Errorf("addresses = %v", st.GetAddresses())
	}

	base := "http://" + rt.Admin.Addr().String()
	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q; want 200", code, body)
	}
	code, body := httpGet(t, base+"/metrics")
	for _, want := range []string{"go_goroutines", "process_"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics = %d, lacks %q", code, want)
		}
	}
	if !strings.HasSuffix(rt.DataDir, "/testd") {
		t.Errorf("DataDir = %q; want <data-dir>/testd", rt.DataDir)
	}
}

func TestRuntimeStopNotReady(t *testing.T) {
	rt := daemontest.NewRuntime(t, "testd")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if ok, failed := rt.Admin.Ready(ctx); !ok {
		t.Fatalf("not ready after start: %v", failed)
	}
	if err := rt.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if ok, _ := rt.Admin.Ready(ctx); ok {
		t.Error("ready after Stop")
	}
	if err := rt.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// fakeService records its lifecycle and fails on demand.
type fakeService struct {
	rt      *daemon.Runtime
	errc    chan error
	started chan struct{}
	events  []string
}

func (s *fakeService) Start(context.Context) error {
	s.events = append(s.events, "start")
	close(s.started)
	return nil
}

func (s *fakeService) Stop(context.Context) error {
	s.events = append(s.events, "stop")
	if ok, _ := s.rt.Admin.Ready(context.Background()); !ok {
		s.events = append(s.events, "runtime already stopped")
	}
	return nil
}

func (s *fakeService) Err() <-chan error { return s.errc }

func testSpec(svc *fakeService) daemon.Spec {
	return daemon.Spec{
		Name: "testd", Usage: "test daemon",
		DefaultBusAddr: "127.0.0.1:0", DefaultAdminAddr: "127.0.0.1:0",
		Flags: []cli.Flag{&cli.IntFlag{Name: "widgets", Value: 1}},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			if c.Int("widgets") < 0 {
				return nil, &config.FlagError{Flag: "widgets", Value: c.String("widgets"), Err: errors.New("must not be negative")}
			}
			svc.rt = rt
			return svc, nil
		},
	}
}

func newFake() *fakeService {
	return &fakeService{errc: make(chan error, 1), started: make(chan struct{})}
}

func TestRunStopsOnSignal(t *testing.T) {
	svc := newFake()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var stderr strings.Builder
	go func() {
		done <- daemon.Run(ctx, testSpec(svc), []string{"testd", "--dev", "--data-dir", t.TempDir()}, io.Discard, &lockedWriter{w: &stderr})
	}()
	select {
	case <-svc.started:
	case code := <-done:
		t.Fatalf("Run exited early with %d: %s", code, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("service not started")
	}
	cancel()
	if code := <-done; code != daemon.ExitOK {
		t.Fatalf("Run = %d; want 0", code)
	}
	if got := strings.Join(svc.events, ","); got != "start,stop" {
		t.Errorf("service events %q; want start,stop with the runtime still up during stop", got)
	}
}

func TestRunServiceFailure(t *testing.T) {
	svc := newFake()
	svc.errc <- errors.New("disk gone")
	var stderr lockedWriter
	code := daemon.Run(t.Context(), testSpec(svc), []string{"testd", "--dev", "--data-dir", t.TempDir()}, io.Discard, &stderr)
	if code != daemon.ExitFailure {
		t.Fatalf("Run = %d; want 1", code)
	}
	if !strings.Contains(stderr.String(), "disk gone") {
		t.Errorf("stderr lacks the failure: %s", stderr.String())
	}
}

func TestRunBadConfig(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantFlag string
	}{
		{"bad duration", []string{"--shutdown-timeout", "soon"}, nil, "shutdown-timeout"},
		{"bad env", nil, map[string]string{"PLEIADES_LOG_FORMAT": "xml"}, "log-format"},
		{"daemon flag env", nil, map[string]string{"PLEIADES_WIDGETS": "lots"}, "widgets"},
		{"build rejects", []string{"--widgets", "-1"}, nil, "widgets"},
		{"stray argument", []string{"extra"}, nil, "extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stderr lockedWriter
			args := append([]string{"testd", "--dev", "--data-dir", t.TempDir()}, tt.args...)
			code := daemon.Run(t.Context(), testSpec(newFake()), args, io.Discard, &stderr)
			if code != daemon.ExitConfig {
				t.Errorf("Run(%q) = %d; want 2 (stderr %s)", tt.args, code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantFlag) {
				t.Errorf("stderr %q does not name %q", stderr.String(), tt.wantFlag)
			}
		})
	}
}
