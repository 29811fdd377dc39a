package tlsutil

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestRoleURIRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		r   Role
		uri string
	}{
		{NodeRole(7), "pleiades://node/7"},
		{ClientRole(), "pleiades://client"},
		{ClientRole([]byte("app/"), []byte("a b&c=\x00\xff")), "pleiades://client?prefix=app%2F&prefix=a+b%26c%3D%00%FF"},
		{AdminRole(), "pleiades://admin"},
	} {
		u, err := tt.r.URI()
		if err != nil {
			t.Fatalf("%v.URI: %v", tt.r, err)
		}
		if u.String() != tt.uri {
			t.Errorf("%v.URI = %s; want %s", tt.r, u, tt.uri)
		}
		back, err := ParseRole(u.String())
		if err != nil || back.String() != tt.r.String() || !slices.EqualFunc(back.Prefixes, tt.r.Prefixes, bytes.Equal) {
			t.Errorf("ParseRole(%s) = %v, %v; want %v", u, back, err, tt.r)
		}
	}
	for _, r := range []Role{NodeRole(0), ClientRole([]byte{}), {Kind: KindNone}} {
		if _, err := r.URI(); err == nil {
			t.Errorf("%v.URI succeeded", r)
		}
	}
}

func TestParseRoleRefuses(t *testing.T) {
	for _, s := range []string{
		"", "node/1", "https://node/1", "pleiades://node/0", "pleiades://node/01", "pleiades://node/x",
		"pleiades://node/1?prefix=a", "pleiades://node/", "pleiades://client/x", "pleiades://client?prefix=",
		"pleiades://client?other=1", "pleiades://admin/x", "pleiades://admin?x=1", "pleiades://root",
		"pleiades://user@admin", "pleiades://admin:1", "pleiades://admin#x", "pleiades:admin",
		"pleiades://node/18446744073709551616",
	} {
		if r, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) = %v; want an error", s, r)
		}
	}
}

func TestRoleOfCertificate(t *testing.T) {
	node, _ := url.Parse("pleiades://node/3")
	admin, _ := url.Parse("pleiades://admin")
	other, _ := url.Parse("https://example.com")
	for _, tt := range []struct {
		uris []*url.URL
		want string
		ok   bool
	}{
		{nil, "none", true},
		{[]*url.URL{other}, "none", true},
		{[]*url.URL{other, node}, "node 3", true},
		{[]*url.URL{node, admin}, "", false},
	} {
		r, err := RoleOf(&x509.Certificate{URIs: tt.uris})
		if (err == nil) != tt.ok || (err == nil && r.String() != tt.want) {
			t.Errorf("RoleOf(%v) = %v, %v; want %q ok=%v", tt.uris, r, err, tt.want, tt.ok)
		}
	}
}

func TestAllowsSpan(t *testing.T) {
	r := ClientRole([]byte("a/"), []byte("\xff"))
	for _, tt := range []struct {
		start, end string
		ok         bool
	}{
		{"a/", "a0", true},
		{"a/x", "a/y", true},
		{"a/", "a1", false},
		{"a/", "", false},
		{"a", "a/z", false},
		{"\xff", "", true},
		{"\xff\x01", "", true},
		{"\xfe", "", false},
	} {
		if got := r.AllowsSpan([]byte(tt.start), []byte(tt.end)); got != tt.ok {
			t.Errorf("AllowsSpan(%q, %q) = %v; want %v", tt.start, tt.end, got, tt.ok)
		}
	}
	if !ClientRole().AllowsSpan(nil, nil) || !AdminRole().AllowsKey([]byte("x")) {
		t.Error("an unlimited role refuses a span or key")
	}
}

// TestCreateRoles issues each kind with the CLI's functions and loads it
// back with its role; key files are 0600 and a readable one is refused.
func TestCreateRoles(t *testing.T) {
	dir := t.TempDir()
	caDir, out := filepath.Join(dir, "ca"), filepath.Join(dir, "out")
	if err := CreateCA(caDir); err != nil {
		t.Fatal(err)
	}
	id, err := CreateNode(caDir, out, "n", []string{"127.0.0.1"}, 0)
	if err != nil || id == 0 {
		t.Fatalf("CreateNode = %d, %v", id, err)
	}
	if err := CreateClient(caDir, out, "app", [][]byte{[]byte("app/")}); err != nil {
		t.Fatal(err)
	}
	if err := CreateAdmin(caDir, out, "ops"); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[Kind]string{KindNode: NodeRole(id).String(), KindClient: `client (prefixes "app/")`, KindAdmin: "admin"} {
		tc, err := LoadKind(out, k)
		if err != nil {
			t.Fatalf("LoadKind(%s): %v", k, err)
		}
		if r, err := RoleOfConfig(tc); err != nil || r.String() != want {
			t.Errorf("role of %s = %v, %v; want %s", k, r, err, want)
		}
	}
	if tc, err := LoadFirst(out, KindAdmin, KindNode); err != nil {
		t.Fatal(err)
	} else if r, _ := RoleOfConfig(tc); r.Kind != KindAdmin {
		t.Errorf("LoadFirst(admin, node) loaded %s", r)
	}
	if exists(filepath.Join(out, CAKey)) {
		t.Error("the CA key was copied into the certificates directory")
	}
	for _, k := range []Kind{KindNode, KindClient, KindAdmin} {
		_, key := Files(k)
		if m := mode(t, filepath.Join(out, key)); m != 0o600 {
			t.Errorf("%s has mode %o; want 600", key, m)
		}
	}
	if err := chmod(filepath.Join(out, ClientKey), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKind(out, KindClient); err == nil {
		t.Error("a group-readable key was loaded")
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func chmod(path string, m os.FileMode) error { return os.Chmod(path, m) }

// TestRequirePeer: a listener with RequirePeer(KindNode) completes the
// handshake with node certificates of its CA only; client, admin and
// role-less certificates of the same CA fail it.
func TestRequirePeer(t *testing.T) {
	ca, err := NewTestCA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue("n1", NodeRole(1))
	if err != nil {
		t.Fatal(err)
	}
	srv.VerifyConnection = RequirePeer(KindNode)
	for _, tt := range []struct {
		role Role
		ok   bool
	}{
		{NodeRole(2), true},
		{ClientRole(), false},
		{ClientRole([]byte("app/")), false},
		{AdminRole(), false},
		{Role{}, false},
	} {
		cl, err := ca.Issue("peer", tt.role)
		if err != nil {
			t.Fatal(err)
		}
		serr, cerr := handshake(t, srv, cl)
		if tt.ok && (serr != nil || cerr != nil) {
			t.Errorf("%v: handshake %v / %v; want accepted", tt.role, serr, cerr)
		}
		if !tt.ok && serr == nil {
			t.Errorf("%v: the listener accepted the handshake; want refused", tt.role)
		}
	}
	// The peer's check applies when dialing too: a node dialing a
	// listener that presents a node certificate passes.
	dialer, err := ca.Issue("n3", NodeRole(3))
	if err != nil {
		t.Fatal(err)
	}
	dialer.VerifyConnection = RequirePeer(KindNode)
	if serr, cerr := handshake(t, srv, dialer); serr != nil || cerr != nil {
		t.Errorf("node to node with checks on both sides: %v / %v", serr, cerr)
	}
	// A listener whose certificate passes the chain's checks but names no
	// node role (one issued before roles) is refused by the dialer's.
	noRole, err := ca.Issue("old", Role{})
	if err != nil {
		t.Fatal(err)
	}
	if _, cerr := handshake(t, noRole, dialer); cerr == nil {
		t.Error("dialing a listener with a certificate without a role succeeded; want refused")
	}
	if _, err := PeerRole(tls.ConnectionState{}); err != nil {
		t.Errorf("PeerRole without certificates: %v", err)
	}
}
