package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/adminpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestHelp(t *testing.T) {
	var out buffer
	if code := daemon.Run(t.Context(), spec(), []string{"clockd", "--help"}, &out, io.Discard); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"--stored-addr", "PLEIADES_STORED_ADDR", "--peers", "PLEIADES_PEERS", "127.0.0.1:7404", "127.0.0.1:7504"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		flag string
	}{
		{[]string{"--stored-addr", "stored"}, "stored-addr"},
		{[]string{"--peers", "127.0.0.1:1,nohost"}, "peers"},
	} {
		var stderr buffer
		args := append([]string{"clockd", "--dev", "--data-dir", t.TempDir(), "--bus-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, tt.args...)
		if code := daemon.Run(t.Context(), spec(), args, io.Discard, &stderr); code != daemon.ExitConfig {
			t.Errorf("Run(%q) = %d; want 2 (%s)", tt.args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), tt.flag) {
			t.Errorf("stderr %q does not name %s", stderr.String(), tt.flag)
		}
	}
}

func TestServe(t *testing.T) {
	s := spec()
	rts := make(chan *daemon.Runtime, 1)
	build := s.Build
	s.Build = func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
		rts <- rt
		return build(c, rt)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int, 1)
	var stderr buffer
	dataDir := t.TempDir()
	go func() {
		done <- daemon.Run(ctx, s, []string{"clockd", "--dev", "--data-dir", dataDir, "--bus-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, io.Discard, &stderr)
	}()
	var rt *daemon.Runtime
	select {
	case rt = <-rts:
	case code := <-done:
		t.Fatalf("exited %d: %s", code, stderr.String())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if a := rt.Admin.Addr(); a != nil {
			if resp, err := http.Get("http://" + a.String() + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("clockd not ready: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	http.DefaultClient.CloseIdleConnections()

	client := daemontest.NewDevRuntime(t, "client", dataDir)
	var st adminpb.Status
	cctx, ccancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer ccancel()
	if err := client.Bus.Call(cctx, rt.Bus.Addr().String(), wire.ProtoAdmin, daemon.StatusMethod, &adminpb.StatusRequest{}, &st); err != nil {
		t.Fatalf("bus Status: %v", err)
	}
	if st.GetDaemon() != "clockd" || !st.GetReady() {
		t.Errorf("Status = %v; want clockd ready", &st)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after stop: %s", code, stderr.String())
	}
}
