package daemon

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// certWatchInterval is how often a runtime checks its certificate files
// for a change (a rotation).
const certWatchInterval = 5 * time.Second

// ExpiryWarning is how long before its end a certificate is reported:
// the "certificate" condition fails (degraded) and a warning is logged.
const ExpiryWarning = 30 * 24 * time.Hour

// ReloadTLS loads the node certificate and key again from the
// certificates directory (the daemon does on SIGHUP, and by itself when
// the files change): new connections present the new certificate, live
// ones keep theirs. A runtime built from a ready TLS configuration has
// nothing to reload.
func (rt *Runtime) ReloadTLS(why string) {
	if rt.reloader == nil {
		rt.Logger.Info("certificate reload: not loaded from files", slog.String("why", why))
		return
	}
	rt.reloader.ReloadAndLog(rt.Logger, why)
	rt.warnExpiry()
}

// certLeaf returns the certificate the runtime presents now.
func (rt *Runtime) certLeaf() *x509.Certificate {
	if rt.reloader != nil {
		return rt.reloader.Leaf()
	}
	leaf, err := tlsutil.Leaf(rt.TLS)
	if err != nil {
		return nil
	}
	return leaf
}

// CertNotAfter returns the end of validity of the certificate the
// runtime presents now (zero if unknown).
func (rt *Runtime) CertNotAfter() time.Time {
	if leaf := rt.certLeaf(); leaf != nil {
		return leaf.NotAfter
	}
	return time.Time{}
}

// watchExpiry exports the certificate's end of validity as
// pleiades_tls_certificate_expiry_timestamp_seconds, and makes a
// certificate within ExpiryWarning of its end a failed condition.
func (rt *Runtime) watchExpiry(reg prometheus.Registerer) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pleiades_tls_certificate_expiry_timestamp_seconds",
		Help: "End of validity of the node certificate the daemon presents, Unix seconds.",
	}, func() float64 { return float64(rt.CertNotAfter().Unix()) })
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("register certificate metric: %w", err)
	}
	rt.Admin.SetCertNotAfter(rt.CertNotAfter)
	rt.Admin.AddCondition("certificate", func(context.Context) error { return expiryProblem(rt.CertNotAfter(), time.Now()) })
	return nil
}

// expiryProblem describes a certificate ending within ExpiryWarning of
// now, nil otherwise.
func expiryProblem(notAfter, now time.Time) error {
	if notAfter.IsZero() || notAfter.Sub(now) > ExpiryWarning {
		return nil
	}
	left := notAfter.Sub(now).Round(time.Hour)
	return fmt.Errorf("node certificate expires at %s (in %s): rotate it (`pleiades cert rotate`)", notAfter.UTC().Format(time.RFC3339), left)
}

// warnExpiry logs a warning when the certificate ends within
// ExpiryWarning.
func (rt *Runtime) warnExpiry() {
	if err := expiryProblem(rt.CertNotAfter(), time.Now()); err != nil {
		rt.Logger.Warn("certificate expiring", slog.String("problem", err.Error()))
	}
}

// readToken reads the admin bearer token from path ("" without one); the
// file must not be readable by group or others.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return "", fmt.Errorf("admin token file %s has mode %04o: group or others may read it; `chmod 600 %s`", path, m, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin token file %s is empty", path)
	}
	return tok, nil
}
