// Command clockd runs the Pleiades clockd daemon. See package clockd;
// flags: clockd --help.
package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/clockd"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/storeclient"
)

func main() { daemon.Main(spec()) }

// spec describes clockd to daemon.Main.
func spec() daemon.Spec {
	def := clockd.DefaultConfig()
	return daemon.Spec{
		Name:             clockd.Name,
		Usage:            "the node's hybrid logical clock daemon",
		DefaultBusAddr:   clockd.DefaultBusAddr,
		DefaultAdminAddr: clockd.DefaultAdminAddr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "stored-addr", Value: clockd.DefaultStoredAddr, Usage: "bus `ADDR` of the node's stored, which keeps the wall-time bound (empty: a file in the data directory)"},
			&cli.StringFlag{Name: "gossip-addr", Value: clockd.DefaultGossipAddr, Usage: "bus `ADDR` of the node's gossipd; peers come from its membership once it answers (empty: --peers only)"},
			&cli.StringSliceFlag{Name: "peers", Usage: "comma-separated bus `ADDRS` of peer clockds to probe until gossipd's membership is known"},
			&cli.DurationFlag{Name: "max-offset", Value: def.MaxOffset, Usage: "largest tolerated clock offset between nodes"},
			&cli.Float64Flag{Name: "offset-fraction", Value: def.OffsetFraction, Usage: "unhealthy when the offset from a majority of peers exceeds this fraction of --max-offset"},
			&cli.BoolFlag{Name: "fatal-on-unhealthy", Usage: "exit non-zero when the clock turns unhealthy"},
			&cli.DurationFlag{Name: "probe-interval", Value: def.ProbeInterval, Usage: "period of the peer offset probes"},
			&cli.DurationFlag{Name: "forward-jump-threshold", Value: def.ForwardJumpThreshold, Usage: "log forward jumps of the physical clock larger than this (0 = off)"},
			&cli.BoolFlag{Name: "fatal-on-forward-jump", Usage: "exit non-zero on a forward jump beyond --forward-jump-threshold"},
		},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			cfg := clockd.DefaultConfig()
			var err error
			if cfg.StoredAddr, err = config.OptionalAddr(c, "stored-addr"); err != nil {
				return nil, err
			}
			if cfg.GossipAddr, err = config.OptionalAddr(c, "gossip-addr"); err != nil {
				return nil, err
			}
			// --advertise-addr is a common flag, checked by the runtime.
			cfg.AdvertiseAddr = rt.Common().AdvertiseAddr
			if cfg.Peers, err = config.AddrList(c, "peers"); err != nil {
				return nil, err
			}
			cfg.MaxOffset = c.Duration("max-offset")
			cfg.OffsetFraction = c.Float64("offset-fraction")
			cfg.FatalOnUnhealthy = c.Bool("fatal-on-unhealthy")
			cfg.ProbeInterval = c.Duration("probe-interval")
			cfg.ForwardJumpThreshold = c.Duration("forward-jump-threshold")
			cfg.FatalOnForwardJump = c.Bool("fatal-on-forward-jump")
			if err := checkClockFlags(cfg); err != nil {
				return nil, err
			}
			// The bound lives in stored; in a file of the data directory
			// only when no stored address is given (see package clockd).
			var bound clockd.BoundStore = clockd.NewFileBound(rt.DataDir)
			if cfg.StoredAddr != "" {
				// A bound file left by a run without stored is still read.
				bound = clockd.NewStoreBound(storeclient.New(rt.Bus, cfg.StoredAddr), bound)
			}
			return clockd.New(cfg, clockd.Deps{
				Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin,
				Bound: bound, NodeID: rt.NodeID,
			})
		},
	}
}

// checkClockFlags names the flag of an invalid clock setting.
func checkClockFlags(cfg clockd.Config) error {
	bad := func(flag string, v any, why string) error {
		return &config.FlagError{Flag: flag, Value: fmt.Sprint(v), Err: errors.New(why)}
	}
	switch {
	case cfg.MaxOffset <= 0:
		return bad("max-offset", cfg.MaxOffset, "must be positive")
	case !(cfg.OffsetFraction > 0 && cfg.OffsetFraction <= 1):
		return bad("offset-fraction", cfg.OffsetFraction, "must be in (0, 1]")
	case cfg.ProbeInterval <= 0:
		return bad("probe-interval", cfg.ProbeInterval, "must be positive")
	case cfg.ForwardJumpThreshold < 0:
		return bad("forward-jump-threshold", cfg.ForwardJumpThreshold, "must not be negative")
	}
	return nil
}
