// Command workflowd runs the Pleiades workflow daemon. See package
// workflowd; flags: workflowd --help.
package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/workflowd"
)

func main() { daemon.Main(spec()) }

// spec describes workflowd to daemon.Main.
func spec() daemon.Spec {
	def := workflowd.DefaultConfig()
	return daemon.Spec{
		Name:             workflowd.Name,
		Usage:            "durable workflow daemon",
		DefaultBusAddr:   workflowd.DefaultBusAddr,
		DefaultAdminAddr: workflowd.DefaultAdminAddr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "raft-addr", Value: workflowd.DefaultRaftAddr, Usage: "bus `ADDR` of the node's raftd (comma-separated for several, the node's own first)"},
			&cli.StringFlag{Name: "gossip-addr", Value: workflowd.DefaultGossipAddr, Usage: "bus `ADDR` of the node's gossipd"},
			&cli.DurationFlag{Name: "instance-lease", Value: def.LeaseDuration, Usage: "how long a claim on an instance lasts unrenewed; a dead owner's instances are taken over after it"},
			&cli.DurationFlag{Name: "poll-interval", Value: def.PollInterval, Usage: "how often the runnable and timer indexes are scanned (precision of parked timers)"},
			&cli.IntFlag{Name: "max-running", Value: def.MaxRunning, Usage: "instances run at once"},
			&cli.IntFlag{Name: "history", Value: def.HistoryLen, Usage: "recent step records each instance keeps (each costs bytes on every step's write)"},
			&cli.DurationFlag{Name: "retention", Value: def.Retention, Usage: "how long a finished instance is kept after its end (then deleted, idempotency key too; negative: for ever)"},
			&cli.DurationFlag{Name: "event-retention", Value: def.EventRetention, Usage: "how long a published event is kept after its effective time (negative: for ever)"},
			&cli.StringFlag{Name: "http-deny", Value: netsString(def.HTTPDeny), Usage: "networks (comma-separated CIDR prefixes or addresses) built-in HTTP steps may not connect to; \"none\" allows every address"},
			&cli.DurationFlag{Name: "dead-node-timeout", Value: def.DeadNodeTimeout, Usage: "how long a node must stay dead in gossip before its replicas are replaced on other nodes"},
			&cli.DurationFlag{Name: "lifecycle-retry", Value: def.LifecycleRetry, Usage: "how long a lifecycle workflow that cannot move a replica waits before it tries again"},
			&cli.DurationFlag{Name: "rebalance-interval", Value: def.RebalanceInterval, Usage: "how often replica counts are compared to move one replica from the fullest node to the emptiest (0: no rebalancing)"},
			&cli.IntFlag{Name: "rebalance-threshold", Value: def.RebalanceThreshold, Usage: "a replica moves when the fullest and the emptiest live node differ by more replicas than this"},
			&cli.IntFlag{Name: "move-concurrency", Value: def.MoveConcurrency, Usage: "how many ranges a re-replication or decommission moves at once"},
			&cli.DurationFlag{Name: "max-clock-offset", Value: def.MaxClockOffset, Usage: "the cluster's max clock offset, added to a lease before another owner takes it"},
		},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			cfg := workflowd.DefaultConfig()
			cfg.RaftAddrs = nil
			for _, a := range strings.Split(c.String("raft-addr"), ",") {
				a = strings.TrimSpace(a)
				if err := config.ValidateAddr(a); err != nil {
					return nil, &config.FlagError{Flag: "raft-addr", Err: fmt.Errorf("%q: %w", a, err)}
				}
				cfg.RaftAddrs = append(cfg.RaftAddrs, a)
			}
			var err error
			if cfg.GossipAddr, err = config.Addr(c, "gossip-addr"); err != nil {
				return nil, err
			}
			cfg.NodeID = rt.NodeID
			cfg.LeaseDuration = c.Duration("instance-lease")
			cfg.PollInterval = c.Duration("poll-interval")
			cfg.MaxRunning = c.Int("max-running")
			cfg.MaxClockOffset = c.Duration("max-clock-offset")
			cfg.HistoryLen = c.Int("history")
			cfg.Retention = c.Duration("retention")
			cfg.EventRetention = c.Duration("event-retention")
			cfg.DeadNodeTimeout = c.Duration("dead-node-timeout")
			cfg.LifecycleRetry = c.Duration("lifecycle-retry")
			cfg.RebalanceInterval = c.Duration("rebalance-interval")
			cfg.RebalanceThreshold = c.Int("rebalance-threshold")
			cfg.MoveConcurrency = c.Int("move-concurrency")
			if cfg.HTTPDeny, err = workflowd.ParseNets(c.String("http-deny")); err != nil {
				return nil, &config.FlagError{Flag: "http-deny", Err: err}
			}
			if err := cfg.Validate(); err != nil {
				return nil, &config.FlagError{Flag: "instance-lease, poll-interval, max-running, retention, event-retention, dead-node-timeout, lifecycle-retry, rebalance-interval, rebalance-threshold or move-concurrency", Err: err}
			}
			return workflowd.New(cfg, workflowd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin})
		},
	}
}

// netsString lists prefixes as the --http-deny flag takes them.
func netsString(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
