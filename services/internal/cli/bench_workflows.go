package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/services/internal/bench/workflows"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/output"
)

func benchWorkflowsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "workflows",
		Usage: "workflowd throughput and step latency next to raw KV puts, and the memory of waiting instances",
		Description: "Defines a 10-step workflow (each step a data mapping: its durable write is its cost) and,\n" +
			"for each --concurrency level N, has N starters start an instance, wait for its completion\n" +
			"and start the next until --instances have completed, spread over the workflowds at --addr.\n" +
			"Reports instances started and completed per second, steps per second, step-to-step\n" +
			"latency p50/p99 (from the lifecycle streams) and, at the same concurrency, raw KV puts per\n" +
			"second against --raft-addr. --waiting N then starts N instances waiting for an event\n" +
			"through the first workflowd and reads its resident memory (from --admin-addr) once they\n" +
			"are parked, then completes them.",
		Flags: []cli.Flag{
			addrFlag("workflowd", hostPort(spec("workflowd").busPort), "workflowd bus `ADDRS`, comma separated"),
			&cli.StringFlag{Name: "admin-addr", Value: hostPort(spec("workflowd").adminPort), Usage: "the first workflowd's admin `ADDR` (memory)"},
			&cli.StringFlag{Name: "raft-addr", Value: hostPort(spec("raftd").busPort), Usage: "raftd bus `ADDRS`, comma separated (KV comparison)"},
			certsDirFlag(),
			&cli.StringFlag{Name: "concurrency", Value: "1,64", Usage: "starter counts, comma separated"},
			&cli.IntFlag{Name: "instances", Value: 200, Usage: "instances completed per level"},
			&cli.IntFlag{Name: "kv-total", Usage: "puts of each KV comparison (default 10 per instance)"},
			&cli.IntFlag{Name: "waiting", Usage: "waiting instances for the memory measurement (0: skip)"},
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
			wf, err := addrList(c, "addr")
			if err != nil {
				return err
			}
			raft, err := addrList(c, "raft-addr")
			if err != nil {
				return err
			}
			o := workflows.Options{WorkflowAddrs: wf, AdminAddrs: []string{c.String("admin-addr")}, RaftAddrs: raft,
				Instances: c.Int("instances"), KVTotal: c.Int("kv-total"), Waiting: c.Int("waiting")}
			for _, s := range strings.Split(c.String("concurrency"), ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					return config.Usagef("invalid value %q for flag --concurrency: %v", s, err)
				}
				o.Concurrency = append(o.Concurrency, n)
			}
			if err := o.Validate(); err != nil {
				return config.Usagef("%v", err)
			}
			certs := pickCerts(c, append(append([]string{}, wf...), raft...))
			if o.TLS, err = certs.load(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(e.ctx, c.Duration("timeout"))
			defer cancel()
			res, err := workflows.Run(ctx, o)
			if err != nil {
				return certs.explain(err, wf)
			}
			if f == "json" {
				return output.PrintJSON(e.stdout, res)
			}
			fmt.Fprintf(e.stdout, "%d-step workflow, %d instances per level\n", workflows.StepsPerInstance, o.Instances)
			t := output.NewTable(e.stdout, "STARTERS", "STARTED/S", "DONE/S", "STEPS/S", "STEP P50", "STEP P99", "INSTANCE P50", "KV PUTS/S", "STEPS/PUTS", "ERRORS")
			for _, l := range res.Levels {
				t.Row(strconv.Itoa(l.Starters), fmt.Sprintf("%.1f", l.StartedPerSec), fmt.Sprintf("%.1f", l.CompletedPerSec), fmt.Sprintf("%.0f", l.StepsPerSec),
					fmt.Sprintf("%.2fms", l.StepToStepP50Ms), fmt.Sprintf("%.2fms", l.StepToStepP99Ms), fmt.Sprintf("%.1fms", l.InstanceP50Ms),
					fmt.Sprintf("%.0f", l.KVPutsPerSec), fmt.Sprintf("%.0f%%", l.StepsToPutsPercent), strconv.Itoa(l.Errors))
			}
			if err := t.Flush(); err != nil {
				return err
			}
			if res.Waiting > 0 {
				fmt.Fprintf(e.stdout, "%d waiting instances: started in %.1fs, workflowd RSS %.1f MiB (%.1f MiB before), completed by events in %.1fs\n",
					res.Waiting, res.WaitingStartS, res.WaitingRSSMiB, res.BaselineRSSMiB, res.WaitingDrainS)
			}
			return nil
		},
	}
}
