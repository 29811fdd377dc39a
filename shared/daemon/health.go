package daemon

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/config"
)

// healthCommand is `<daemon> health`: the health check of an image that
// has no shell or curl. It asks the admin endpoint at --admin-addr (the
// daemon's own, through the same flag, environment variable or --config
// key) for /readyz and exits 0 when ready, 1 when not or unreachable.
func healthCommand(spec Spec) *cli.Command {
	return &cli.Command{
		Name:  "health",
		Usage: "exit 0 when the " + spec.Name + " at --admin-addr is ready, 1 otherwise (for container health checks)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: config.FlagAdminAddr, Value: spec.DefaultAdminAddr, Usage: "TCP `ADDR` of the daemon's admin endpoint (a wildcard host means loopback)"},
			&cli.DurationFlag{Name: "timeout", Value: 3 * time.Second, Usage: "bound on the check"},
		},
		Action: func(c *cli.Context) error {
			addr, err := config.Addr(c, config.FlagAdminAddr)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			ready, detail, err := admin.FetchReady(ctx, nil, DialableAddr(addr))
			if err != nil {
				return &runError{err}
			}
			if !ready {
				return &runError{fmt.Errorf("not ready: %s", detail)}
			}
			fmt.Fprintln(c.App.Writer, "ready")
			return nil
		},
	}
}

// DialableAddr returns addr with a wildcard or empty host (0.0.0.0, ::)
// replaced by the matching loopback address, so a listening address can be
// dialed from the same host.
func DialableAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	ip := net.ParseIP(host)
	switch {
	case host == "":
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
