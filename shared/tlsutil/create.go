package tlsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
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

// CreateNode issues a node certificate for name, hosts (IP addresses or
// DNS names, besides ServerName) and node id (0: a random one) with the CA
// in caDir, and writes node.crt, node.key and a copy of ca.crt (never the
// CA key) to outDir. It returns the node id the certificate carries.
func CreateNode(caDir, outDir, name string, hosts []string, nodeID uint64) (uint64, error) {
	if name == "" {
		return 0, fmt.Errorf("tlsutil: node name is empty")
	}
	if nodeID == 0 {
		nodeID = randomNodeID()
	}
	return nodeID, CreateLeaf(caDir, outDir, name, hosts, NodeRole(nodeID), time.Now().Add(LeafValidity))
}

// LeafValidity is how long the certificates CreateNode, CreateClient and
// CreateAdmin issue are valid; rotate them before (daemons warn 30 days
// ahead, and reload a rotated certificate without a restart).
const LeafValidity = 365 * 24 * time.Hour

// CreateClient issues a client (application) certificate for name with
// the CA in caDir, limited to keys under prefixes (none: every key), and
// writes client.crt, client.key and a copy of ca.crt to outDir.
func CreateClient(caDir, outDir, name string, prefixes [][]byte) error {
	return CreateLeaf(caDir, outDir, name, nil, ClientRole(prefixes...), time.Now().Add(LeafValidity))
}

// CreateAdmin issues an admin (operator) certificate for name with the CA
// in caDir, and writes admin.crt, admin.key and a copy of ca.crt to outDir.
func CreateAdmin(caDir, outDir, name string) error {
	return CreateLeaf(caDir, outDir, name, nil, AdminRole(), time.Now().Add(LeafValidity))
}

// CreateLeaf issues a certificate of role r for name (and hosts, for a
// node), valid until notAfter, with the CA in caDir, and writes it, its key
// (0600) and a copy of ca.crt (never the CA key) to outDir under the file
// names of r's kind. Files appear by rename, complete, so a daemon
// watching them never reads half of one.
func CreateLeaf(caDir, outDir, name string, hosts []string, r Role, notAfter time.Time) error {
	if name == "" {
		return fmt.Errorf("tlsutil: certificate name is empty")
	}
	a, err := loadAuthority(caDir)
	if err != nil {
		return fmt.Errorf("tlsutil: load CA from %s: %w", caDir, err)
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return fmt.Errorf("tlsutil: create %s: %w", outDir, err)
	}
	if err := a.writeLeaf(outDir, name, hosts, r, notAfter); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	if filepath.Clean(caDir) != filepath.Clean(outDir) {
		if err := writePEM(filepath.Join(outDir, CACert), "CERTIFICATE", a.der, 0o644); err != nil {
			return fmt.Errorf("tlsutil: %w", err)
		}
	}
	return nil
}
