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
	CACert   = "ca.crt"
	CAKey    = "ca.key"
	NodeCert = "node.crt"
	NodeKey  = "node.key"
)

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

// issue signs a node certificate for name, valid as client and server,
// carrying ServerName and hosts (IPs or DNS names).
func (a *authority) issue(name string, hosts []string) (der []byte, key *ecdsa.PrivateKey, err error) {
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{ServerName},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, nil, fmt.Errorf("create node certificate: %w", err)
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

// Config issues a node certificate for name (valid for ServerName,
// localhost and the loopback addresses) and returns its TLS configuration.
func (c *TestCA) Config(name string) (*tls.Config, error) {
	der, key, err := c.a.issue(name, []string{"localhost", "127.0.0.1", "::1"})
	if err != nil {
		return nil, err
	}
	return config(tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, c.a.cert), nil
}

// EnsureDev creates, in dir, a CA and a node certificate for name and
// hosts when they are missing; existing files are kept. Several processes
// may call it at once for the same dir: an exclusive lock on dir/.lock
// serialises them, and files appear by rename, complete.
func EnsureDev(dir, name string, hosts []string) error {
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

	if exists(filepath.Join(dir, NodeCert)) && exists(filepath.Join(dir, NodeKey)) && exists(filepath.Join(dir, CACert)) {
		return nil
	}
	a, err := loadAuthority(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if a, err = newAuthority(); err == nil {
			err = writeAuthority(dir, a)
		}
	}
	if err != nil {
		return err
	}
	der, key, err := a.issue(name, hosts)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal node key: %w", err)
	}
	if err := writePEM(filepath.Join(dir, NodeKey), "EC PRIVATE KEY", kb, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(dir, NodeCert), "CERTIFICATE", der, 0o644)
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
func Load(dir string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, NodeCert), filepath.Join(dir, NodeKey))
	if err != nil {
		return nil, fmt.Errorf("load node certificate: %w", err)
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
