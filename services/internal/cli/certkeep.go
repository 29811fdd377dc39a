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
// one is kept when it is signed by the CA in caDir and valid for every
// host, and refused otherwise (nothing is overwritten). It reports
// whether it kept one.
func createNode(caDir, out, name string, hosts []string, keep bool) (kept bool, err error) {
	if !keep || !exists(filepath.Join(out, tlsutil.NodeCert)) {
		return false, tlsutil.CreateNode(caDir, out, name, hosts)
	}
	tc, err := tlsutil.Load(out)
	if err != nil {
		return false, fmt.Errorf("keep the certificate in %s: %w", out, err)
	}
	ca, err := os.ReadFile(filepath.Join(caDir, tlsutil.CACert))
	if err != nil {
		return false, fmt.Errorf("read the CA: %w", err)
	}
	have, err := os.ReadFile(filepath.Join(out, tlsutil.CACert))
	if err != nil || !bytes.Equal(ca, have) {
		return false, fmt.Errorf("%s holds a certificate of another CA than %s: remove it to issue a new one", out, caDir)
	}
	for _, h := range hosts {
		if err := tlsutil.CheckHost(tc, h); err != nil {
			return false, fmt.Errorf("%s holds a certificate not valid for %s (remove it to issue a new one): %w", out, h, err)
		}
	}
	return true, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
