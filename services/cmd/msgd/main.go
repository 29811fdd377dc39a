// Command msgd runs the Pleiades messaging daemon. See package msgd;
// flags: msgd --help.
package main

import (
	"errors"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/services/msgd"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
)

func main() { daemon.Main(spec()) }

// spec describes msgd to daemon.Main.
func spec() daemon.Spec {
	return daemon.Spec{
		Name:             msgd.Name,
		Usage:            "messaging daemon (embedded NATS)",
		DefaultBusAddr:   msgd.DefaultBusAddr,
		DefaultAdminAddr: msgd.DefaultAdminAddr,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nats-port", Value: msgd.DefaultNATSPort, Usage: "TCP `PORT` for NATS clients"},
			&cli.IntFlag{Name: "nats-cluster-port", Value: msgd.DefaultNATSClusterPort, Usage: "TCP `PORT` for NATS routes"},
			&cli.StringFlag{Name: "gossip-addr", Value: msgd.DefaultGossipAddr, Usage: "bus `ADDR` of the node's gossipd"},
		},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			cfg := msgd.DefaultConfig()
			cfg.NATSPort = c.Int("nats-port")
			cfg.NATSClusterPort = c.Int("nats-cluster-port")
			for name, port := range map[string]int{"nats-port": cfg.NATSPort, "nats-cluster-port": cfg.NATSClusterPort} {
				if port < 0 || port > 65535 {
					return nil, &config.FlagError{Flag: name, Value: strconv.Itoa(port), Err: errors.New("want a port in 0..65535")}
				}
			}
			var err error
			if cfg.GossipAddr, err = config.Addr(c, "gossip-addr"); err != nil {
				return nil, err
			}
			return msgd.New(cfg, msgd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin})
		},
	}
}
