package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// certsDirFlag is the --certs-dir flag of every command that calls a
// daemon over the bus. Left unset, pickCerts chooses the certificates of
// the cluster the command talks to.
func certsDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name: "certs-dir",
		Usage: "`DIR` of the certificates (ca.crt and admin.crt, else client.crt, else node.crt, with its key); default: the certificates of the " +
			"node that ./data/dev/cluster.json (`make dev`) or ./data/node.json (`make run`) lists at --addr",
	}
}

// Files that `pleiades dev` and `pleiades up` write in their data dir: the
// nodes they run, with each daemon's addresses and the node's certificates
// directory. The CLI reads the ones of the default data dirs (`make dev`,
// `make run`) to pick the certificates of the cluster it talks to.
const (
	clusterFileName = "cluster.json" // pleiades dev
	nodeFileName    = "node.json"    // pleiades up
)

// knownClusterFiles are where pickCerts looks, relative to the working
// directory: the data dirs of `make dev` and `make run`.
func knownClusterFiles() []string {
	return []string{
		filepath.Join(".", "data", "dev", clusterFileName),
		filepath.Join(".", "data", nodeFileName),
	}
}

// fallbackCertsDirs are where pickCerts looks when no cluster file lists
// the address: the node of `make run`, then node 1 of `make dev`.
func fallbackCertsDirs() []string {
	return []string{
		filepath.Join(".", "data", "certs"),
		filepath.Join(".", "data", "dev", "node1", "certs"),
	}
}

// certsChoice is the certificates directory a command uses, and why: the
// one line said when the TLS handshake fails.
type certsChoice struct {
	dir string
	// why says how dir was chosen.
	why string
	// others are other certificate directories known here, to suggest.
	others []string
}

// pickCerts chooses the certificates for calling addrs: --certs-dir when
// given; else the certificates directory of the node listing one of addrs
// in a known cluster file (a running supervisor's file first, then the most
// recently written); else the first fallback directory holding a node
// certificate (the first one when none does, so that the error names it).
func pickCerts(c *cli.Context, addrs []string) certsChoice {
	if d := c.String("certs-dir"); d != "" {
		return certsChoice{dir: d, why: "--certs-dir"}
	}
	type match struct {
		dir, why string
		live     bool
		written  time.Time
	}
	var matches []match
	var others []string
	for _, f := range knownClusterFiles() {
		cl, mod, err := readClusterFile(f)
		if err != nil {
			continue
		}
		live := processAlive(cl.SupervisorPID)
		for _, n := range cl.Nodes {
			if n.CertsDir == "" {
				continue
			}
			others = append(others, n.CertsDir)
			for _, d := range sortedKeys(n.Daemons) {
				if a := n.Daemons[d]; slices.Contains(addrs, a.Bus) || (a.NATS != "" && slices.Contains(addrs, a.NATS)) {
					state := "its supervisor is not running"
					if live {
						state = "its supervisor is running"
					}
					matches = append(matches, match{dir: n.CertsDir, live: live, written: mod,
						why: fmt.Sprintf("%s lists %s as %s of this node; %s", f, n.Daemons[d].Bus, d, state)})
					break
				}
			}
		}
	}
	others = dedupe(others)
	if len(matches) > 0 {
		slices.SortStableFunc(matches, func(a, b match) int {
			if a.live != b.live {
				if a.live {
					return -1
				}
				return 1
			}
			return b.written.Compare(a.written)
		})
		return certsChoice{dir: matches[0].dir, why: matches[0].why, others: without(others, matches[0].dir)}
	}
	dirs := fallbackCertsDirs()
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, tlsutil.NodeCert)); err == nil {
			return certsChoice{dir: d, why: "the default; no cluster file here lists " + strings.Join(addrs, ","), others: without(dedupe(append(others, dirs...)), d)}
		}
	}
	return certsChoice{dir: dirs[0], why: "the default", others: without(others, dirs[0])}
}

// readClusterFile reads a cluster file and its modification time.
func readClusterFile(path string) (cluster, time.Time, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return cluster{}, time.Time{}, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cluster{}, time.Time{}, err
	}
	var cl cluster
	if err := json.Unmarshal(b, &cl); err != nil {
		return cluster{}, time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	return cl, fi.ModTime(), nil
}

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func without(s []string, x string) []string {
	return slices.DeleteFunc(slices.Clone(s), func(y string) bool { return y == x })
}

// load loads the chosen certificates; the error names the directory and
// why it was chosen.
func (cc certsChoice) load() (*tls.Config, error) {
	tc, err := tlsutil.LoadFirst(cc.dir, tlsutil.KindAdmin, tlsutil.KindClient, tlsutil.KindNode)
	if err != nil {
		return nil, fmt.Errorf("load certificates from %s (%s): %w\nhint: give the certificates of the cluster with --certs-dir%s", cc.dir, cc.why, err, cc.suggest())
	}
	return tc, nil
}

// suggest lists other certificate directories to try, for a hint.
func (cc certsChoice) suggest() string {
	if len(cc.others) == 0 {
		return ""
	}
	return " (found here: " + strings.Join(cc.others, ", ") + ")"
}

// explain adds a one-line hint to the error of a call to addrs made with
// the certificates cc: what to try when nothing listens there, when the
// handshake failed (certificates of another cluster) or when the cluster
// is not initialized.
func (cc certsChoice) explain(err error, addrs []string) error {
	if err == nil {
		return nil
	}
	where := strings.Join(addrs, ",")
	switch {
	case errors.Is(err, bus.ErrPermissionDenied):
		return fmt.Errorf("%w\nhint: the certificates in %s (%s) may not do this: admin commands need an admin certificate (admin.crt, from `pleiades cert create-admin --out-dir %s`)", err, cc.dir, cc.why, cc.dir)
	case errors.Is(err, bus.ErrUnauthenticated):
		return fmt.Errorf("%w\nhint: the certificates in %s (%s) are not of the cluster at %s; give its certificates with --certs-dir%s", err, cc.dir, cc.why, where, cc.suggest())
	case bus.ReasonOf(err) == bus.ReasonNoListener:
		return fmt.Errorf("%w\nhint: nothing listens at %s: is the node running? `pleiades status` shows its daemons; `make run` (pleiades up) or `make dev` (pleiades dev) starts one; --addr aims elsewhere", err, where)
	}
	return initHint(err)
}

// withBus runs fn with a client-only bus endpoint (on loopback when addr
// is) that presents the certificates cc chose, and stops the endpoint
// after.
func withBus(ctx context.Context, cc certsChoice, addr string, fn func(*bus.Bus) error) error {
	tc, err := cc.load()
	if err != nil {
		return err
	}
	b, err := bus.New(bus.Config{ListenAddr: bus.ClientListenAddr(addr), TLS: tc}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = b.Stop(sctx)
	}()
	return fn(b)
}
