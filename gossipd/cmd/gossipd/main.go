// Command gossipd runs the Pleiades gossipd daemon. See package gossipd;
// flags: gossipd --help.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/gossipd"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
)

func main() { daemon.Main(spec()) }

// spec describes gossipd to daemon.Main.
func spec() daemon.Spec {
	return daemon.Spec{
		Name:             gossipd.Name,
		Usage:            "the node's membership daemon (SWIM + Vivaldi)",
		DefaultBusAddr:   gossipd.DefaultBusAddr,
		DefaultAdminAddr: gossipd.DefaultAdminAddr,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "join", Usage: "comma-separated bus `ADDRS` of gossipds to join"},
		},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			cfg := gossipd.DefaultConfig()
			var err error
			if cfg.Join, err = config.AddrList(c, "join"); err != nil {
				return nil, err
			}
			// --advertise-addr is a common flag, checked by the runtime.
			cfg.AdvertiseAddr = rt.Common().AdvertiseAddr
			return gossipd.New(cfg, gossipd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
		},
	}
}
