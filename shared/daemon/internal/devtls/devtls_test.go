package devtls

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func deadline() time.Time { return time.Now().Add(200 * time.Millisecond) }

// handshake runs a TLS handshake over a pipe and returns the client's error.
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	a, b := net.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() {
		s := tls.Server(a, server)
		_ = s.Handshake()
		_, _ = io.Copy(io.Discard, s)
		s.Close()
	})
	c := tls.Client(b, client)
	err := c.Handshake()
	if err == nil {
		// TLS 1.3 reports a rejected client certificate on the first read.
		_, err = c.Write([]byte("x"))
		if err == nil {
			buf := make([]byte, 1)
			c.SetReadDeadline(deadline())
			_, err = c.Read(buf)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				err = nil
			}
		}
	}
	c.Close()
	b.Close()
	a.Close()
	wg.Wait()
	return err
}

func TestEnsureDevAndLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = EnsureDev(dir, "node-1", []string{"localhost", "127.0.0.1"}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("EnsureDev #%d: %v", i, err)
		}
	}
	before, _ := os.ReadFile(filepath.Join(dir, CACert))
	if err := EnsureDev(dir, "node-1", nil); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CACert))
	if string(before) != string(after) {
		t.Error("EnsureDev replaced an existing CA")
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, %v; want 0600", fi.Mode(), err)
	}
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS13 || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.ServerName != ServerName {
		t.Errorf("Load config = %+v", cfg)
	}
	if err := handshake(t, cfg, cfg); err != nil {
		t.Errorf("handshake with dev certs: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("Load of an empty dir succeeded")
	}
}

func TestTestCA(t *testing.T) {
	ca, err := NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.Config("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.Config("b")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, a, b); err != nil {
		t.Errorf("same-CA handshake: %v", err)
	}
	other, err := NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	x, err := other.Config("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, a, x); err == nil {
		t.Error("handshake with a certificate from another CA succeeded")
	}
}
