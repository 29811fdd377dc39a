// Command stored-bench compares stored over the bus with its engine
// opened in-process (package stored/internal/bench); `pleiades bench
// store` runs it. Usage: stored-bench --help.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/version"
	"github.com/pleiades-db/pleiades/stored/internal/bench"
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
	app := newApp(ctx, stdout, stderr)
	return config.Run(ctx, app, args)
}

// newApp is the stored-bench command.
func newApp(ctx context.Context, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:      "stored-bench",
		Writer:    stdout,
		ErrWriter: stderr,
		Version:   version.String(),
		Usage:     "compare stored over the bus with its engine in-process",
		Description: "Runs the same workload against stored over the bus and against stored's engine opened\n" +
			"in this process, one timed phase (--phase) each: sync batches of --batch-ops puts of\n" +
			"--value-bytes from each of --concurrency writers; point reads of preloaded keys (hits)\n" +
			"and of absent keys (misses); scans of --scan-keys keys; MultiGet calls of --multi-get-keys\n" +
			"keys (counted in keys/s, to show what batching recovers); reads from --read-concurrency\n" +
			"readers. Without --addr it starts a temporary stored in this process; with --addr it\n" +
			"uses that stored (certificate in --certs-dir), writing under a per-run key prefix of the\n" +
			"data column family that it deletes at the end.\n\n" +
			"--output json prints one object: the bus/in-process ratios batch_write (the lowest over\n" +
			"the writer counts; batch_write_by_concurrency has each), point_read (the lower of\n" +
			"point_read_hits and point_read_misses) and scan; group_commit_gain (the bus's sync\n" +
			"batches/s at the most writers over the fewest, c64 over c1 by default) and\n" +
			"in_process_group_commit_gain; point_read_multi_get (keys/s with MultiGet); then \"bus\" and \"in_process\" with each phase's ops,\n" +
			"ops_per_sec, p50_us, p99_us and, for sync batches, sync_writes_per_wal_sync.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", EnvVars: []string{"PLEIADES_STORED_ADDR"}, Usage: "bus `ADDR` of a stored to measure (default: start a temporary one)"},
			&cli.StringFlag{Name: "certs-dir", Value: defaultCertsDir, Usage: "`DIR` of the node certificate to call --addr with (node.crt, node.key, ca.crt)"},
			&cli.StringFlag{Name: "dir", Usage: "`DIR` for the temporary stored and the in-process engine (default: a temporary directory, removed)"},
			&cli.DurationFlag{Name: "phase", Value: bench.DefaultPhase, Usage: "length of each timed phase"},
			&cli.StringFlag{Name: "concurrency", Value: "1,16,64", Usage: "comma-separated sync batch writer counts, ascending"},
			&cli.IntFlag{Name: "batch-ops", Value: bench.DefaultBatchOps, Usage: "puts per sync batch"},
			&cli.IntFlag{Name: "value-bytes", Value: bench.DefaultValueBytes, Usage: "bytes per value"},
			&cli.IntFlag{Name: "keys", Value: bench.DefaultKeys, Usage: "keys preloaded for reads and scans"},
			&cli.IntFlag{Name: "read-concurrency", Value: bench.DefaultReadConcurrency, Usage: "readers for point reads and scans"},
			&cli.IntFlag{Name: "scan-keys", Value: bench.DefaultScanKeys, Usage: "keys per scan"},
			&cli.IntFlag{Name: "multi-get-keys", Value: bench.DefaultMultiGetKeys, Usage: "keys per MultiGet call"},
			output.Flag(),
		},
		Action: func(c *cli.Context) error {
			f, err := output.Format(c)
			if err != nil {
				return err
			}
			if a := c.String("addr"); a != "" {
				if err := config.ValidateAddr(a); err != nil {
					return &config.FlagError{Flag: "addr", Value: a, Err: err}
				}
			}
			var conc []int
			for _, s := range strings.Split(c.String("concurrency"), ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					return config.Usagef("invalid value %q for flag --concurrency: %v", c.String("concurrency"), err)
				}
				conc = append(conc, n)
			}
			o := bench.Options{
				Addr: c.String("addr"), CertsDir: c.String("certs-dir"), Dir: c.String("dir"), Phase: c.Duration("phase"),
				Concurrency: conc, BatchOps: c.Int("batch-ops"), ValueBytes: c.Int("value-bytes"), Keys: c.Int("keys"),
				ReadConcurrency: c.Int("read-concurrency"), ScanKeys: c.Int("scan-keys"), MultiGetKeys: c.Int("multi-get-keys"),
			}
			// Zero means "default" in bench.Options; on the command line it
			// is an error.
			if c.Duration("phase") <= 0 {
				return config.Usagef("invalid value %v for flag --phase: must be positive", c.Duration("phase"))
			}
			for _, n := range []string{"batch-ops", "value-bytes", "keys", "read-concurrency", "scan-keys", "multi-get-keys"} {
				if c.Int(n) <= 0 {
					return config.Usagef("invalid value %d for flag --%s: must be positive", c.Int(n), n)
				}
			}
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

// defaultCertsDir is where `make run` leaves a node's certificates.
var defaultCertsDir = filepath.Join(".", "data", "certs")

func printResult(w io.Writer, r *bench.Result) error {
	where := r.Addr
	if r.Temporary {
		where += " (temporary)"
	}
	fmt.Fprintf(w, "stored %s vs in-process engine; %.1f s phases, batches of %d x %d B, %d keys, %d readers, scans of %d keys\n\n",
		where, r.PhaseSec, r.BatchOps, r.ValueBytes, r.Keys, r.ReadConcurrency, r.ScanKeys)
	t := output.NewTable(w, "PHASE", "BUS OPS/S", "IN-PROCESS OPS/S", "RATIO", "BUS P50/P99 µs", "IN-PROCESS P50/P99 µs")
	row := func(name string, b, p bench.Phase) {
		ratio := "-"
		if p.OpsPerSec > 0 {
			ratio = fmt.Sprintf("%.2fx", b.OpsPerSec/p.OpsPerSec)
		}
		t.Row(name, fmt.Sprintf("%.0f", b.OpsPerSec), fmt.Sprintf("%.0f", p.OpsPerSec), ratio,
			fmt.Sprintf("%.0f / %.0f", b.P50Us, b.P99Us), fmt.Sprintf("%.0f / %.0f", p.P50Us, p.P99Us))
	}
	for i, b := range r.Bus.SyncBatches {
		plural := "s"
		if b.Concurrency == 1 {
			plural = ""
		}
		row(fmt.Sprintf("sync batches, %d writer%s", b.Concurrency, plural), b, r.InProcess.SyncBatches[i])
	}
	row("point reads, hits", r.Bus.PointReadHits, r.InProcess.PointReadHits)
	row("point reads, misses", r.Bus.PointReadMisses, r.InProcess.PointReadMisses)
	row("scans", r.Bus.Scans, r.InProcess.Scans)
	row(fmt.Sprintf("multi-get keys, %d per call", r.MultiGetKeys), r.Bus.MultiGetKeys, r.InProcess.MultiGetKeys)
	if err := t.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nbus/in-process: batch_write %.2fx (goal 0.6x), point_read %.2fx (goal 0.4x), scan %.2fx (goal 0.6x)\n",
		r.BatchWrite, r.PointRead, r.Scan)
	fmt.Fprintf(w, "group commit gain: bus %.1fx (goal 5x), in-process %.1fx\n", r.GroupCommitGain, r.InProcessGroupCommitGain)
	fmt.Fprintf(w, "point reads batched with MultiGet: %.2fx\n", r.PointReadMultiGet)
	return nil
}
