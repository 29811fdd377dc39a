package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/services/internal/bench/kv"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/output"
)

func benchWatchCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "watch event latency against raftd, shaped like etcd's benchmark watch-latency",
		Description: "Opens --streams × --watchers-per-stream watches of one random key (spread over --conns\n" +
			"client endpoints), waits until each has its first checkpoint, then puts the key\n" +
			"--put-total times at --put-rate a second from one more client, each put waiting for its\n" +
			"answer. Reports the puts' rate and latency, and the latency of every (put, watcher) event\n" +
			"from the put's acknowledgement to its delivery (a delivery before the acknowledgement\n" +
			"counts 0): p50, p90, p99, p99.9, and the deliveries missing --drain after the last put.\n" +
			"--hold keeps the watchers idle that long before the first put, to measure their memory.\n" +
			"The same flags as etcd's `benchmark watch-latency`; --output json prints one object.",
		Flags: []cli.Flag{
			addrFlag("raftd", hostPort(spec("raftd").busPort), "raftd bus `ADDRS`, comma separated"),
			certsDirFlag(),
			&cli.IntFlag{Name: "conns", Value: 1, Usage: "client endpoints the watchers share"},
			&cli.IntFlag{Name: "streams", Value: 10, Usage: "watch streams (stream i on endpoint i mod --conns)"},
			&cli.IntFlag{Name: "watchers-per-stream", Value: 10, Usage: "watchers per stream"},
			&cli.IntFlag{Name: "put-total", Value: 1000, Usage: "puts of the watched key"},
			&cli.IntFlag{Name: "put-rate", Value: 100, Usage: "puts a second"},
			&cli.IntFlag{Name: "key-size", Value: 32, Usage: "key size in bytes"},
			&cli.IntFlag{Name: "val-size", Value: 32, Usage: "value size in bytes"},
			&cli.BoolFlag{Name: "prevkv", Usage: "ask each watch for previous values"},
			&cli.DurationFlag{Name: "hold", Usage: "keep the watchers open and idle for `DURATION` before the first put (to measure their memory)"},
			&cli.DurationFlag{Name: "drain", Value: 30 * time.Second, Usage: "wait at most `DURATION` for the last deliveries"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Minute, Usage: "bound on the whole run"},
			output.Flag(),
		},
		Action: func(c *cli.Context) error {
			f, err := format(c)
			if err != nil {
				return err
			}
			if _, err := posArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			addrs, err := addrList(c, "addr")
			if err != nil {
				return err
			}
			o := kv.WatchOptions{Addrs: addrs, Conns: c.Int("conns"), Streams: c.Int("streams"), WatchersPerStream: c.Int("watchers-per-stream"),
				PutTotal: c.Int("put-total"), PutRate: c.Int("put-rate"), KeySize: c.Int("key-size"), ValSize: c.Int("val-size"),
				PrevValue: c.Bool("prevkv"), Drain: c.Duration("drain"), Hold: c.Duration("hold")}
			for _, n := range []struct {
				flag string
				v    int
			}{{"conns", o.Conns}, {"streams", o.Streams}, {"watchers-per-stream", o.WatchersPerStream}, {"put-total", o.PutTotal},
				{"put-rate", o.PutRate}, {"key-size", o.KeySize}} {
				if n.v < 1 {
					return config.Usagef("invalid value %d for flag --%s: want 1 or more", n.v, n.flag)
				}
			}
			if o.ValSize < 0 {
				return config.Usagef("invalid value %d for flag --val-size: want 0 or more", o.ValSize)
			}
			if o.Drain <= 0 {
				return config.Usagef("invalid value %v for flag --drain: want a positive duration", o.Drain)
			}
			if o.Hold < 0 {
				return config.Usagef("invalid value %v for flag --hold: want 0 or more", o.Hold)
			}
			if err := o.Validate(); err != nil {
				return config.Usagef("%v", err)
			}
			return runBench(e, c, f, o.Addrs, &o.TLS, func(ctx context.Context) (kv.WatchResult, error) { return kv.RunWatch(ctx, o) },
				func(res kv.WatchResult) error { return printBenchWatch(e, res) })
		},
	}
}

func printBenchWatch(e *env, r kv.WatchResult) error {
	fmt.Fprintf(e.stdout, "watch: %d watchers over %d conns (ready in %.1fs), %d puts at %d/s, %d-byte key, %d-byte values\n",
		r.Watchers, r.Conns, r.SetupSec, r.PutTotal, r.PutRate, r.KeySize, r.ValSize)
	msf := func(v float64) string { return fmt.Sprintf("%.2fms", v) }
	fmt.Fprintf(e.stdout, "puts: %.0f/s, p50 %s, p99 %s, %s\n", r.PutsPerSec, msf(r.PutP50Ms), msf(r.PutP99Ms), r.Duration)
	t := output.NewTable(e.stdout, "EVENTS", "MEAN", "P50", "P90", "P99", "P99.9", "MAX", "MISSING")
	t.Row(fmt.Sprint(r.Events), msf(r.MeanMs), msf(r.P50Ms), msf(r.P90Ms), msf(r.P99Ms), msf(r.P999Ms), msf(r.MaxMs), fmt.Sprint(r.Missing))
	return t.Flush()
}
