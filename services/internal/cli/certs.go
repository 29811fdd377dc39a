package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// certsDirFlag is the --certs-dir flag of every command that calls a
// daemon over the bus. Left unset, certsDir picks the certificates of the
// node the default addresses point at.
func certsDirFlag() cli.Flag {
	return &cli.StringFlag{
		Name: "certs-dir",
		Usage: "`DIR` of the node certificate (node.crt, node.key, ca.crt); default ./data/certs " +
			"(`make run`), else ./data/dev/node1/certs (`make dev`)",
	}
}

// defaultCertsDirs are where certsDir looks, in order, when --certs-dir is
// unset: the node of `make run`, then node 1 of `make dev` (which uses the
// default ports).
func defaultCertsDirs() []string {
	return []string{
		filepath.Join(".", "data", "certs"),
		filepath.Join(".", "data", "dev", "node1", "certs"),
	}
}

// certsDir returns --certs-dir, or the first default dir holding a node
// certificate (the first default when none does, so the error names it).
func certsDir(c *cli.Context) string {
	if d := c.String("certs-dir"); d != "" {
		return d
	}
	dirs := defaultCertsDirs()
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, tlsutil.NodeCert)); err == nil {
			return d
		}
	}
	return dirs[0]
}

// withBus runs fn with a client-only bus endpoint (on loopback when addr
// is) that presents the node certificate in certsDir, and stops the
// endpoint after.
func withBus(ctx context.Context, certsDir, addr string, fn func(*bus.Bus) error) error {
	tc, err := tlsutil.Load(certsDir)
	if err != nil {
		return fmt.Errorf("load certificates from %s (--certs-dir): %w", certsDir, err)
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

// daemonFlags are the flags of a command that calls one daemon over the
// bus: --addr (node 1's bus address of daemon by default), --certs-dir,
// --timeout and --output, then extra.
func daemonFlags(daemon string, extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "addr", Value: hostPort(spec(daemon).busPort), Usage: "the " + daemon + "'s bus `ADDR`"},
		certsDirFlag(),
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "bound on the whole command"},
		outputFlag(),
	}, extra...)
}

// daemonCall is what daemonFlags give a command once checked.
type daemonCall struct {
	ctx      context.Context
	cancel   context.CancelFunc
	addr     string
	format   string
	certsDir string
}

// newDaemonCall checks --output and --addr and bounds the call by
// --timeout; the caller must call cancel.
func newDaemonCall(e *env, c *cli.Context) (*daemonCall, error) {
	f, err := format(c)
	if err != nil {
		return nil, err
	}
	addr := c.String("addr")
	if err := config.ValidateAddr(addr); err != nil {
		return nil, &config.FlagError{Flag: "addr", Value: addr, Err: err}
	}
	ctx, cancel := context.WithTimeout(e.ctx, c.Duration("timeout"))
	return &daemonCall{ctx: ctx, cancel: cancel, addr: addr, format: f, certsDir: certsDir(c)}, nil
}
