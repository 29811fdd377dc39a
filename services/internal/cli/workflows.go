package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
)

func workflowsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "workflows",
		Usage: "define, start, inspect and control durable workflows (workflowd)",
		Description: "Calls the workflowd at --addr over the bus. Any workflowd serves any instance: instances\n" +
			"live in the replicated KV. Definitions are YAML or JSON documents (see workflowd's doc).",
		Subcommands: []*cli.Command{
			wfDefine(e), wfDefinitions(e), wfList(e), wfShow(e), wfStart(e),
			wfControl(e, "suspend", "suspend a running instance"),
			wfControl(e, "resume", "resume a suspended instance"),
			wfControl(e, "terminate", "terminate an instance"),
			wfEvent(e), wfWatch(e),
		},
	}
}

// withWorkflows runs fn with a client of the workflowd at --addr.
func withWorkflows(e *env, c *cli.Context, fn func(dc *daemonCall, wc *workflowclient.Client) error) error {
	dc, err := newDaemonCall(e, c)
	if err != nil {
		return err
	}
	defer dc.cancel()
	return dc.explain(withBus(dc.ctx, dc.certs, dc.addr, func(b *bus.Bus) error {
		return fn(dc, workflowclient.New(b, dc.addr))
	}))
}

func readInput(e *env, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(e.stdin)
	}
	return os.ReadFile(name)
}

func wfDefine(e *env) *cli.Command {
	return &cli.Command{
		Name:      "define",
		Usage:     "register a definition document (YAML or JSON; - for standard input)",
		ArgsUsage: "FILE",
		Flags:     daemonFlags("workflowd"),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return config.Usagef("workflows define: want one FILE")
			}
			doc, err := readInput(e, c.Args().First())
			if err != nil {
				return err
			}
			return withWorkflows(e, c, func(dc *daemonCall, wc *workflowclient.Client) error {
				r, err := wc.Define(dc.ctx, doc)
				if err != nil {
					return err
				}
				if dc.format == "json" {
					return output.PrintJSON(e.stdout, map[string]any{"id": r.GetId(), "version": r.GetVersion(), "unchanged": r.GetUnchanged()})
				}
				what := "defined"
				if r.GetUnchanged() {
					what = "unchanged"
				}
				fmt.Fprintf(e.stdout, "%s %s v%d\n", what, r.GetId(), r.GetVersion())
				return nil
			})
		},
	}
}

func wfDefinitions(e *env) *cli.Command {
	return &cli.Command{
		Name:  "definitions",
		Usage: "list the registered definitions",
		Flags: daemonFlags("workflowd"),
		Action: func(c *cli.Context) error {
			return withWorkflows(e, c, func(dc *daemonCall, wc *workflowclient.Client) error {
				defs, err := wc.Definitions(dc.ctx)
				if err != nil {
					return err
				}
				if dc.format == "json" {
					return output.PrintJSON(e.stdout, defs)
				}
				t := output.NewTable(e.stdout, "ID", "VERSION", "SOURCE", "STEPS", "DESCRIPTION")
				for _, d := range defs {
					t.Row(d.GetId(), strconv.Itoa(int(d.GetVersion())), d.GetSource(), strconv.Itoa(int(d.GetSteps())), d.GetDescription())
				}
				return t.Flush()
			})
		},
	}
}

func parseStatus(s string) (workflowpb.Status, error) {
	if s == "" {
		return workflowpb.Status_STATUS_UNSPECIFIED, nil
	}
	v, ok := workflowpb.Status_value["STATUS_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, config.Usagef("unknown status %q (running, suspended, completed, terminated, failed, compensated)", s)
	}
	return workflowpb.Status(v), nil
}

func statusText(s workflowpb.Status) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATUS_"))
}

func nanos(n int64) string {
	if n == 0 {
		return "-"
	}
	return time.Unix(0, n).UTC().Format(time.RFC3339)
}

func wfList(e *env) *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list instances, by status, definition and creation time (paged)",
		Flags: daemonFlags("workflowd",
			&cli.StringFlag{Name: "status", Usage: "running, suspended, completed, terminated, failed or compensated"},
			&cli.StringFlag{Name: "definition", Usage: "only instances of this definition `ID`"},
			&cli.DurationFlag{Name: "since", Usage: "only instances created in the last `DURATION`"},
			&cli.IntFlag{Name: "limit", Value: 100, Usage: "instances per page"},
			&cli.StringFlag{Name: "page", Usage: "continue from a previous page's `TOKEN`"},
		),
		Action: func(c *cli.Context) error {
			st, err := parseStatus(c.String("status"))
			if err != nil {
				return err
			}
			req := &workflowpb.ListRequest{Status: st, Definition: c.String("definition"), Limit: uint32(c.Int("limit")), PageToken: c.String("page")}
			if d := c.Duration("since"); d > 0 {
				req.CreatedAfterUnixNano = time.Now().Add(-d).UnixNano()
			}
			return withWorkflows(e, c, func(dc *daemonCall, wc *workflowclient.Client) error {
				r, err := wc.List(dc.ctx, req)
				if err != nil {
					return err
				}
				if dc.format == "json" {
					return output.PrintJSON(e.stdout, r)
				}
				t := output.NewTable(e.stdout, "ID", "DEFINITION", "VERSION", "STATUS", "CREATED", "ENDED")
				for _, s := range r.GetInstances() {
					t.Row(s.GetId(), s.GetDefinition(), strconv.Itoa(int(s.GetVersion())), statusText(s.GetStatus()), nanos(s.GetCreatedUnixNano()), nanos(s.GetEndedUnixNano()))
				}
				if err := t.Flush(); err != nil {
					return err
				}
				if r.GetNextPageToken() != "" {
					fmt.Fprintf(e.stdout, "next page: --page %s\n", r.GetNextPageToken())
				}
				return nil
			})
		},
	}
}

func wfShow(e *env) *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show an instance: status, data, what it waits for, recent steps",
		ArgsUsage: "ID",
		Flags:     daemonFlags("workflowd"),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return config.Usagef("workflows show: want one instance ID")
			}
			return withWorkflows(e, c, func(dc *daemonCall, wc *workflowclient.Client) error {
				in, err := wc.Get(dc.ctx, c.Args().First())
				if err != nil {
					return err
				}
				if dc.format == "json" {
					return output.PrintJSON(e.stdout, in)
				}
				var data bytes.Buffer
				if json.Indent(&data, in.GetData(), "  ", "  ") != nil {
					data.Write(in.GetData())
				}
				w := e.stdout
				fmt.Fprintf(w, "id:          %s\n", in.GetId())
				fmt.Fprintf(w, "definition:  %s v%d\n", in.GetDefinition(), in.GetVersion())
				fmt.Fprintf(w, "status:      %s\n", statusText(in.GetStatus()))
				if in.GetError() != "" {
					fmt.Fprintf(w, "error:       %s\n", in.GetError())
				}
				fmt.Fprintf(w, "created:     %s\nupdated:     %s\nended:       %s\n", nanos(in.GetCreatedUnixNano()), nanos(in.GetUpdatedUnixNano()), nanos(in.GetEndedUnixNano()))
				fmt.Fprintf(w, "steps done:  %d\n", in.GetStepsCompleted())
				if len(in.GetActiveSteps()) > 0 {
					fmt.Fprintf(w, "at:          %s\n", strings.Join(in.GetActiveSteps(), ", "))
				}
				if len(in.GetWaiting()) > 0 {
					fmt.Fprintf(w, "waiting for: %s\n", strings.Join(in.GetWaiting(), ", "))
				}
				if in.GetWakeUnixNano() != 0 {
					fmt.Fprintf(w, "timer:       %s\n", nanos(in.GetWakeUnixNano()))
				}
				if in.GetOwner() != 0 {
					fmt.Fprintf(w, "owner:       node %d, epoch %d, lease until %s\n", in.GetOwner(), in.GetEpoch(), nanos(in.GetLeaseUnixNano()))
				} else {
					fmt.Fprintf(w, "owner:       none (epoch %d)\n", in.GetEpoch())
				}
				if in.GetParentId() != "" {
					fmt.Fprintf(w, "parent:      %s\n", in.GetParentId())
				}
				fmt.Fprintf(w, "data:        %s\n", data.String())
				if len(in.GetHistory()) == 0 {
					return nil
				}
				fmt.Fprintln(w, "history:")
				t := output.NewTable(w, "  STEP", "OUTCOME", "ATTEMPT", "EPOCH", "TOOK", "ERROR")
				for _, h := range in.GetHistory() {
					t.Row("  "+h.GetStep(), h.GetOutcome(), strconv.Itoa(int(h.GetAttempt())), strconv.FormatUint(h.GetEpoch(), 10),
						time.Duration(h.GetEndedUnixNano()-h.GetStartedUnixNano()).String(), h.GetError())
				}
				return t.Flush()
			})
		},
	}
}

func wfStart(e *env) *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "start an instance of a definition",
		ArgsUsage: "DEFINITION",
		Flags: daemonFlags("workflowd",
			&cli.UintFlag{Name: "version", Usage: "the definition's `VERSION` (default: the latest)"},
			&cli.StringFlag{Name: "data", Usage: "initial data, a JSON object"},
			&cli.StringFlag{Name: "data-file", Usage: "initial data from a `FILE` (- for standard input)"},
			&cli.StringFlag{Name: "idempotency-key", Usage: "a `KEY` making the start idempotent"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return config.Usagef("workflows start: want one DEFINITION")
			}
			data := []byte(c.String("data"))
			if f := c.String("data-file"); f != "" {
				if len(data) > 0 {
					return config.Usagef("give --data or --data-file, not both")
				}
				var err error
				if data, err = readInput(e, f); err != nil {
					return err
				}
			}
			return withWorkflows(e, c, func(dc *daemonCall, wc *workflowclient.Client) error {
				r, err := wc.Start(dc.ctx, &workflowpb.StartRequest{Definition: c.Args().First(), Version: uint32(c.Uint("version")), Data: data, IdempotencyKey: c.String("idempotency-key")})
				if err != nil {
					return err
				}
				if dc.format == "json" {
					return output.PrintJSON(e.stdout, r)
				}
				note := ""
				if r.GetExisting() {
					note = " (existing, same idempotency key)"
				}
				fmt.Fprintf(e.stdout, "%s%s\n", r.GetInstanceId(), note)
				return nil
			})
		},
	}
}

func wfControl(e *env, op, usage string) *cli.Command {
	var extra []cli.Flag
	if op == "terminate" {
		extra = append(extra, &cli.StringFlag{Name: "reason", Usage: "recorded as the instance's error"})
	}
	return &cli.Command{
		Name:      op,
		Usage:     usage,
		ArgsUsage: "ID",
		Flags:     daemonFlags("workflowd", extra...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return config.Usagef("workflows %s: want one instance ID", op)
			}
			id := c.Args().First()
			return withWorkflows(e, c, func(dc *daemonCall, wc *workflowclient.Client) error {
				var st workflowpb.Status
				var err error
				switch op {
				case "suspend":
					st, err = wc.Suspend(dc.ctx, id)
				case "resume":
					st, err = wc.Resume(dc.ctx, id)
				default:
					st, err = wc.Terminate(dc.ctx, id, c.String("reason"))
				}
				if err != nil {
					return err
				}
				if dc.format == "json" {
					return output.PrintJSON(e.stdout, map[string]string{"id": id, "status": statusText(st)})
				}
				if st == workflowpb.Status_STATUS_RUNNING {
					fmt.Fprintf(e.stdout, "%s: %s requested (its owner applies it after the step in flight)\n", id, op)
				} else {
					fmt.Fprintf(e.stdout, "%s: %s\n", id, statusText(st))
				}
				return nil
			})
		},
	}
}

func wfEvent(e *env) *cli.Command {
	return &cli.Command{
		Name:      "event",
		Usage:     "publish an event to the instances waiting for its name and key",
		ArgsUsage: "NAME",
		Flags: daemonFlags("workflowd",
			&cli.StringFlag{Name: "key", Usage: "the event's `KEY`"},
			&cli.StringFlag{Name: "data", Usage: "the event's payload (JSON recommended)"},
			&cli.StringFlag{Name: "instance", Usage: "address one instance `ID`: refused when it does not exist or has finished"},
			&cli.TimestampFlag{Name: "effective", Layout: time.RFC3339, Usage: "the event's time (RFC 3339; default now)"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return config.Usagef("workflows event: want one event NAME")
			}
			req := &workflowpb.PublishEventRequest{Name: c.Args().First(), Key: c.String("key"), Data: []byte(c.String("data")), InstanceId: c.String("instance")}
			if t := c.Timestamp("effective"); t != nil {
				req.EffectiveUnixNano = t.UnixNano()
			}
			return withWorkflows(e, c, func(dc *daemonCall, wc *workflowclient.Client) error {
				r, err := wc.PublishEvent(dc.ctx, req)
				if err != nil {
					return err
				}
				if dc.format == "json" {
					return output.PrintJSON(e.stdout, r)
				}
				fmt.Fprintf(e.stdout, "event %s published; %d waiting instance(s) woken\n", r.GetEventId(), r.GetWoken())
				return nil
			})
		},
	}
}

func wfWatch(e *env) *cli.Command {
	flags := daemonFlags("workflowd",
		&cli.StringFlag{Name: "instance", Usage: "only this instance `ID`"},
		&cli.StringFlag{Name: "definition", Usage: "only instances of this definition `ID`"},
		&cli.StringSliceFlag{Name: "type", Usage: "only these event `TYPES` (started, step_completed, completed, ...)"},
	)
	for _, f := range flags {
		if d, ok := f.(*cli.DurationFlag); ok && d.Name == "timeout" {
			d.Value = 0
			d.Usage = "stop after this long (0: until interrupted)"
		}
	}
	return &cli.Command{
		Name:  "watch",
		Usage: "stream the lifecycle events of the instances the workflowd at --addr runs",
		Flags: flags,
		Action: func(c *cli.Context) error {
			f, err := format(c)
			if err != nil {
				return err
			}
			ctx, cancel := e.ctx, context.CancelFunc(func() {})
			if d := c.Duration("timeout"); d > 0 {
				ctx, cancel = context.WithTimeout(ctx, d)
			}
			defer cancel()
			return withBus(ctx, pickCerts(c, []string{c.String("addr")}), c.String("addr"), func(b *bus.Bus) error {
				s, err := workflowclient.New(b, c.String("addr")).Subscribe(ctx, &workflowpb.SubscribeRequest{InstanceId: c.String("instance"), Definition: c.String("definition"), Types: splitList(c.StringSlice("type"))})
				if err != nil {
					return err
				}
				defer s.Close()
				for {
					ev, err := s.Recv()
					if err != nil {
						if ctx.Err() != nil || errors.Is(err, io.EOF) {
							return nil
						}
						return err
					}
					if f == "json" {
						b, _ := json.Marshal(ev)
						fmt.Fprintln(e.stdout, string(b))
						continue
					}
					line := fmt.Sprintf("%s %s %s v%d %s", time.Unix(0, ev.GetTimeUnixNano()).UTC().Format("15:04:05.000"), ev.GetInstanceId(), ev.GetDefinition(), ev.GetVersion(), ev.GetType())
					if ev.GetStep() != "" {
						line += fmt.Sprintf(" %q attempt %d", ev.GetStep(), ev.GetAttempt())
					}
					if ev.GetError() != "" {
						line += ": " + ev.GetError()
					}
					fmt.Fprintln(e.stdout, line)
				}
			})
		},
	}
}
