package cli

import (
	"context"
	"errors"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

func kvWatchCommand(e *env) *cli.Command {
	flags := kvFlags()
	for i, f := range flags {
		if f.Names()[0] == "timeout" {
			flags[i] = &cli.DurationFlag{Name: "timeout", Usage: "stop watching after `DURATION` (default: until interrupted)"}
		}
	}
	return &cli.Command{
		Name:      "watch",
		Usage:     "print the changes to KEY (or the keys with prefix KEY, or [KEY, --end)) as they happen",
		ArgsUsage: "KEY",
		Description: "One line per change: PUT key value timestamp, or DEL key timestamp (--output json: one\n" +
			"object per line). --from replays every change after TS (within the version retention\n" +
			"window) before the live ones. The watch follows leader changes, resuming from its last\n" +
			"checkpoint, so no change is missed or repeated.",
		Flags: append(flags, encodingFlag(),
			&cli.BoolFlag{Name: "prefix", Usage: "watch every key beginning with KEY"},
			&cli.StringFlag{Name: "end", Usage: "watch the span [KEY, `END`)"},
			&cli.StringFlag{Name: "from", Usage: "replay the changes after `TS` first (same forms as kv get --at)"},
			&cli.BoolFlag{Name: "prev-value", Usage: "show each change's previous value"},
			&cli.BoolFlag{Name: "resolved", Usage: "also print checkpoints: RESOLVED timestamp, every change at or before it printed"},
		),
		Action: func(c *cli.Context) error { return kvWatch(e, c) },
	}
}

// watchView is one line of kv watch --output json.
type watchView struct {
	kvView
	Op        string  `json:"op"`
	PrevValue *string `json:"prev_value,omitempty"`
	Resolved  string  `json:"resolved,omitempty"`
}

func kvWatch(e *env, c *cli.Context) (err error) {
	a, err := posArgs(c, 1, 1, "KEY")
	if err != nil {
		return err
	}
	enc, err := encodingOf(c)
	if err != nil {
		return err
	}
	start, err := keyArg(enc, "KEY", a[0])
	if err != nil {
		return err
	}
	var end []byte
	switch {
	case c.Bool("prefix") && c.IsSet("end"):
		return config.Usagef("kv watch: --prefix and --end exclude each other")
	case c.Bool("prefix"):
		end = kvpb.PrefixEnd(start)
		if len(end) == 0 {
			return config.Usagef("kv watch: the prefix %q has no end (every byte 0xff)", start)
		}
	case c.IsSet("end"):
		if end, err = keyArg(enc, "--end", c.String("end")); err != nil {
			return err
		}
	}
	var o kvclient.WatchOptions
	o.PrevValue = c.Bool("prev-value")
	if f := c.String("from"); f != "" {
		if o.From, err = parseAt(f, time.Now()); err != nil {
			return &config.FlagError{Flag: "from", Value: f, Err: err}
		}
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	defer func() { err = s.explain(err) }()
	showResolved := c.Bool("resolved")
	err = s.cl.Watch(s.ctx, start, end, o, func(r kvclient.WatchResponse) error {
		for _, ev := range r.Events {
			if err := printWatchEvent(e, s.format, enc, ev); err != nil {
				return err
			}
		}
		if showResolved && !r.Resolved.IsZero() {
			if s.format == "json" {
				return output.PrintJSON(e.stdout, watchView{Op: "resolved", Resolved: r.Resolved.String()})
			}
			_, err := e.stdout.Write([]byte("RESOLVED " + r.Resolved.String() + "\n"))
			return err
		}
		return nil
	})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil // --timeout or interrupted: the watch is over
	}
	return err
}

func printWatchEvent(e *env, format string, enc byteEncoding, ev kvclient.WatchEvent) error {
	if format == "json" {
		v := watchView{Op: "put", kvView: newKVView(enc, ev.Key, ev.Value.Value, ev.Timestamp)}
		if ev.Deleted {
			v.Op = "delete"
		} else {
			v.CreateTimestamp, v.Version = tsString(ev.Value.CreateTimestamp), ev.Value.Version
		}
		if ev.PrevValue != nil {
			pv, _ := enc.forJSON(ev.PrevValue.Value)
			v.PrevValue = &pv
		}
		return output.PrintJSON(e.stdout, v)
	}
	line := "PUT " + enc.brief(ev.Key) + " " + enc.brief(ev.Value.Value) + " " + ev.Timestamp.String()
	if ev.Deleted {
		line = "DEL " + enc.brief(ev.Key) + " " + ev.Timestamp.String()
	}
	if ev.PrevValue != nil {
		line += " (was " + enc.brief(ev.PrevValue.Value) + ")"
	}
	_, err := e.stdout.Write([]byte(line + "\n"))
	return err
}
