package tlsutil

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
)

// CreateCA creates a new cluster CA in dir (ca.crt and ca.key). It refuses
// to overwrite an existing CA.
func CreateCA(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("tlsutil: create %s: %w", dir, err)
	}
	for _, f := range []string{CACert, CAKey} {
		if exists(filepath.Join(dir, f)) {
			return fmt.Errorf("tlsutil: %s already exists; refusing to overwrite the CA", filepath.Join(dir, f))
		}
	}
	a, err := newAuthority()
	if err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := writeAuthority(dir, a); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	return nil
}

// CreateNode issues a node certificate for name and hosts (IP addresses or
// DNS names, besides ServerName) with the CA in caDir, and writes node.crt,
// node.key and a copy of ca.crt (never the CA key) to outDir.
func CreateNode(caDir, outDir, name string, hosts []string) error {
	if name == "" {
		return fmt.Errorf("tlsutil: node name is empty")
	}
	a, err := loadAuthority(caDir)
	if err != nil {
		return fmt.Errorf("tlsutil: load CA from %s: %w", caDir, err)
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return fmt.Errorf("tlsutil: create %s: %w", outDir, err)
	}
	der, key, err := a.issue(name, hosts)
	if err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("tlsutil: marshal node key: %w", err)
	}
	if err := writePEM(filepath.Join(outDir, NodeKey), "EC PRIVATE KEY", kb, 0o600); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := writePEM(filepath.Join(outDir, NodeCert), "CERTIFICATE", der, 0o644); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	if filepath.Clean(caDir) != filepath.Clean(outDir) {
		if err := writePEM(filepath.Join(outDir, CACert), "CERTIFICATE", a.der, 0o644); err != nil {
			return fmt.Errorf("tlsutil: %w", err)
		}
	}
	return nil
}
