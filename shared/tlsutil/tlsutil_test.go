package tlsutil

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// handshake runs a TLS handshake between a server and a client config over
// a loopback TCP connection and returns both sides' errors.
func handshake(t *testing.T, server, client *tls.Config) (serr, cerr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			serr = err
			return
		}
		defer c.Close()
		tc := tls.Server(c, server)
		serr = tc.Handshake()
		if serr == nil {
			// Read until the client closes, so its handshake completes.
			_, _ = io.Copy(io.Discard, tc)
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, client)
	cerr = tc.Handshake()
	if cerr == nil {
		// TLS 1.3 client certs are verified after the client's handshake
		// returns; a write and read round surfaces a server refusal.
		_, cerr = tc.Write([]byte("x"))
	}
	tc.Close()
	wg.Wait()
	return serr, cerr
}

func TestTestCAMutualAuth(t *testing.T) {
	ca, err := NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewTestCA()
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
	x, err := other.Config("x")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		server, client *tls.Config
		ok             bool
	}{
		{"same CA", a, b, true},
		{"client from other CA", a, x, false},
		{"server from other CA", x, a, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			serr, cerr := handshake(t, tc.server, tc.client)
			if got := serr == nil && cerr == nil; got != tc.ok {
				t.Fatalf("handshake ok = %v (server %v, client %v); want %v", got, serr, cerr, tc.ok)
			}
		})
	}
}

func TestCreateCAAndNode(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if err := CreateCA(caDir); err != nil {
		t.Fatalf("CreateCA: %v", err)
	}
	if err := CreateCA(caDir); err == nil {
		t.Fatal("second CreateCA succeeded; want a refusal to overwrite")
	}
	n1, n2 := filepath.Join(dir, "n1"), filepath.Join(dir, "n2")
	for _, out := range []string{n1, n2} {
		if _, err := CreateNode(caDir, out, filepath.Base(out), []string{"127.0.0.1", "localhost"}, 0); err != nil {
			t.Fatalf("CreateNode(%s): %v", out, err)
		}
		if _, err := os.Stat(filepath.Join(out, CAKey)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("CA key copied to %s (stat err %v)", out, err)
		}
		st, err := os.Stat(filepath.Join(out, NodeKey))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("node key mode = %v; want 0600", st.Mode().Perm())
		}
	}
	c1, err := Load(n1)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	c2, err := Load(n2)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if serr, cerr := handshake(t, c1, c2); serr != nil || cerr != nil {
		t.Fatalf("handshake between nodes of one CA: server %v, client %v", serr, cerr)
	}
	if _, err := CreateNode(filepath.Join(dir, "missing"), n1, "n", nil, 0); err == nil {
		t.Fatal("CreateNode with a missing CA succeeded")
	}
	if _, err := CreateNode(caDir, n1, "", nil, 0); err == nil {
		t.Fatal("CreateNode with an empty name succeeded")
	}
}

func TestEnsureDevConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- EnsureDev(dir, "node", []string{"127.0.0.1"}, 1)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("EnsureDev: %v", err)
		}
	}
	before, err := os.ReadFile(filepath.Join(dir, NodeCert))
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureDev(dir, "node", nil, 1); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, NodeCert))
	if string(before) != string(after) {
		t.Fatal("EnsureDev replaced an existing node certificate")
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if serr, cerr := handshake(t, c, c); serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if exists(filepath.Join(dir, CAKey)) || !exists(filepath.Join(DevCADir(dir), CAKey)) {
		t.Error("the dev CA key is in the certificates directory, not beside it")
	}
}

// TestEnsureDevRoles: the node certificate carries the node id (issued
// again for another id, as for one from before roles), an admin
// certificate comes with it, and a CA key an older version left in the
// directory moves out.
func TestEnsureDevRoles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	// The layout of an older version: CA key and a role-less node
	// certificate in the directory.
	a, err := newAuthority()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeAuthority(dir, a); err != nil {
		t.Fatal(err)
	}
	if err := a.writeLeaf(dir, "old", nil, Role{}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := EnsureDev(dir, "node-5", []string{"127.0.0.1"}, 5); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(dir, CAKey)) {
		t.Error("the CA key stayed in the certificates directory")
	}
	for k, want := range map[Kind]string{KindNode: "node 5", KindAdmin: "admin"} {
		tc, err := LoadKind(dir, k)
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := RoleOfConfig(tc); r.String() != want {
			t.Errorf("%s certificate role %s; want %s", k, r, want)
		}
		if serr, cerr := handshake(t, mustLoad(t, dir), tc); cerr != nil || serr != nil {
			t.Errorf("%s certificate not of the same CA as before: %v %v", k, serr, cerr)
		}
	}
	if err := EnsureDev(dir, "node-6", nil, 6); err != nil {
		t.Fatal(err)
	}
	if tc, _ := Load(dir); tc != nil {
		if r, _ := RoleOfConfig(tc); r.String() != "node 6" {
			t.Errorf("after EnsureDev for node 6 the node certificate is of %s", r)
		}
	}
}

func mustLoad(t *testing.T, dir string) *tls.Config {
	t.Helper()
	tc, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil {
		t.Fatal("Load of an empty dir succeeded")
	}
	if err := EnsureDev(dir, "n", nil, 1); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, CACert), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil {
		t.Fatal("Load with a corrupt CA succeeded")
	}
}
