package cli

import (
	"net"
	"strings"
	"testing"

	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func TestHealth(t *testing.T) {
	rt := daemontest.NewRuntime(t, "testd")
	ready := rt.Admin.Addr().String()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	code, out, stderr := run(t, "health", "--admin-addr", ready)
	if code != ExitOK || !strings.Contains(out, "testd") || !strings.Contains(out, "true") {
		t.Errorf("health of a ready daemon: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = run(t, "health", "--admin-addr", ready+","+dead, "--timeout", "2s")
	if code != ExitFailed || !strings.Contains(stderr, "not ready: "+dead) || !strings.Contains(out, "testd") {
		t.Errorf("health with an endpoint down: exit %d\n%s%s", code, out, stderr)
	}
	if code, _, _ := run(t, "health", "--admin-addr", "nohost"); code != ExitUsage {
		t.Errorf("health --admin-addr nohost exit %d; want %d", code, ExitUsage)
	}
}
