// Command clockd runs the Pleiades clockd daemon. See package clockd;
// flags: clockd --help.
package main

import (
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/clockd"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
)

func main() { daemon.Main(spec()) }

// spec describes clockd to daemon.Main.
func spec() daemon.Spec {
	return daemon.Spec{
		Name:             clockd.Name,
		Usage:            "the node's hybrid logical clock daemon",
		DefaultBusAddr:   clockd.DefaultBusAddr,
		DefaultAdminAddr: clockd.DefaultAdminAddr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "stored-addr", Value: clockd.DefaultStoredAddr, Usage: "bus `ADDR` of the node's stored"},
			&cli.StringFlag{Name: "gossip-addr", Value: clockd.DefaultGossipAddr, Usage: "bus `ADDR` of the node's gossipd"},
			&cli.StringSliceFlag{Name: "peers", Usage: "comma-separated bus `ADDRS` of peer clockds"},
		},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			cfg := clockd.DefaultConfig()
			var err error
			if cfg.StoredAddr, err = config.Addr(c, "stored-addr"); err != nil {
				return nil, err
			}
			if cfg.GossipAddr, err = config.Addr(c, "gossip-addr"); err != nil {
				return nil, err
			}
			if cfg.Peers, err = addrList(c, "peers"); err != nil {
				return nil, err
			}
			return clockd.New(cfg, clockd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin})
		},
	}
}

// addrList reads a comma-separated address list flag (also accepted
// repeated) and validates each address.
func addrList(c *cli.Context, name string) ([]string, error) {
	var out []string
	for _, v := range c.StringSlice(name) {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if err := config.ValidateAddr(a); err != nil {
				return nil, &config.FlagError{Flag: name, Value: a, Err: err}
			}
			out = append(out, a)
		}
	}
	return out, nil
}
