// Package daemontest starts in-process daemon runtimes for tests: bus and
// admin on 127.0.0.1:0, an in-memory test CA shared by every runtime of the
// test binary (so they can call each other), a t.TempDir data dir, logs
// through t.Log, and Stop at t.Cleanup.
package daemontest

import (
	"context"
	"crypto/tls"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// Issuer issues TLS configurations signed by one CA.
type Issuer interface {
	// Config returns a mutual TLS configuration for a node named name,
	// with a random node id.
	Config(name string) (*tls.Config, error)
	// Issue returns a mutual TLS configuration for name with role r.
	Issue(name string, r tlsutil.Role) (*tls.Config, error)
}

// sharedCA is the CA of every runtime NewRuntime starts in one test binary.
var sharedCA = sync.OnceValues(func() (Issuer, error) { return tlsutil.NewTestCA() })

// CA returns the test CA shared by the runtimes of this test binary.
func CA(t testing.TB) Issuer {
	t.Helper()
	ca, err := sharedCA()
	if err != nil {
		t.Fatalf("daemontest: test CA: %v", err)
	}
	return ca
}

// NewCA returns a fresh CA, distinct from CA's (e.g. to test refusal).
func NewCA(t testing.TB) Issuer {
	t.Helper()
	ca, err := tlsutil.NewTestCA()
	if err != nil {
		t.Fatalf("daemontest: test CA: %v", err)
	}
	return ca
}

// Common returns the common configuration of a test runtime: loopback
// port-0 addresses, a fresh data dir, debug logs.
func Common(t testing.TB) config.Common {
	t.Helper()
	dir := t.TempDir()
	return config.Common{
		DataDir:         dir,
		BusAddr:         "127.0.0.1:0",
		AdminAddr:       "127.0.0.1:0",
		CertsDir:        filepath.Join(dir, "certs"),
		MaxFrameSize:    config.DefaultMaxFrameSize,
		LogFormat:       "text",
		LogLevel:        slog.LevelDebug,
		ShutdownTimeout: 5 * time.Second,
	}
}

// NewRuntime returns a started runtime for daemon name, signed by the
// shared test CA and stopped at cleanup.
func NewRuntime(t testing.TB, name string) *daemon.Runtime {
	t.Helper()
	return NewRuntimeWithCA(t, name, CA(t), Common(t))
}

// NewRuntimeWithCA is NewRuntime with an explicit CA and configuration
// (e.g. a CA of its own to test refusal, or a fixed NodeID/DataDir).
func NewRuntimeWithCA(t testing.TB, name string, ca Issuer, c config.Common) *daemon.Runtime {
	t.Helper()
	rt := NewUnstartedRuntime(t, name, ca, c)
	if err := rt.Start(t.Context()); err != nil {
		t.Fatalf("daemontest: start %s runtime: %v", name, err)
	}
	return rt
}

// NewSameNodeRuntime returns a started runtime for daemon name on the
// node of rt (its node id, its own data dir), signed by the shared test
// CA: a daemon of the same host, e.g. to call rt's stored.
func NewSameNodeRuntime(t testing.TB, name string, rt *daemon.Runtime) *daemon.Runtime {
	t.Helper()
	c := Common(t)
	c.NodeID = rt.NodeID
	return NewRuntimeWithCA(t, name, CA(t), c)
}

// NewUnstartedRuntime builds the runtime without starting it, so that a
// test can register handlers first; it is still stopped at cleanup. Its
// node certificate carries the node id of c (or of c.DataDir).
func NewUnstartedRuntime(t testing.TB, name string, ca Issuer, c config.Common) *daemon.Runtime {
	t.Helper()
	id, err := daemon.LoadOrCreateNodeID(c.DataDir, c.NodeID)
	if err != nil {
		t.Fatalf("daemontest: node id for %s: %v", name, err)
	}
	c.NodeID = id
	tc, err := ca.Issue(name, tlsutil.NodeRole(id))
	if err != nil {
		t.Fatalf("daemontest: TLS config for %s: %v", name, err)
	}
	return newRuntime(t, name, tc, c)
}

// NewDevRuntime returns a started runtime for daemon name that uses (and
// creates if missing) the dev certificates under dataDir/certs, like a
// daemon started with --dev --data-dir dataDir, so that it can call such a
// daemon. Its own ports are 127.0.0.1:0; it is stopped at cleanup.
func NewDevRuntime(t testing.TB, name, dataDir string) *daemon.Runtime {
	t.Helper()
	c := Common(t)
	c.DataDir, c.CertsDir, c.Dev = dataDir, filepath.Join(dataDir, "certs"), true
	rt, err := daemon.NewRuntime(name, c, Logger(t, c.LogLevel))
	if err != nil {
		t.Fatalf("daemontest: new %s runtime: %v", name, err)
	}
	stopAtCleanup(t, rt)
	if err := rt.Start(t.Context()); err != nil {
		t.Fatalf("daemontest: start %s runtime: %v", name, err)
	}
	return rt
}

func stopAtCleanup(t testing.TB, rt *daemon.Runtime) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rt.Stop(ctx); err != nil {
			t.Errorf("daemontest: stop %s runtime: %v", rt.Name, err)
		}
	})
}

func newRuntime(t testing.TB, name string, tc *tls.Config, c config.Common) *daemon.Runtime {
	t.Helper()
	rt, err := daemon.NewRuntimeWithTLS(name, c, tc, Logger(t, c.LogLevel))
	if err != nil {
		t.Fatalf("daemontest: new %s runtime: %v", name, err)
	}
	stopAtCleanup(t, rt)
	return rt
}

// Logger returns a logger writing through t.Log. Lines logged after the
// test has finished are dropped rather than panicking.
func Logger(t testing.TB, level slog.Leveler) *slog.Logger {
	t.Helper()
	w := &tWriter{t: t}
	t.Cleanup(w.close) // registered first, so it runs after every later cleanup
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type tWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}
