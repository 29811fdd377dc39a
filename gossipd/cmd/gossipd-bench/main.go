// Command gossipd-bench compares gossipd's membership protocol with
// hashicorp/memberlist in one process (package gossipd/internal/bench);
// `pleiades bench gossip` runs it. Usage: gossipd-bench --help.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/gossipd"
	"github.com/pleiades-db/pleiades/gossipd/internal/bench"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status (0 done, 1
// the run failed, 2 bad usage).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return config.Run(ctx, newApp(ctx, stdout, stderr), args)
}

// newApp is the gossipd-bench command.
func newApp(ctx context.Context, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:      "gossipd-bench",
		Writer:    stdout,
		ErrWriter: stderr,
		Version:   version.String(),
		Usage:     "compare gossipd's membership protocol with hashicorp/memberlist",
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
			&cli.DurationFlag{Name: "idle", Value: bench.DefaultIdle, Usage: "idle bandwidth window"},
			&cli.DurationFlag{Name: "fault-time", Value: bench.DefaultFaultTime, Usage: "length of the loss and stall phase"},
			&cli.Float64Flag{Name: "loss", Value: 0.05, Usage: "datagram loss in the fault phase, 0 to <1"},
			&cli.DurationFlag{Name: "stall", Value: bench.DefaultStallFor, Usage: "how long a stalled member stops processing"},
			&cli.DurationFlag{Name: "stall-every", Value: bench.DefaultStallEvery, Usage: "pause between stalls"},
			&cli.StringFlag{Name: "impl", Value: "gossipd,memberlist", Usage: "comma-separated implementations to run"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed for member choices and loss"},
			output.Flag(),
		},
		Action: func(c *cli.Context) error {
			f, err := output.Format(c)
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
				return config.Usagef("invalid value %q for flag --profile: want lan, wan or local", c.String("profile"))
			}
			o := bench.Options{Nodes: c.Int("nodes"), Runs: c.Int("runs"), Protocol: p, Idle: c.Duration("idle"),
				FaultTime: c.Duration("fault-time"), Loss: c.Float64("loss"), StallFor: c.Duration("stall"),
				StallEvery: c.Duration("stall-every"), Impls: strings.Split(c.String("impl"), ","), Seed: c.Uint64("seed")}
			if err := o.Check(); err != nil {
				return config.Usagef("%v", err)
			}
			if f != "json" {
				o.Progress = func(s string) { fmt.Fprintln(stderr, s) }
			}
			res, err := bench.Run(ctx, o)
			if err != nil {
				return err
			}
			if f == "json" {
				return output.PrintJSON(stdout, res)
			}
			return printResult(stdout, res)
		},
	}
	config.Prepare(app)
	return app
}

func printResult(w io.Writer, r *bench.Result) error {
	fmt.Fprintf(w, "%d members, probe interval %.0f ms, %d trials; fault phase %.0f s at %.0f%% loss with %.1f s stalls\n",
		r.Nodes, r.ProbeMS, r.Runs, r.FaultSec, 100*r.Loss, r.StallSec)
	var figs []*bench.Figures
	header := []string{"METRIC"}
	for _, f := range []*bench.Figures{r.Gossipd, r.Memberlist} {
		if f != nil {
			figs = append(figs, f)
			header = append(header, f.Impl)
		}
	}
	t := output.NewTable(w, header...)
	row := func(name string, v func(*bench.Figures) string) {
		cols := []string{name}
		for _, f := range figs {
			cols = append(cols, v(f))
		}
		t.Row(cols...)
	}
	stats := func(s bench.Stats) string {
		out := fmt.Sprintf("%.0f / %.0f / %.0f ms", s.MedianMS, s.P99MS, s.MaxMS)
		if s.Missed > 0 {
			out += fmt.Sprintf(" (%d of %d missed)", s.Missed, s.Trials)
		}
		return out
	}
	row("join (all see all)", func(f *bench.Figures) string { return fmt.Sprintf("%.0f ms", f.JoinMS) })
	row("detect, first (p50/p99/max)", func(f *bench.Figures) string { return stats(f.DetectFirst) })
	row("detect, all (p50/p99/max)", func(f *bench.Figures) string { return stats(f.DetectAll) })
	row("metadata to all (p50/p99/max)", func(f *bench.Figures) string { return stats(f.Dissemination) })
	row("false suspicions", func(f *bench.Figures) string { return fmt.Sprint(f.FalseSuspicions) })
	row("false deaths", func(f *bench.Figures) string { return fmt.Sprint(f.FalseDeaths) })
	row("idle B/member/s", func(f *bench.Figures) string { return fmt.Sprintf("%.0f", f.IdleBytesPerNodeSec) })
	row("idle datagrams/member/s", func(f *bench.Figures) string { return fmt.Sprintf("%.1f", f.IdlePacketsPerNodeSec) })
	row("fault-phase B/member/s", func(f *bench.Figures) string { return fmt.Sprintf("%.0f", f.FaultBytesPerNodeSec) })
	return t.Flush()
}
