package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// keepExistingFlag makes `cert create-*` idempotent, for one-shot
// containers and scripts run again.
func keepExistingFlag() cli.Flag {
	return &cli.BoolFlag{Name: "keep-existing", Usage: "keep what the directory already holds (checked) instead of refusing"}
}

// createCA creates a CA in dir; with keep, an existing one is kept. It
// reports whether it kept one.
func createCA(dir string, keep bool) (kept bool, err error) {
	if keep && exists(filepath.Join(dir, tlsutil.CACert)) && exists(filepath.Join(dir, tlsutil.CAKey)) {
		return true, nil
	}
	return false, tlsutil.CreateCA(dir)
}

// createNode issues a node certificate into out; with keep, an existing
// one is kept when it is signed by the CA in caDir, of node nodeID (any
// node when 0) and valid for every host, and refused otherwise (nothing is
// overwritten). It reports whether it kept one and its node id.
func createNode(caDir, out, name string, hosts []string, nodeID uint64, keep bool) (kept bool, id uint64, err error) {
	if !keep || !exists(filepath.Join(out, tlsutil.NodeCert)) {
		id, err := tlsutil.CreateNode(caDir, out, name, hosts, nodeID)
		return false, id, err
	}
	tc, err := tlsutil.Load(out)
	if err != nil {
		return false, 0, fmt.Errorf("keep the certificate in %s: %w", out, err)
	}
	ca, err := os.ReadFile(filepath.Join(caDir, tlsutil.CACert))
	if err != nil {
		return false, 0, fmt.Errorf("read the CA: %w", err)
	}
	have, err := os.ReadFile(filepath.Join(out, tlsutil.CACert))
	if err != nil || !bytes.Equal(ca, have) {
		return false, 0, fmt.Errorf("%s holds a certificate of another CA than %s: remove it to issue a new one", out, caDir)
	}
	r, err := tlsutil.RoleOfConfig(tc)
	if err != nil || r.Kind != tlsutil.KindNode || (nodeID != 0 && r.NodeID != nodeID) {
		return false, 0, fmt.Errorf("%s holds a certificate of role %s, not of node %d (remove it to issue a new one)", out, r, nodeID)
	}
	for _, h := range hosts {
		if err := tlsutil.CheckHost(tc, h); err != nil {
			return false, 0, fmt.Errorf("%s holds a certificate not valid for %s (remove it to issue a new one): %w", out, h, err)
		}
	}
	return true, r.NodeID, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// certNodeID returns the node id of the node certificate in dir.
func certNodeID(dir string) (uint64, error) {
	tc, err := tlsutil.Load(dir)
	if err != nil {
		return 0, fmt.Errorf("load the node certificate from %s: %w", dir, err)
	}
	r, err := tlsutil.RoleOfConfig(tc)
	if err != nil {
		return 0, fmt.Errorf("the node certificate in %s: %w", dir, err)
	}
	if r.Kind != tlsutil.KindNode {
		return 0, fmt.Errorf("the certificate %s in %s has role %s, not node: issue it again with `pleiades cert create-node`", tlsutil.NodeCert, dir, r)
	}
	return r.NodeID, nil
}
