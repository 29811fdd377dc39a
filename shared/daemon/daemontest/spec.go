package daemontest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/daemon"
)

// Buffer is an io.Writer safe for a daemon writing and a test reading.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// CheckHelp runs spec with --help and fails t unless the output holds
// every string of wants (flag names, env vars, defaults).
func CheckHelp(t testing.TB, spec daemon.Spec, wants ...string) {
	t.Helper()
	var out Buffer
	if code := daemon.Run(t.Context(), spec, []string{spec.Name, "--help"}, &out, io.Discard); code != daemon.ExitOK {
		t.Fatalf("%s --help exit %d", spec.Name, code)
	}
	for _, want := range append(wants, spec.DefaultBusAddr, spec.DefaultAdminAddr, "PLEIADES_DATA_DIR") {
		if !strings.Contains(out.String(), want) {
			t.Errorf("%s --help lacks %q:\n%s", spec.Name, want, out.String())
		}
	}
}

// BadFlag is a command line a daemon must refuse, and the flag its error
// must name.
type BadFlag struct {
	Args []string
	Flag string
}

// CheckBadFlags runs spec once per case, with a dev data dir and port-0
// addresses, and fails t unless each exits with daemon.ExitConfig and
// names its flag on stderr.
func CheckBadFlags(t testing.TB, spec daemon.Spec, cases ...BadFlag) {
	t.Helper()
	for _, tt := range cases {
		var stderr Buffer
		args := append([]string{spec.Name, "--dev", "--data-dir", t.TempDir(), "--bus-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, tt.Args...)
		if code := daemon.Run(t.Context(), spec, args, io.Discard, &stderr); code != daemon.ExitConfig {
			t.Errorf("%s %q exit %d; want %d (%s)", spec.Name, tt.Args, code, daemon.ExitConfig, stderr.String())
		}
		if !strings.Contains(stderr.String(), tt.Flag) {
			t.Errorf("%s %q: stderr %q does not name --%s", spec.Name, tt.Args, stderr.String(), tt.Flag)
		}
	}
}

// CheckServe runs spec as its main would (dev certificates in a temporary
// data dir, port-0 addresses, then args), waits for /readyz to answer 200,
// asks the daemon for its status over the bus, cancels it as SIGTERM
// would, and fails t unless it exits 0. It returns the status the daemon
// reported, for further checks.
func CheckServe(t testing.TB, spec daemon.Spec, args ...string) admin.Status {
	t.Helper()
	rts := make(chan *daemon.Runtime, 1)
	build := spec.Build
	spec.Build = func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
		rts <- rt
		return build(c, rt)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int, 1)
	var stderr Buffer
	dataDir := t.TempDir()
	go func() {
		argv := append([]string{spec.Name, "--dev", "--data-dir", dataDir, "--bus-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)
		done <- daemon.Run(ctx, spec, argv, io.Discard, &stderr)
	}()
	var rt *daemon.Runtime
	select {
	case rt = <-rts:
	case code := <-done:
		t.Fatalf("%s exited %d before building: %s", spec.Name, code, stderr.String())
	}
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if a := rt.Admin.Addr(); a != nil {
			if ok, _, err := admin.FetchReady(ctx, client, a.String()); err == nil && ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 20s: %s", spec.Name, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	caller := NewDevRuntime(t, "client", dataDir)
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	st, err := admin.CallStatus(cctx, caller.Bus, rt.Bus.Addr().String())
	if err != nil {
		t.Fatalf("bus Status of %s: %v", spec.Name, err)
	}
	if st.GetDaemon() != spec.Name || !st.GetReady() {
		t.Errorf("Status = %v; want %s ready", st, spec.Name)
	}
	cancel()
	if code := <-done; code != daemon.ExitOK {
		t.Fatalf("%s exit %d after stop: %s", spec.Name, code, stderr.String())
	}
	return admin.StatusJSON(st)
}
