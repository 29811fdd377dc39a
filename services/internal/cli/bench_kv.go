package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/services/internal/bench/kv"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/output"
)

func benchKVCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "kv",
		Usage: "put or get load against raftd, shaped like etcd's benchmark tool",
		Description: "Runs --total requests from --clients concurrent requesters sharing --conns client\n" +
			"endpoints against the raftd(s) at --addr, each waiting for its answer before the next,\n" +
			"and reports requests per second and latency percentiles (p50, p90, p99, p99.9; failed\n" +
			"requests count as errors). Keys are --key-size bytes drawn from --key-space-size keys\n" +
			"(default: --total for put, 1 for get, like the baseline's `range foo`), in order with\n" +
			"--sequential-keys; the get workload writes its keys first, untimed. --ranges N first\n" +
			"initializes the cluster with N user ranges (no effect on an initialized cluster).\n" +
			"shared/tools/etcd-baseline.sh runs the same workloads against etcd. --output json prints\n" +
			"one object with requests_per_sec, p50_ms, p99_ms, p999_ms and errors.",
		Flags: []cli.Flag{
			addrFlag("raftd", hostPort(spec("raftd").busPort), "raftd bus `ADDRS`, comma separated"),
			certsDirFlag(),
			&cli.IntFlag{Name: "conns", Value: 1, Usage: "client endpoints (each with its own connections)"},
			&cli.IntFlag{Name: "clients", Value: 1, Usage: "concurrent requesters"},
			&cli.IntFlag{Name: "total", Value: 10000, Usage: "timed requests"},
			&cli.IntFlag{Name: "key-size", Value: 8, Usage: "key size in bytes"},
			&cli.IntFlag{Name: "val-size", Value: 8, Usage: "value size in bytes"},
			&cli.BoolFlag{Name: "sequential-keys", Usage: "walk the key space in order instead of at random"},
			&cli.IntFlag{Name: "key-space-size", Usage: "distinct keys (default: --total for put, 1 for get)"},
			&cli.IntFlag{Name: "ranges", Usage: "initialize the cluster with `N` user ranges first"},
			&cli.IntFlag{Name: "replicas", Value: 3, Usage: "replicas per range when --ranges initializes"},
			&cli.StringFlag{Name: "op", Value: "put", Usage: "workload: put or get"},
			&cli.StringFlag{Name: "consistency", Value: "linearizable", Usage: "get consistency: linearizable or stale"},
			maxStalenessFlag(),
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
			cons, err := consistency(c)
			if err != nil {
				return err
			}
			o := kv.Options{Addrs: addrs, Conns: c.Int("conns"), Clients: c.Int("clients"), Total: c.Int("total"),
				KeySize: c.Int("key-size"), ValSize: c.Int("val-size"), SequentialKeys: c.Bool("sequential-keys"),
				KeySpace: c.Int("key-space-size"), Op: c.String("op"), Consistency: cons, Ranges: c.Int("ranges"), Replicas: c.Int("replicas")}
			if c.IsSet("consistency") && o.Op != "get" {
				return config.Usagef("--consistency applies to --op get only")
			}
			if o.MaxStaleness, err = maxStaleness(c, cons); err != nil {
				return err
			}
			if o.MaxStaleness > 0 && o.Op != "get" {
				return config.Usagef("--max-staleness applies to --op get only")
			}
			for _, n := range []struct {
				flag string
				v    int
			}{{"conns", o.Conns}, {"clients", o.Clients}, {"total", o.Total}, {"key-size", o.KeySize}, {"replicas", o.Replicas}} {
				if n.v < 1 {
					return config.Usagef("invalid value %d for flag --%s: want 1 or more", n.v, n.flag)
				}
			}
			for _, n := range []struct {
				flag string
				v    int
			}{{"val-size", o.ValSize}, {"key-space-size", o.KeySpace}, {"ranges", o.Ranges}} {
				if n.v < 0 {
					return config.Usagef("invalid value %d for flag --%s: want 0 or more", n.v, n.flag)
				}
			}
			if err := o.Validate(); err != nil {
				return config.Usagef("%v", err)
			}
			return runBench(e, c, f, o.Addrs, &o.TLS, func(ctx context.Context) (kv.Result, error) { return kv.Run(ctx, o) },
				func(res kv.Result) error { return printBenchKV(e, res) })
		},
	}
}

func printBenchKV(e *env, r kv.Result) error {
	what := r.Op
	if r.Consistency != "" {
		what += " (" + r.Consistency + ")"
	}
	fmt.Fprintf(e.stdout, "%s: %d requests, %d clients over %d conns, %d-byte keys from %d, %d-byte values\n",
		what, r.Total, r.Clients, r.Conns, r.KeySize, r.KeySpace, r.ValSize)
	if r.InitNote != "" {
		fmt.Fprintf(e.stdout, "init: %s\n", r.InitNote)
	}
	t := output.NewTable(e.stdout, "REQ/S", "MEAN", "P50", "P90", "P99", "P99.9", "MAX", "ERRORS", "DURATION")
	msf := func(v float64) string { return fmt.Sprintf("%.2fms", v) }
	t.Row(fmt.Sprintf("%.0f", r.RequestsPerSec), msf(r.MeanMs), msf(r.P50Ms), msf(r.P90Ms), msf(r.P99Ms), msf(r.P999Ms), msf(r.MaxMs),
		fmt.Sprint(r.Errors), r.Duration)
	if err := t.Flush(); err != nil {
		return err
	}
	if r.FirstError != "" {
		fmt.Fprintf(e.stdout, "first error: %s\n", r.FirstError)
	}
	return nil
}

// runBench is the common end of the bench commands: the client
// certificates of the cluster at addrs into *tlsOut, the run bounded by
// --timeout, its result as JSON (format "json") or printed by show.
func runBench[R any](e *env, c *cli.Context, format string, addrs []string, tlsOut **tls.Config, run func(context.Context) (R, error), show func(R) error) error {
	certs := pickCerts(c, addrs)
	tc, err := certs.load()
	if err != nil {
		return err
	}
	*tlsOut = tc
	ctx, cancel := context.WithTimeout(e.ctx, c.Duration("timeout"))
	defer cancel()
	res, err := run(ctx)
	if err != nil {
		return certs.explain(err, addrs)
	}
	if format == "json" {
		return output.PrintJSON(e.stdout, res)
	}
	return show(res)
}
