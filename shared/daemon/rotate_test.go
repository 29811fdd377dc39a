package daemon_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// presented dials addr afresh and returns the end of validity of the
// certificate the server presents.
func presented(t *testing.T, addr string, tc *tls.Config) time.Time {
	t.Helper()
	c := tc.Clone()
	c.NextProtos = []string{bus.ALPN}
	c.ClientSessionCache = nil
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, c, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.CloseWithError(0, "")
	return conn.ConnectionState().TLS.PeerCertificates[0].NotAfter
}

// TestRotatedCertificateWithoutRestart: a node certificate replaced in
// the certificates directory is presented to new connections after a
// reload (SIGHUP's) or by itself once the files change, while a live
// connection keeps serving; an expired or other-role certificate is not
// taken.
func TestRotatedCertificateWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	caDir, certs, adminDir := filepath.Join(dir, "ca"), filepath.Join(dir, "certs"), filepath.Join(dir, "admin")
	if err := tlsutil.CreateCA(caDir); err != nil {
		t.Fatal(err)
	}
	hosts := []string{"127.0.0.1", "localhost"}
	first := time.Now().Add(40 * 24 * time.Hour).Truncate(time.Second)
	id, err := tlsutil.CreateNode(caDir, certs, "n1", hosts, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.CreateLeaf(caDir, certs, "n1", hosts, tlsutil.NodeRole(id), first); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.CreateAdmin(caDir, adminDir, "ops"); err != nil {
		t.Fatal(err)
	}
	c := daemontest.Common(t)
	c.CertsDir = certs
	rt, err := daemon.NewRuntime("d", c, daemontest.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	if rt.NodeID != id {
		t.Fatalf("node id %d; want the certificate's %d", rt.NodeID, id)
	}
	if err := rt.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	addr := rt.Bus.Addr().String()

	atc, err := tlsutil.LoadKind(adminDir, tlsutil.KindAdmin)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cli, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: atc}, bus.Deps{Logger: slog.New(slog.DiscardHandler), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Stop(context.Background()) })
	st, err := admin.CallStatus(t.Context(), cli, addr)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetCertNotAfterUnix() != first.Unix() {
		t.Errorf("status cert_not_after %d; want %d", st.GetCertNotAfterUnix(), first.Unix())
	}
	if got := presented(t, addr, atc); !got.Equal(first) {
		t.Fatalf("presented certificate ends %v; want %v", got, first)
	}

	// Rotate, then reload as SIGHUP does.
	second := first.Add(300 * 24 * time.Hour)
	if err := tlsutil.CreateLeaf(caDir, certs, "n1", hosts, tlsutil.NodeRole(id), second); err != nil {
		t.Fatal(err)
	}
	rt.ReloadTLS("test")
	if got := presented(t, addr, atc); !got.Equal(second) {
		t.Fatalf("after reload the presented certificate ends %v; want %v", got, second)
	}
	dials := dialCount(t, reg)
	if _, err := admin.CallStatus(t.Context(), cli, addr); err != nil {
		t.Fatalf("call on the live connection after the rotation: %v", err)
	}
	if got := dialCount(t, reg); got != dials {
		t.Errorf("the live connection was dropped: %v dials, %v before", got, dials)
	}

	// Neither an expired certificate nor another node's is taken.
	if err := tlsutil.CreateLeaf(caDir, certs, "n1", hosts, tlsutil.NodeRole(id), time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	rt.ReloadTLS("test")
	if _, err := tlsutil.CreateNode(caDir, certs, "n1", hosts, id+1); err != nil {
		t.Fatal(err)
	}
	rt.ReloadTLS("test")
	if got := presented(t, addr, atc); !got.Equal(second) {
		t.Fatalf("after refused rotations the presented certificate ends %v; want %v", got, second)
	}

	// The files changing is enough.
	third := second.Add(24 * time.Hour)
	if err := tlsutil.CreateLeaf(caDir, certs, "n1", hosts, tlsutil.NodeRole(id), third); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 15*time.Second, "rotation picked up from the files", func() bool {
		return presented(t, addr, atc).Equal(third)
	})
}

func dialCount(t *testing.T, g prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "pleiades_bus_dials_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestExpiringCertificateCondition: within 30 days of its end the node
// certificate is a failed condition (shown by /readyz and `pleiades
// status`), and the metric carries its end.
func TestExpiringCertificateCondition(t *testing.T) {
	dir := t.TempDir()
	caDir, certs := filepath.Join(dir, "ca"), filepath.Join(dir, "certs")
	if err := tlsutil.CreateCA(caDir); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(10 * 24 * time.Hour).Truncate(time.Second)
	if err := tlsutil.CreateLeaf(caDir, certs, "n1", []string{"127.0.0.1"}, tlsutil.NodeRole(9), end); err != nil {
		t.Fatal(err)
	}
	c := daemontest.Common(t)
	c.CertsDir = certs
	rt, err := daemon.NewRuntime("d", c, daemontest.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	st, err := rt.Admin.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ch := st.GetChecks()["certificate"]; ch == nil || !ch.GetDegraded() || !strings.Contains(ch.GetError(), "expires at "+end.UTC().Format(time.RFC3339)) {
		t.Errorf("certificate condition = %v; want degraded naming the end", ch)
	}
	mfs, err := rt.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	for _, mf := range mfs {
		if mf.GetName() == "pleiades_tls_certificate_expiry_timestamp_seconds" {
			got = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if got != float64(end.Unix()) {
		t.Errorf("expiry metric %v; want %d", got, end.Unix())
	}
}

// TestAdminTokenFile: a readable token file is refused; with a private
// one, /metrics wants the token.
func TestAdminTokenFile(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := daemontest.Common(t)
	c.AdminTokenFile = tok
	tc, err := daemontest.CA(t).Issue("d", tlsutil.NodeRole(4))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.NewRuntimeWithTLS("d", c, tc, daemontest.Logger(t, slog.LevelDebug)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("NewRuntime with a world-readable token file: %v; want refused", err)
	}
	if err := os.Chmod(tok, 0o600); err != nil {
		t.Fatal(err)
	}
	rt, err := daemon.NewRuntimeWithTLS("d", c, tc, daemontest.Logger(t, slog.LevelDebug))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Stop(context.Background()) })
	for auth, want := range map[string]int{"": http.StatusUnauthorized, "Bearer s3cret": http.StatusOK} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+rt.Admin.Addr().String()+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET /metrics with %q = %d; want %d", auth, resp.StatusCode, want)
		}
	}
}
