// Command raftd runs the Pleiades raftd daemon. See package raftd;
// flags: raftd --help.
package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/raftd"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
)

func main() { daemon.Main(spec()) }

// spec describes raftd to daemon.Main.
func spec() daemon.Spec {
	return daemon.Spec{
		Name:             raftd.Name,
		Usage:            "the node's multi-raft and KV daemon",
		DefaultBusAddr:   raftd.DefaultBusAddr,
		DefaultAdminAddr: raftd.DefaultAdminAddr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "stored-addr", Value: raftd.DefaultStoredAddr, Usage: "bus `ADDR` of the node's stored (empty: a volatile in-memory engine, for tests only)"},
			&cli.StringFlag{Name: "stored-socket", Usage: "`PATH` of the Unix socket the node's stored also listens on (stored --local-socket, by default <data-dir>/stored/stored.sock): calls to stored go over it, falling back to --stored-addr while it cannot be reached (empty: --stored-addr only)"},
			&cli.StringFlag{Name: "gossip-addr", Value: raftd.DefaultGossipAddr, Usage: "bus `ADDR` of the node's gossipd (empty: none)"},
			&cli.StringFlag{Name: "clock-addr", Value: raftd.DefaultClockAddr, Usage: "bus `ADDR` of the node's clockd"},
			&cli.StringSliceFlag{Name: "peers", Usage: "comma-separated bus `ADDRS` of peer raftds, besides those gossipd's members publish"},
			&cli.DurationFlag{Name: "tick-interval", Value: 100 * time.Millisecond, Usage: "raft tick `DURATION`"},
			&cli.IntFlag{Name: "election-ticks", Value: 10, Usage: "raft election timeout in ticks"},
			&cli.DurationFlag{Name: "max-offset", Value: 500 * time.Millisecond, Usage: "largest tolerated clock offset between nodes"},
			&cli.DurationFlag{Name: "closed-timestamp-lag", Value: 3 * time.Second, Usage: "how far behind its clock a leader closes timestamps: follower reads and watch checkpoints trail by about this much (more than twice --max-offset)"},
			&cli.DurationFlag{Name: "version-retention", Value: 4 * time.Hour, Usage: "how long superseded versions stay readable by reads at a timestamp and watches (the same on every node)"},
			&cli.DurationFlag{Name: "version-gc-interval", Value: time.Minute, Usage: "how often the versions older than --version-retention are collected (negative: never)"},
			&cli.IntFlag{Name: "value-cache-bytes", Value: 64 << 20, Usage: "bytes of recently written and read values kept to serve reads without a stored round trip (negative: off)"},
			&cli.Float64Flag{Name: "split-qps", Usage: "split a range this node leads once it serves more than `N` requests a second, at the median of the keys requested (0: no splits by load)"},
			&cli.Int64Flag{Name: "split-bytes", Value: 512 << 20, Usage: "split a range this node leads once its data grows past `BYTES`, at its middle key (negative: no automatic splits)"},
		},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			cfg := raftd.DefaultConfig()
			var err error
			if cfg.StoredAddr, err = config.OptionalAddr(c, "stored-addr"); err != nil {
				return nil, err
			}
			cfg.StoredSocket = c.String("stored-socket")
			if cfg.GossipAddr, err = config.OptionalAddr(c, "gossip-addr"); err != nil {
				return nil, err
			}
			if cfg.ClockAddr, err = config.Addr(c, "clock-addr"); err != nil {
				return nil, err
			}
			if cfg.Peers, err = config.AddrList(c, "peers"); err != nil {
				return nil, err
			}
			// --advertise-addr is a common flag, checked by the runtime.
			cfg.AdvertiseAddr = rt.Common().AdvertiseAddr
			cfg.TickInterval = c.Duration("tick-interval")
			cfg.ElectionTicks = c.Int("election-ticks")
			cfg.MaxOffset = c.Duration("max-offset")
			if cfg.ClosedTimestampLag = c.Duration("closed-timestamp-lag"); cfg.ClosedTimestampLag <= 2*cfg.MaxOffset {
				return nil, &config.FlagError{Flag: "closed-timestamp-lag", Value: cfg.ClosedTimestampLag.String(), Err: fmt.Errorf("want more than twice --max-offset (%v)", cfg.MaxOffset)}
			}
			if cfg.VersionRetention = c.Duration("version-retention"); cfg.VersionRetention <= 0 {
				return nil, &config.FlagError{Flag: "version-retention", Value: cfg.VersionRetention.String(), Err: errors.New("want a positive duration")}
			}
			if cfg.VersionGCInterval = c.Duration("version-gc-interval"); cfg.VersionGCInterval == 0 {
				return nil, &config.FlagError{Flag: "version-gc-interval", Value: "0s", Err: errors.New("want a positive duration, or negative to never collect")}
			}
			if cfg.ValueCacheBytes = c.Int("value-cache-bytes"); cfg.ValueCacheBytes == 0 {
				return nil, &config.FlagError{Flag: "value-cache-bytes", Value: "0", Err: errors.New("want a positive size, or negative to turn the cache off")}
			}
			if cfg.SplitQPS = c.Float64("split-qps"); cfg.SplitQPS < 0 {
				return nil, &config.FlagError{Flag: "split-qps", Value: fmt.Sprint(cfg.SplitQPS), Err: errors.New("want a positive rate, or 0 for no splits by load")}
			}
			if cfg.SplitBytes = c.Int64("split-bytes"); cfg.SplitBytes == 0 {
				return nil, &config.FlagError{Flag: "split-bytes", Value: "0", Err: errors.New("want a positive size, or negative for no automatic splits")}
			}
			if err := cfg.Validate(); err != nil {
				return nil, &config.FlagError{Flag: "election-ticks", Value: fmt.Sprint(cfg.ElectionTicks), Err: err}
			}
			return raftd.New(cfg, raftd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
		},
	}
}
