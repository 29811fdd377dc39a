package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/services/client"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

func kvCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "kv",
		Usage: "read and write keys: get, put, del, scan, cas",
		Description: "Each subcommand calls the raftd(s) at --addr over the bus (mutual TLS with the node\n" +
			"certificate in --certs-dir) through the Go client, which finds range leaders and retries\n" +
			"on Unavailable / NotLeader until --timeout. Values are printed with the HLC timestamp\n" +
			"of the write that made them. A missing key (get) or a failed comparison (cas) exits 1.\n" +
			"Flags go before the arguments: pleiades kv put --addr ADDR KEY VALUE.",
		Subcommands: []*cli.Command{
			{
				Name:      "get",
				Usage:     "read one key",
				ArgsUsage: "KEY",
				Flags:     append(kvFlags(), consistencyFlag()),
				Action: action(func(c *cli.Context) error {
					return kvGet(e, c)
				}),
			},
			{
				Name:      "put",
				Usage:     "write one key",
				ArgsUsage: "KEY VALUE",
				Flags:     kvFlags(),
				Action: action(func(c *cli.Context) error {
					return kvPut(e, c)
				}),
			},
			{
				Name:      "del",
				Usage:     "delete one key, or every key in [KEY, --end)",
				ArgsUsage: "KEY",
				Flags: append(kvFlags(),
					&cli.StringFlag{Name: "end", Usage: "delete the span [KEY, `END`) instead of KEY"}),
				Action: action(func(c *cli.Context) error {
					return kvDel(e, c)
				}),
			},
			{
				Name:  "scan",
				Usage: "list the keys of [--start, --end) in order (or reverse)",
				Flags: append(kvFlags(), consistencyFlag(),
					&cli.StringFlag{Name: "start", Usage: "first `KEY` (default: the first key)"},
					&cli.StringFlag{Name: "end", Usage: "exclusive end `KEY` (default: past the last key)"},
					&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most `N` entries; 0 for all"},
					&cli.BoolFlag{Name: "reverse", Usage: "descending key order"},
					&cli.BoolFlag{Name: "keys-only", Usage: "print keys without values"},
				),
				Action: action(func(c *cli.Context) error {
					return kvScan(e, c)
				}),
			},
			{
				Name:      "cas",
				Usage:     "compare and swap: write (or delete) KEY only if its value is --expect (or it is absent)",
				ArgsUsage: "KEY [NEW_VALUE]",
				Flags: append(kvFlags(),
					&cli.StringFlag{Name: "expect", Usage: "required current `VALUE`"},
					&cli.BoolFlag{Name: "expect-absent", Usage: "require the key not to exist"},
					&cli.BoolFlag{Name: "delete", Usage: "delete the key on success instead of writing NEW_VALUE"},
				),
				Action: action(func(c *cli.Context) error {
					return kvCAS(e, c)
				}),
			},
		},
	}
}

// kvFlags are the connection flags of every command that talks to raftd.
func kvFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "addr", Value: hostPort(spec("raftd").busPort), Usage: "raftd bus `ADDRS`, comma separated"},
		certsDirFlag(),
		&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "bound on the whole command, retries included"},
		outputFlag(),
	}
}

func consistencyFlag() cli.Flag {
	return &cli.StringFlag{Name: "consistency", Value: "linearizable", Usage: "read consistency: linearizable or stale"}
}

// addrList reads and checks a comma separated --addr.
func addrList(c *cli.Context, flag string) ([]string, error) {
	raw := c.String(flag)
	var addrs []string
	for _, a := range strings.Split(raw, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if err := config.ValidateAddr(a); err != nil {
			return nil, &config.FlagError{Flag: flag, Value: raw, Err: err}
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return nil, &config.FlagError{Flag: flag, Value: raw, Err: errors.New("no address")}
	}
	return addrs, nil
}

// consistency reads and checks --consistency.
func consistency(c *cli.Context) (client.Consistency, error) {
	v := c.String("consistency")
	cons, err := client.ParseConsistency(v)
	if err != nil {
		return 0, usagef("invalid value %q for flag --consistency: want linearizable or stale", v)
	}
	return cons, nil
}

// checkKeyArg refuses keys raftd would refuse, before any call.
func checkKeyArg(what, k string) error {
	if k == "" {
		return usagef("%s must not be empty", what)
	}
	if k[0] == 0 {
		return usagef("%s must not begin with a 0x00 byte (system keys)", what)
	}
	return nil
}

// posArgs returns between min and max positional arguments.
func posArgs(c *cli.Context, lo, hi int, usage string) ([]string, error) {
	a := c.Args().Slice()
	// Flags stop at the first argument; name a flag given after one.
	for _, arg := range a {
		name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") || name == "" {
			continue
		}
		for _, f := range c.Command.Flags {
			for _, n := range f.Names() {
				if n == name {
					return nil, usagef("%s: flag %s comes after the arguments; give flags first", c.Command.FullName(), arg)
				}
			}
		}
	}
	if len(a) < lo || len(a) > hi {
		return nil, usagef("%s: want %s, got %d argument(s)", c.Command.FullName(), usage, len(a))
	}
	return a, nil
}

// kvSession holds what one kv command uses: its output format, a deadline
// and a client. Call close when done.
type kvSession struct {
	format string
	ctx    context.Context
	cl     *client.Client
	close  func()
}

// openKV checks the common flags and starts a client; flag checks happen
// before anything is dialed.
func openKV(e *env, c *cli.Context) (*kvSession, error) {
	f, err := format(c)
	if err != nil {
		return nil, err
	}
	addrs, err := addrList(c, "addr")
	if err != nil {
		return nil, err
	}
	certsDir := certsDir(c)
	tc, err := tlsutil.Load(certsDir)
	if err != nil {
		return nil, fmt.Errorf("load certificates from %s (--certs-dir): %w", certsDir, err)
	}
	ctx, cancel := context.WithTimeout(e.ctx, c.Duration("timeout"))
	cl, err := client.New(ctx, client.Config{Addrs: addrs, TLS: tc})
	if err != nil {
		cancel()
		return nil, err
	}
	return &kvSession{format: f, ctx: ctx, cl: cl, close: func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer scancel()
		_ = cl.Close(sctx)
		cancel()
	}}, nil
}

// kvView is one key as the kv commands print it.
type kvView struct {
	Key       string `json:"key"`
	Found     *bool  `json:"found,omitempty"`
	Value     string `json:"value,omitempty"`
	Timestamp string `json:"timestamp,omitempty"`
}

func tsString(ts hlc.Timestamp) string {
	if ts.IsZero() {
		return ""
	}
	return ts.String()
}

// printable shows a key or value as is when it is printable UTF-8, else
// Go-quoted.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func kvGet(e *env, c *cli.Context) error {
	a, err := posArgs(c, 1, 1, "KEY")
	if err != nil {
		return err
	}
	if err := checkKeyArg("KEY", a[0]); err != nil {
		return err
	}
	cons, err := consistency(c)
	if err != nil {
		return err
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	v, found, err := s.cl.Get(s.ctx, []byte(a[0]), client.WithConsistency(cons))
	if err != nil {
		return err
	}
	view := kvView{Key: a[0], Found: &found, Value: string(v.Value), Timestamp: tsString(v.Timestamp)}
	if s.format == "json" {
		if err := printJSON(e.stdout, view); err != nil {
			return err
		}
	} else if found {
		t := newTable(e.stdout, "KEY", "VALUE", "TIMESTAMP")
		t.row(printable(view.Key), printable(view.Value), view.Timestamp)
		if err := t.flush(); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("key %s not found", strconv.Quote(a[0]))
	}
	return nil
}

func kvPut(e *env, c *cli.Context) error {
	a, err := posArgs(c, 2, 2, "KEY VALUE")
	if err != nil {
		return err
	}
	if err := checkKeyArg("KEY", a[0]); err != nil {
		return err
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	ts, err := s.cl.Put(s.ctx, []byte(a[0]), []byte(a[1]))
	if err != nil {
		return err
	}
	if s.format == "json" {
		return printJSON(e.stdout, kvView{Key: a[0], Timestamp: tsString(ts)})
	}
	_, err = fmt.Fprintf(e.stdout, "OK %s at %s\n", printable(a[0]), ts)
	return err
}

// delView is what `kv del` prints.
type delView struct {
	Key     string `json:"key"`
	End     string `json:"end,omitempty"`
	Deleted uint64 `json:"deleted"`
}

func kvDel(e *env, c *cli.Context) error {
	a, err := posArgs(c, 1, 1, "KEY")
	if err != nil {
		return err
	}
	if err := checkKeyArg("KEY", a[0]); err != nil {
		return err
	}
	end, span := c.String("end"), c.IsSet("end")
	if span && end != "" && end <= a[0] {
		return usagef("--end %q must sort after KEY %q", end, a[0])
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	view := delView{Key: a[0], End: end}
	if span {
		view.Deleted, err = s.cl.DeleteRange(s.ctx, []byte(a[0]), []byte(end))
	} else {
		var ok bool
		ok, err = s.cl.Delete(s.ctx, []byte(a[0]))
		if ok {
			view.Deleted = 1
		}
	}
	if err != nil {
		return err
	}
	if s.format == "json" {
		return printJSON(e.stdout, view)
	}
	_, err = fmt.Fprintf(e.stdout, "deleted %d\n", view.Deleted)
	return err
}

// scanView is what `kv scan` prints.
type scanView struct {
	KVs   []kvView `json:"kvs"`
	Count int      `json:"count"`
	// More is set when --limit cut the scan short.
	More bool `json:"more,omitempty"`
}

func kvScan(e *env, c *cli.Context) error {
	if _, err := posArgs(c, 0, 0, "no arguments (use --start and --end)"); err != nil {
		return err
	}
	start, end := c.String("start"), c.String("end")
	if start != "" && start[0] == 0 || end != "" && end[0] == 0 {
		return usagef("--start and --end must not begin with a 0x00 byte (system keys)")
	}
	if start != "" && end != "" && start >= end {
		return usagef("--start %q must sort before --end %q", start, end)
	}
	limit := c.Int("limit")
	if limit < 0 {
		return usagef("invalid value %d for flag --limit: want 0 (all) or more", limit)
	}
	cons, err := consistency(c)
	if err != nil {
		return err
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	opts := client.ScanOptions{Reverse: c.Bool("reverse"), KeysOnly: c.Bool("keys-only"), Consistency: cons}
	if limit > 0 {
		opts.Limit = limit + 1 // one more tells whether the limit cut the scan
	}
	kvs, err := s.cl.Scan(s.ctx, []byte(start), []byte(end), opts).Collect()
	if err != nil {
		return err
	}
	view := scanView{KVs: []kvView{}}
	if limit > 0 && len(kvs) > limit {
		kvs, view.More = kvs[:limit], true
	}
	for _, kv := range kvs {
		view.KVs = append(view.KVs, kvView{Key: string(kv.Key), Value: string(kv.Value), Timestamp: tsString(kv.Timestamp)})
	}
	view.Count = len(view.KVs)
	if s.format == "json" {
		return printJSON(e.stdout, view)
	}
	var t *table
	if opts.KeysOnly {
		t = newTable(e.stdout, "KEY")
	} else {
		t = newTable(e.stdout, "KEY", "VALUE", "TIMESTAMP")
	}
	for _, kv := range view.KVs {
		if opts.KeysOnly {
			t.row(printable(kv.Key))
		} else {
			t.row(printable(kv.Key), printable(kv.Value), kv.Timestamp)
		}
	}
	if err := t.flush(); err != nil {
		return err
	}
	if view.More {
		_, err = fmt.Fprintf(e.stdout, "(%d shown; more past --limit)\n", view.Count)
	}
	return err
}

// casView is what `kv cas` prints.
type casView struct {
	Key       string  `json:"key"`
	Succeeded bool    `json:"succeeded"`
	Timestamp string  `json:"timestamp,omitempty"`
	Current   *kvView `json:"current,omitempty"`
}

func kvCAS(e *env, c *cli.Context) error {
	del := c.Bool("delete")
	var a []string
	var err error
	if del {
		a, err = posArgs(c, 1, 1, "KEY (no NEW_VALUE with --delete)")
	} else {
		a, err = posArgs(c, 2, 2, "KEY NEW_VALUE")
	}
	if err != nil {
		return err
	}
	if err := checkKeyArg("KEY", a[0]); err != nil {
		return err
	}
	expect, absent := c.IsSet("expect"), c.Bool("expect-absent")
	if expect == absent {
		return usagef("kv cas: give exactly one of --expect VALUE and --expect-absent")
	}
	if del && absent {
		return usagef("kv cas: --delete with --expect-absent deletes nothing")
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	x := client.CAS{Key: []byte(a[0]), ExpectAbsent: absent, Expected: []byte(c.String("expect")), Delete: del}
	if !del {
		x.NewValue = []byte(a[1])
	}
	res, err := s.cl.CompareAndSwap(s.ctx, x)
	if err != nil {
		return err
	}
	view := casView{Key: a[0], Succeeded: res.Succeeded, Timestamp: tsString(res.Timestamp)}
	if res.CurrentFound {
		view.Current = &kvView{Key: a[0], Value: string(res.Current.Value), Timestamp: tsString(res.Current.Timestamp)}
	}
	if s.format == "json" {
		if err := printJSON(e.stdout, view); err != nil {
			return err
		}
	} else if res.Succeeded {
		fmt.Fprintf(e.stdout, "OK %s at %s\n", printable(a[0]), res.Timestamp)
	} else if res.CurrentFound {
		fmt.Fprintf(e.stdout, "FAILED: current value %s (at %s)\n", printable(view.Current.Value), view.Current.Timestamp)
	} else {
		fmt.Fprintln(e.stdout, "FAILED: key absent")
	}
	if !res.Succeeded {
		return errors.New("comparison failed")
	}
	return nil
}
