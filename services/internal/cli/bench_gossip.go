package cli

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/gossipd"
	"github.com/pleiades-db/pleiades/services/internal/bench/gossip"
)

func benchGossipCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "gossip",
		Usage: "compare gossipd's membership protocol with hashicorp/memberlist",
		Description: "Runs N members of each implementation in this process over one in-memory datagram\n" +
			"network (same protocol timers, same injected faults) and reports, per implementation:\n" +
			"join time, idle and fault-phase bytes per member per second, time for a metadata change\n" +
			"to reach every member, false suspicions and false deaths during --fault-time of --loss\n" +
			"datagram loss with a member stalled for --stall every --stall-every, and the time from a\n" +
			"crash until the first and every live member declare it dead (median, p99, max over\n" +
			"--runs trials). --output json prints one object with both sides' figures.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 32, Usage: "members per implementation"},
			&cli.IntFlag{Name: "runs", Value: 5, Usage: "detection and dissemination trials (each detection trial crashes a member)"},
			&cli.StringFlag{Name: "profile", Value: "lan", Usage: "protocol timers for both sides: lan, wan or local"},
			&cli.DurationFlag{Name: "idle", Value: gossip.DefaultIdle, Usage: "idle bandwidth window"},
			&cli.DurationFlag{Name: "fault-time", Value: gossip.DefaultFaultTime, Usage: "length of the loss and stall phase"},
			&cli.Float64Flag{Name: "loss", Value: 0.05, Usage: "datagram loss in the fault phase, 0 to <1"},
			&cli.DurationFlag{Name: "stall", Value: gossip.DefaultStallFor, Usage: "how long a stalled member stops processing"},
			&cli.DurationFlag{Name: "stall-every", Value: gossip.DefaultStallEvery, Usage: "pause between stalls"},
			&cli.StringFlag{Name: "impl", Value: "gossipd,memberlist", Usage: "comma-separated implementations to run"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed for member choices and loss"},
			outputFlag(),
		},
		Action: action(func(c *cli.Context) error {
			f, err := format(c)
			if err != nil {
				return err
			}
			var p gossipd.ProtocolConfig
			switch c.String("profile") {
			case "lan":
				p = gossipd.LANProtocol()
			case "wan":
				p = gossipd.WANProtocol()
			case "local":
				p = gossipd.LocalProtocol()
			default:
				return usagef("invalid value %q for flag --profile: want lan, wan or local", c.String("profile"))
			}
			o := gossip.Options{Nodes: c.Int("nodes"), Runs: c.Int("runs"), Protocol: p, Idle: c.Duration("idle"),
				FaultTime: c.Duration("fault-time"), Loss: c.Float64("loss"), StallFor: c.Duration("stall"),
				StallEvery: c.Duration("stall-every"), Impls: strings.Split(c.String("impl"), ","), Seed: c.Uint64("seed")}
			if err := o.Check(); err != nil {
				return usagef("%v", err)
			}
			if f != "json" {
				o.Progress = func(s string) { fmt.Fprintln(e.stderr, s) }
			}
			res, err := gossip.Run(e.ctx, o)
			if err != nil {
				return err
			}
			if f == "json" {
				return printJSON(e.stdout, res)
			}
			return printGossipBench(e, res)
		}),
	}
}

func printGossipBench(e *env, r *gossip.Result) error {
	fmt.Fprintf(e.stdout, "%d members, probe interval %.0f ms, %d trials; fault phase %.0f s at %.0f%% loss with %.1f s stalls\n",
		r.Nodes, r.ProbeMS, r.Runs, r.FaultSec, 100*r.Loss, r.StallSec)
	var figs []*gossip.Figures
	header := []string{"METRIC"}
	for _, f := range []*gossip.Figures{r.Gossipd, r.Memberlist} {
		if f != nil {
			figs = append(figs, f)
			header = append(header, f.Impl)
		}
	}
	t := newTable(e.stdout, header...)
	row := func(name string, v func(*gossip.Figures) string) {
		cols := []string{name}
		for _, f := range figs {
			cols = append(cols, v(f))
		}
		t.row(cols...)
	}
	stats := func(s gossip.Stats) string {
		out := fmt.Sprintf("%.0f / %.0f / %.0f ms", s.MedianMS, s.P99MS, s.MaxMS)
		if s.Missed > 0 {
			out += fmt.Sprintf(" (%d of %d missed)", s.Missed, s.Trials)
		}
		return out
	}
	row("join (all see all)", func(f *gossip.Figures) string { return fmt.Sprintf("%.0f ms", f.JoinMS) })
	row("detect, first (p50/p99/max)", func(f *gossip.Figures) string { return stats(f.DetectFirst) })
	row("detect, all (p50/p99/max)", func(f *gossip.Figures) string { return stats(f.DetectAll) })
	row("metadata to all (p50/p99/max)", func(f *gossip.Figures) string { return stats(f.Dissemination) })
	row("false suspicions", func(f *gossip.Figures) string { return fmt.Sprint(f.FalseSuspicions) })
	row("false deaths", func(f *gossip.Figures) string { return fmt.Sprint(f.FalseDeaths) })
	row("idle B/member/s", func(f *gossip.Figures) string { return fmt.Sprintf("%.0f", f.IdleBytesPerNodeSec) })
	row("idle datagrams/member/s", func(f *gossip.Figures) string { return fmt.Sprintf("%.1f", f.IdlePacketsPerNodeSec) })
	row("fault-phase B/member/s", func(f *gossip.Figures) string { return fmt.Sprintf("%.0f", f.FaultBytesPerNodeSec) })
	return t.flush()
}
