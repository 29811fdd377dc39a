package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

func TestCertsDirDefault(t *testing.T) {
	run := func(args ...string) string {
		var got string
		app := &cli.App{Flags: []cli.Flag{certsDirFlag()}, Action: func(c *cli.Context) error {
			got = certsDir(c)
			return nil
		}}
		if err := app.Run(append([]string{"x"}, args...)); err != nil {
			t.Fatal(err)
		}
		return got
	}
	touch := func(dir string) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, tlsutil.NodeCert), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(t.TempDir())
	runDir, devDir := filepath.Join("data", "certs"), filepath.Join("data", "dev", "node1", "certs")
	if got := run(); got != runDir {
		t.Errorf("no certificates: %q; want %q (named in the load error)", got, runDir)
	}
	touch(devDir)
	if got := run(); got != devDir {
		t.Errorf("make dev layout: %q; want %q", got, devDir)
	}
	touch(runDir)
	if got := run(); got != runDir {
		t.Errorf("make run layout: %q; want %q", got, runDir)
	}
	if got := run("--certs-dir", "elsewhere"); got != "elsewhere" {
		t.Errorf("explicit flag: %q; want elsewhere", got)
	}
}
