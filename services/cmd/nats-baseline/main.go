// Command nats-baseline runs a plain nats-server (the library msgd
// embeds, standalone, no TLS, no JetStream): the baseline `pleiades bench
// msg` measures msgd against. It is a command of its own so that the
// pleiades binary links no NATS server. Usage: nats-baseline --port N
// [--cluster-port M --routes host:port,...].
package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := &cli.App{
		Name:      "nats-baseline",
		Usage:     "run a plain nats-server on loopback, the baseline of pleiades bench msg",
		Version:   version.String(),
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "port", Usage: "client `PORT`"},
			&cli.IntFlag{Name: "cluster-port", Usage: "route `PORT` (0: no routes)"},
			&cli.StringFlag{Name: "routes", Usage: "comma-separated route `ADDRS`"},
		},
		Action: func(c *cli.Context) error {
			if c.Int("port") < 1 {
				return config.Usagef("--port is required")
			}
			var routes []string
			if r := c.String("routes"); r != "" {
				routes = strings.Split(r, ",")
			}
			err := serve(ctx, "127.0.0.1", c.Int("port"), c.Int("cluster-port"), routes)
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	config.Prepare(app)
	return config.Run(ctx, app, args)
}
