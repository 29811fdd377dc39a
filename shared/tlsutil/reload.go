package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Reloader keeps the certificate and key of one role in a certificates
// directory current: the TLS configuration it returns asks it for the
// certificate at every handshake (GetCertificate, GetClientCertificate),
// so a reload takes effect for new connections while live ones keep
// theirs. A reload keeps the old certificate when the new files cannot be
// loaded, carry another role (a node certificate must keep its node id),
// or are expired.
type Reloader struct {
	dir  string
	kind Kind
	role Role
	cur  atomic.Pointer[tls.Certificate]

	mu    sync.Mutex
	stamp string // the files' sizes and modification times at the last load
}

// NewReloader loads the certificate of kind k in dir (see LoadKind) and
// returns the reloader with a TLS configuration that always presents the
// current one.
func NewReloader(dir string, k Kind) (*Reloader, *tls.Config, error) {
	tc, err := LoadKind(dir, k)
	if err != nil {
		return nil, nil, err
	}
	role, err := RoleOfConfig(tc)
	if err != nil {
		return nil, nil, err
	}
	r := &Reloader{dir: dir, kind: k, role: role, stamp: r0stamp(dir, k)}
	cert := tc.Certificates[0]
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("tlsutil: parse %s certificate: %w", k, err)
		}
	}
	r.cur.Store(&cert)
	tc.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cur.Load(), nil }
	tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return r.cur.Load(), nil }
	return r, tc, nil
}

func r0stamp(dir string, k Kind) string {
	certFile, keyFile := Files(k)
	return stamp(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
}

// stamp describes files by size and modification time ("" parts for
// missing ones).
func stamp(paths ...string) string {
	var s string
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			s += "-;"
		}
	}
	return s
}

// Leaf returns the current certificate.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().Leaf }

// NotAfter returns the end of validity of the current certificate.
func (r *Reloader) NotAfter() time.Time { return r.Leaf().NotAfter }

// Reload loads the files again and, when they hold a certificate of the
// same role that is valid now, presents it from the next handshake on. It
// reports whether the certificate changed.
func (r *Reloader) Reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stamp = r0stamp(r.dir, r.kind)
	tc, err := LoadKind(r.dir, r.kind)
	if err != nil {
		return false, err
	}
	cert := tc.Certificates[0]
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false, fmt.Errorf("tlsutil: parse %s certificate: %w", r.kind, err)
	}
	cert.Leaf = leaf
	role, err := RoleOf(leaf)
	if err != nil {
		return false, err
	}
	if role.String() != r.role.String() {
		return false, fmt.Errorf("tlsutil: the new certificate in %s has role %s, not %s: keeping the current one", r.dir, role, r.role)
	}
	now := time.Now()
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return false, fmt.Errorf("tlsutil: the new certificate in %s is not valid now (%s to %s): keeping the current one", r.dir, leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))
	}
	if old := r.cur.Load(); old != nil && string(old.Certificate[0]) == string(cert.Certificate[0]) {
		return false, nil
	}
	r.cur.Store(&cert)
	return true, nil
}

// changed reports whether the files differ from the last load.
func (r *Reloader) changed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r0stamp(r.dir, r.kind) != r.stamp
}

// Watch reloads whenever the files change (checked every interval) until
// ctx ends, logging each outcome.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r.changed() {
				r.ReloadAndLog(log, "files changed")
			}
		}
	}
}

// ReloadAndLog reloads and logs the outcome, saying why it reloaded.
func (r *Reloader) ReloadAndLog(log *slog.Logger, why string) {
	changed, err := r.Reload()
	switch {
	case err != nil && errors.Is(err, os.ErrNotExist):
		log.Warn("certificate reload: files missing; keeping the current certificate", slog.String("why", why), slog.String("err", err.Error()))
	case err != nil:
		log.Warn("certificate reload failed; keeping the current certificate", slog.String("why", why), slog.String("err", err.Error()))
	case changed:
		log.Info("certificate reloaded", slog.String("why", why), slog.String("role", r.role.String()),
			slog.Time("not_after", r.NotAfter()), slog.String("serial", r.Leaf().SerialNumber.Text(16)))
	default:
		log.Info("certificate reload: unchanged", slog.String("why", why))
	}
}
