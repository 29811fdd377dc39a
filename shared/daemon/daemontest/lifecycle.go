package daemontest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/eventually"
)

// Lifecycle is a daemon's server on an unstarted runtime, as the daemon's
// main would build it, for CheckLifecycle.
type Lifecycle struct {
	// Runtime is the daemon's runtime, built by NewUnstartedRuntime.
	Runtime *daemon.Runtime
	// Service is the daemon's server, built on Runtime and not started.
	Service daemon.Service
	// ReadyCheck is the name of the readiness check the server registers.
	ReadyCheck string
	// Admin lists admin paths to GET once the daemon is ready (after
	// Serving), each with strings its body must hold (/readyz is always
	// checked).
	Admin map[string][]string
	// RuntimeStarted, if set, runs after the runtime started and before
	// the service does (to check what a call gets then), with a client
	// runtime of the same CA.
	RuntimeStarted func(ctx context.Context, client *daemon.Runtime)
	// Serving, if set, runs once the daemon is ready, before it stops.
	Serving func(ctx context.Context, client *daemon.Runtime)
	// Stopped, if set, runs after the service stopped and before the
	// runtime does.
	Stopped func(ctx context.Context, client *daemon.Runtime)
}

// CheckLifecycle drives l's server through what every daemon's server must
// do, and fails t where it does not: not ready before Start; after the
// runtime and then the service start, ready within 10s, with the status
// served on the bus (admin.CallStatus) naming the daemon, ready, and its
// check passing; then l.Serving; 200 on /readyz and each path of l.Admin
// holding its strings; a second Stop succeeding; after Stop, not ready with its check
// failing; then the runtime stops.
func CheckLifecycle(t testing.TB, l Lifecycle) {
	t.Helper()
	rt := l.Runtime
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if ok, _ := rt.Admin.Ready(ctx); ok {
		t.Errorf("%s: ready before start", rt.Name)
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatalf("%s: start runtime: %v", rt.Name, err)
	}
	client := NewSameNodeRuntime(t, "client", rt)
	if l.RuntimeStarted != nil {
		l.RuntimeStarted(ctx, client)
	}
	if err := l.Service.Start(ctx); err != nil {
		t.Fatalf("%s: start: %v", rt.Name, err)
	}
	eventually.True(t, 10*time.Second, rt.Name+" ready", func() bool {
		ok, _ := rt.Admin.Ready(ctx)
		return ok
	})

	st, err := admin.CallStatus(ctx, client.Bus, rt.Bus.Addr().String())
	if err != nil {
		t.Fatalf("%s: bus Status: %v", rt.Name, err)
	}
	if st.GetDaemon() != rt.Name || !st.GetReady() || !st.GetChecks()[l.ReadyCheck].GetOk() {
		t.Errorf("%s: Status = %v; want %s ready with check %q passing", rt.Name, st, rt.Name, l.ReadyCheck)
	}
	if l.Serving != nil {
		l.Serving(ctx, client)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	paths := map[string][]string{"/readyz": {"ok"}}
	for p, wants := range l.Admin {
		paths[p] = wants
	}
	for path, wants := range paths {
		resp, err := hc.Get("http://" + rt.Admin.Addr().String() + path)
		if err != nil {
			t.Fatalf("%s: GET %s: %v", rt.Name, path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: GET %s = %d %q", rt.Name, path, resp.StatusCode, body)
		}
		for _, w := range wants {
			if !strings.Contains(string(body), w) {
				t.Errorf("%s: GET %s lacks %q:\n%s", rt.Name, path, w, body)
			}
		}
	}

	if err := l.Service.Stop(ctx); err != nil {
		t.Fatalf("%s: stop: %v", rt.Name, err)
	}
	if err := l.Service.Stop(ctx); err != nil {
		t.Errorf("%s: second stop: %v", rt.Name, err)
	}
	if ok, failed := rt.Admin.Ready(ctx); ok || failed[l.ReadyCheck] == nil {
		t.Errorf("%s: after Stop: ready=%v failed=%v; want check %q failing", rt.Name, ok, failed, l.ReadyCheck)
	}
	if l.Stopped != nil {
		l.Stopped(ctx, client)
	}
	if err := rt.Stop(ctx); err != nil {
		t.Fatalf("%s: stop runtime: %v", rt.Name, err)
	}
}
