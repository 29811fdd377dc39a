package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ServerName is the DNS name every node certificate carries and every
// client verifies.
const ServerName = "node.pleiades"

// File names in a certificates directory.
const (
	CACert     = "ca.crt"
	CAKey      = "ca.key"
	NodeCert   = "node.crt"
	NodeKey    = "node.key"
	ClientCert = "client.crt"
	ClientKey  = "client.key"
	AdminCert  = "admin.crt"
	AdminKey   = "admin.key"
)

// Files returns the certificate and key file names of a role kind in a
// certificates directory.
func Files(k Kind) (cert, key string) {
	switch k {
	case KindClient:
		return ClientCert, ClientKey
	case KindAdmin:
		return AdminCert, AdminKey
	}
	return NodeCert, NodeKey
}

const validity = 10 * 365 * 24 * time.Hour

// authority is a CA certificate and its key.
type authority struct {
	cert *x509.Certificate
	der  []byte
	key  *ecdsa.PrivateKey
}

func newAuthority() (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "pleiades-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &authority{cert: cert, der: der, key: key}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// issue signs a certificate for name with role r. A node certificate is
// valid as client and server and carries ServerName and hosts (IPs or DNS
// names); client and admin certificates are valid as clients only.
func (a *authority) issue(name string, hosts []string, r Role) (der []byte, key *ecdsa.PrivateKey, err error) {
	return a.issueUntil(name, hosts, r, time.Now().Add(validity))
}

// issueUntil is issue with the certificate's end of validity.
func (a *authority) issueUntil(name string, hosts []string, r Role, notAfter time.Time) (der []byte, key *ecdsa.PrivateKey, err error) {
	var uris []*url.URL
	if r.Kind != KindNone { // KindNone: a certificate as issued before roles (tests)
		u, err := r.URI()
		if err != nil {
			return nil, nil, err
		}
		uris = append(uris, u)
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notBefore(notAfter),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         uris,
	}
	if r.Kind == KindNode || r.Kind == KindNone {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.DNSNames = []string{ServerName}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if h != "" {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, nil, fmt.Errorf("create %s certificate: %w", r.Kind, err)
	}
	return der, key, nil
}

// config builds the mutual TLS 1.3 configuration from a node certificate
// and the CA.
func config(cert tls.Certificate, ca *x509.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   ServerName,
	}
}

// TestCA is an in-memory CA for tests.
type TestCA struct{ a *authority }

// NewTestCA creates an in-memory CA.
func NewTestCA() (*TestCA, error) {
	a, err := newAuthority()
	if err != nil {
		return nil, err
	}
	return &TestCA{a: a}, nil
}

// LoadTestCA is a TestCA with the CA of dir (ca.crt, ca.key), or of the
// dev CA of certificates directory dir, e.g. to issue certificates of a
// dev cluster in tests.
func LoadTestCA(dir string) (*TestCA, error) {
	a, err := loadAuthority(dir)
	if errors.Is(err, fs.ErrNotExist) {
		a, err = loadAuthority(DevCADir(dir))
	}
	if err != nil {
		return nil, err
	}
	return &TestCA{a: a}, nil
}

// Config issues a node certificate for name with a random node id (valid
// for ServerName, localhost and the loopback addresses) and returns its
// TLS configuration.
func (c *TestCA) Config(name string) (*tls.Config, error) {
	return c.Issue(name, NodeRole(randomNodeID()))
}

// Issue issues a certificate for name with role r (a node's valid for
// ServerName, localhost and the loopback addresses) and returns its TLS
// configuration.
func (c *TestCA) Issue(name string, r Role) (*tls.Config, error) {
	der, key, err := c.a.issue(name, []string{"localhost", "127.0.0.1", "::1"}, r)
	if err != nil {
		return nil, err
	}
	return config(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, c.a.cert), nil
}

// notBefore is an hour ago (for clock skew), or earlier still for a
// certificate that ends before that.
func notBefore(notAfter time.Time) time.Time {
	nb := time.Now().Add(-time.Hour)
	if notAfter.Before(nb) {
		return notAfter.Add(-time.Hour)
	}
	return nb
}

// IssueUntil is Issue with the certificate's end of validity (in the
// past: an expired certificate).
func (c *TestCA) IssueUntil(name string, r Role, notAfter time.Time) (*tls.Config, error) {
	der, key, err := c.a.issueUntil(name, []string{"localhost", "127.0.0.1", "::1"}, r, notAfter)
	if err != nil {
		return nil, err
	}
	return config(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, c.a.cert), nil
}

// randomNodeID is a random non-zero node id below 2^63.
func randomNodeID() uint64 {
	for {
		n := serial().Uint64() >> 1
		if n != 0 {
			return n
		}
	}
}

// DevCADir is where EnsureDev keeps the dev CA of the certificates
// directory dir: a sibling, dev-ca, so that dir never holds the CA key.
func DevCADir(dir string) string { return filepath.Join(filepath.Dir(filepath.Clean(dir)), "dev-ca") }

// EnsureDev creates, in dir, a node certificate for name, hosts and node
// id and an admin certificate (for the CLI), signed by a dev CA kept in
// DevCADir(dir) (created when missing; a CA key left in dir by an older
// version moves there), with a copy of ca.crt in dir. Existing files are
// kept, except a node certificate that does not carry this node id (one
// issued before roles, or for another node), which is issued again.
// Several processes may call it at once for the same dir: an exclusive
// lock on dir/.lock serialises them, and files appear by rename,
// complete. It is the development shortcut behind --dev.
func EnsureDev(dir, name string, hosts []string, nodeID uint64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	caDir := DevCADir(dir)
	if err := moveDevCA(dir, caDir); err != nil {
		return err
	}
	nodeOK := exists(filepath.Join(dir, CACert)) && hasRole(dir, NodeCert, NodeRole(nodeID))
	adminOK := exists(filepath.Join(dir, AdminCert)) && exists(filepath.Join(dir, AdminKey))
	if nodeOK && (adminOK || !exists(filepath.Join(caDir, CAKey))) {
		return nil // complete, or certificates from `pleiades cert` (no CA key here)
	}
	a, err := loadAuthority(caDir)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(caDir, 0o700); err == nil {
			if a, err = newAuthority(); err == nil {
				err = writeAuthority(caDir, a)
			}
		}
		nodeOK, adminOK = false, false
	}
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, CACert), "CERTIFICATE", a.der, 0o644); err != nil {
		return err
	}
	if !nodeOK {
		if err := a.writeLeaf(dir, name, hosts, NodeRole(nodeID), time.Now().Add(validity)); err != nil {
			return err
		}
	}
	if !adminOK {
		if err := a.writeLeaf(dir, "admin", nil, AdminRole(), time.Now().Add(validity)); err != nil {
			return err
		}
	}
	return nil
}

// moveDevCA moves a CA key that an older EnsureDev left in dir to caDir.
func moveDevCA(dir, caDir string) error {
	key := filepath.Join(dir, CAKey)
	if !exists(key) || exists(filepath.Join(caDir, CAKey)) {
		return nil
	}
	a, err := loadAuthority(dir)
	if err != nil {
		return fmt.Errorf("move the dev CA out of %s: %w", dir, err)
	}
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", caDir, err)
	}
	if err := writeAuthority(caDir, a); err != nil {
		return err
	}
	if err := os.Remove(key); err != nil {
		return fmt.Errorf("move the dev CA out of %s: %w", dir, err)
	}
	return nil
}

// hasRole reports whether dir/certFile is readable and carries role r.
func hasRole(dir, certFile string, r Role) bool {
	b, err := readPEM(filepath.Join(dir, certFile), "CERTIFICATE")
	if err != nil {
		return false
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return false
	}
	have, err := RoleOf(c)
	return err == nil && have.String() == r.String()
}

// writeLeaf issues a certificate of role r and writes it with its key
// (mode 0600) to dir, under the file names of r's kind.
func (a *authority) writeLeaf(dir, name string, hosts []string, r Role, notAfter time.Time) error {
	der, key, err := a.issueUntil(name, hosts, r, notAfter)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal %s key: %w", r.Kind, err)
	}
	certFile, keyFile := Files(r.Kind)
	if err := writePEM(filepath.Join(dir, keyFile), "EC PRIVATE KEY", kb, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, certFile), "CERTIFICATE", der, 0o644)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func loadAuthority(dir string) (*authority, error) {
	cb, err := readPEM(filepath.Join(dir, CACert), "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	kb, err := readPEM(filepath.Join(dir, CAKey), "EC PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(cb)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", CACert, err)
	}
	key, err := x509.ParseECPrivateKey(kb)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", CAKey, err)
	}
	return &authority{cert: cert, der: cb, key: key}, nil
}

func writeAuthority(dir string, a *authority) error {
	kb, err := x509.MarshalECPrivateKey(a.key)
	if err != nil {
		return fmt.Errorf("marshal CA key: %w", err)
	}
	if err := writePEM(filepath.Join(dir, CAKey), "EC PRIVATE KEY", kb, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, CACert), "CERTIFICATE", a.der, 0o644)
}

func readPEM(path, typ string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%s: no %s PEM block", path, typ)
	}
	return blk.Bytes, nil
}

// writePEM writes one PEM block to path atomically (temp file + rename).
func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := pem.Encode(tmp, &pem.Block{Type: typ, Bytes: der}); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}

// Load reads dir/node.crt, dir/node.key and dir/ca.crt into a mutual TLS
// 1.3 configuration usable for both listening and dialing.
func Load(dir string) (*tls.Config, error) { return LoadKind(dir, KindNode) }

// LoadKind is Load for the certificate of role kind k in dir (node.crt,
// client.crt or admin.crt, with its key). The key file must not be
// readable by group or others.
func LoadKind(dir string, k Kind) (*tls.Config, error) {
	certFile, keyFile := Files(k)
	if err := checkKeyMode(filepath.Join(dir, keyFile)); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, certFile), filepath.Join(dir, keyFile))
	if err != nil {
		return nil, fmt.Errorf("load %s certificate: %w", k, err)
	}
	cb, err := readPEM(filepath.Join(dir, CACert), "CERTIFICATE")
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	ca, err := x509.ParseCertificate(cb)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", CACert, err)
	}
	return config(cert, ca), nil
}

// LoadFirst loads the first certificate of the kinds, in order, whose
// certificate file dir holds (e.g. admin, then node for the CLI). With
// none there, it loads the last kind, whose error names the file.
func LoadFirst(dir string, kinds ...Kind) (*tls.Config, error) {
	for i, k := range kinds {
		certFile, _ := Files(k)
		if i == len(kinds)-1 || exists(filepath.Join(dir, certFile)) {
			return LoadKind(dir, k)
		}
	}
	return nil, errors.New("tlsutil: no certificate kind given")
}

// checkKeyMode refuses a private key file that group or others may read.
func checkKeyMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("load key: %w", err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("tlsutil: key file %s has mode %04o: group or others may read it; `chmod 600 %s`", path, m, path)
	}
	return nil
}

// RoleOfConfig returns the role of tc's own certificate.
func RoleOfConfig(tc *tls.Config) (Role, error) {
	leaf, err := leafOf(tc)
	if err != nil {
		return Role{}, err
	}
	return RoleOf(leaf)
}
