// Command stored runs the Pleiades stored daemon. See package stored;
// flags: stored --help.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/stored"
)

func main() { daemon.Main(spec()) }

// spec describes stored to daemon.Main.
func spec() daemon.Spec {
	return daemon.Spec{
		Name:             stored.Name,
		Usage:            "the node's storage daemon (RocksDB)",
		DefaultBusAddr:   stored.DefaultBusAddr,
		DefaultAdminAddr: stored.DefaultAdminAddr,
		Flags:            []cli.Flag{},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			cfg := stored.DefaultConfig()
			cfg.Dir = rt.DataDir
			return stored.New(cfg, stored.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin})
		},
	}
}
