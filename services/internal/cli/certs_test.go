package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// pick runs pickCerts with args (the working directory is the test's)
// for calling addrs.
func pick(t *testing.T, addrs []string, args ...string) certsChoice {
	t.Helper()
	var got certsChoice
	app := &cli.App{Flags: []cli.Flag{certsDirFlag()}, Action: func(c *cli.Context) error {
		got = pickCerts(c, addrs)
		return nil
	}}
	if err := app.Run(append([]string{"x"}, args...)); err != nil {
		t.Fatal(err)
	}
	return got
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no true command: %v", err)
	}
	return cmd.Process.Pid
}

// writeFile writes a cluster file naming one node per raftd address, each
// with certs dir <dir>/n<i>.
func writeFile(t *testing.T, path string, pid int, raftAddrs ...string) {
	t.Helper()
	cl := cluster{SupervisorPID: pid}
	for i, a := range raftAddrs {
		cl.Nodes = append(cl.Nodes, clusterNode{Node: i + 1, CertsDir: filepath.Join(filepath.Dir(path), "n"+string(rune('1'+i))),
			Daemons: map[string]daemonAddress{"raftd": {Bus: a}, "stored": {Bus: "127.0.0.1:1"}}})
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeClusterFile(path, cl); err != nil {
		t.Fatal(err)
	}
}

func TestPickCerts(t *testing.T) {
	t.Chdir(t.TempDir())
	touch := func(dir string) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, tlsutil.NodeCert), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a1 := []string{"127.0.0.1:7402"}
	runDir, devDir := filepath.Join("data", "certs"), filepath.Join("data", "dev", "node1", "certs")
	if got := pick(t, a1); got.dir != runDir {
		t.Errorf("nothing here: %q; want %q (named in the load error)", got.dir, runDir)
	}
	touch(devDir)
	if got := pick(t, a1); got.dir != devDir {
		t.Errorf("only make dev's certificates: %q; want %q", got.dir, devDir)
	}
	touch(runDir)
	if got := pick(t, a1); got.dir != runDir || !strings.Contains(got.why, "default") {
		t.Errorf("both, no cluster file: %+v; want %q by default", got, runDir)
	}

	// make run then make dev: both files list 7402; the running one wins
	// over the stopped one, whichever was written last.
	devFile, runFile := filepath.Join("data", "dev", clusterFileName), filepath.Join("data", nodeFileName)
	writeFile(t, devFile, os.Getpid(), "127.0.0.1:7402", "127.0.0.1:7412")
	writeFile(t, runFile, deadPID(t), "127.0.0.1:7402")
	devN1, devN2, runN1 := filepath.Join("data", "dev", "n1"), filepath.Join("data", "dev", "n2"), filepath.Join("data", "n1")
	if got := pick(t, a1); got.dir != devN1 || !strings.Contains(got.why, devFile) || !strings.Contains(got.why, "running") {
		t.Errorf("running dev, stopped run: %+v; want %s, saying why", got, devN1)
	}
	if got := pick(t, []string{"127.0.0.1:7412"}); got.dir != devN2 {
		t.Errorf("node 2's raftd: %q; want %q", got.dir, devN2)
	}
	// Neither running: the file written last.
	writeFile(t, devFile, deadPID(t), "127.0.0.1:7402")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(devFile, old, old); err != nil {
		t.Fatal(err)
	}
	if got := pick(t, a1); got.dir != runN1 || len(got.others) == 0 {
		t.Errorf("both stopped, run newer: %+v; want %s and the dev one suggested", got, runN1)
	}
	if got := pick(t, a1, "--certs-dir", "elsewhere"); got.dir != "elsewhere" || got.why != "--certs-dir" {
		t.Errorf("explicit flag: %+v; want elsewhere", got)
	}
}

// TestCertsOfTheClusterAtAddr reproduces `make run` then `make dev`: the
// single node's certificates stay in ./data/certs while a cluster of
// another CA runs. kv get picks the cluster's certificates from its
// cluster.json; without that file it fails at once (not after the
// timeout) with a hint naming the directory it used and what to try.
func TestCertsOfTheClusterAtAddr(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := tlsutil.EnsureDev(filepath.Join("data", "certs"), "node-run", []string{"127.0.0.1"}, 1); err != nil {
		t.Fatal(err)
	}
	devCerts := filepath.Join("data", "dev", "node1", "certs")
	if err := tlsutil.EnsureDev(devCerts, "node-dev", []string{"127.0.0.1"}, 1); err != nil {
		t.Fatal(err)
	}
	fc := kvclienttest.Start(t, kvclienttest.Options{CA: devCA(devCerts)})
	file := filepath.Join("data", "dev", clusterFileName)
	cl := cluster{SupervisorPID: os.Getpid(), Nodes: []clusterNode{{Node: 1, CertsDir: devCerts, Daemons: map[string]daemonAddress{"raftd": {Bus: fc.Addrs()[0]}}}}}
	if err := writeClusterFile(file, cl); err != nil {
		t.Fatal(err)
	}
	runOK(t, "kv", "put", "--addr", fc.Addrs()[0], "k", "v")
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, _, errOut := run(t, "kv", "get", "--addr", fc.Addrs()[0], "--timeout", "1m", "k")
	if code != ExitFailed || !strings.Contains(errOut, "unauthenticated") ||
		!strings.Contains(errOut, "hint: the certificates in "+filepath.Join("data", "certs")) || !strings.Contains(errOut, "--certs-dir") {
		t.Fatalf("kv get with another cluster's certificates: exit %d, %q; want 1, unauthenticated and a hint", code, errOut)
	}
	t.Logf("failed after %v: %s", time.Since(start).Round(time.Millisecond), errOut)
}
