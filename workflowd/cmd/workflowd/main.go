// Command workflowd runs the Pleiades workflow daemon. See package
// workflowd; flags: workflowd --help.
package main

import (
	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/workflowd"
)

func main() { daemon.Main(spec()) }

// spec describes workflowd to daemon.Main.
func spec() daemon.Spec {
	return daemon.Spec{
		Name:             workflowd.Name,
		Usage:            "durable workflow daemon",
		DefaultBusAddr:   workflowd.DefaultBusAddr,
		DefaultAdminAddr: workflowd.DefaultAdminAddr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "raft-addr", Value: workflowd.DefaultRaftAddr, Usage: "bus `ADDR` of the node's raftd"},
			&cli.StringFlag{Name: "gossip-addr", Value: workflowd.DefaultGossipAddr, Usage: "bus `ADDR` of the node's gossipd"},
		},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			cfg := workflowd.DefaultConfig()
			var err error
			if cfg.RaftAddr, err = config.Addr(c, "raft-addr"); err != nil {
				return nil, err
			}
			if cfg.GossipAddr, err = config.Addr(c, "gossip-addr"); err != nil {
				return nil, err
			}
			return workflowd.New(cfg, workflowd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin})
		},
	}
}
