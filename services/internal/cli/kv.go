package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/output"
)

func kvCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "kv",
		Usage: "read and write keys: get, put, del, scan, cas, watch",
		Description: "Each subcommand calls the raftd(s) at --addr over the bus (mutual TLS with the node\n" +
			"certificate in --certs-dir) through the Go client, which finds range leaders and retries\n" +
			"on Unavailable / NotLeader until --timeout. Values are printed with the HLC timestamp\n" +
			"of the write that made them. A missing key (get) or a failed comparison (cas) exits 1.\n" +
			"--encoding hex or base64 reads keys and values in that encoding and prints them so; with the\n" +
			"default text, JSON output gives keys and values that are not valid UTF-8 in base64, marked by\n" +
			"key_encoding / value_encoding \"base64\".\n" +
			"Flags go before the arguments: pleiades kv put --addr ADDR KEY VALUE.",
		Subcommands: []*cli.Command{
			{
				Name:      "get",
				Usage:     "read one key (printed, or its value written to --value-file)",
				ArgsUsage: "KEY",
				Flags: append(kvFlags(), consistencyFlag(), encodingFlag(),
					&cli.StringFlag{Name: "value-file", Usage: "write the value's bytes, as they are, to `FILE` (- for standard output) instead of printing the entry"},
					atFlag(), maxStalenessFlag()),
				Action: func(c *cli.Context) error {
					return kvGet(e, c)
				},
			},
			{
				Name:      "put",
				Usage:     "write one key (the value given, or read from --value-file)",
				ArgsUsage: "KEY [VALUE]",
				Flags: append(kvFlags(), encodingFlag(),
					&cli.StringFlag{Name: "value-file", Usage: "write the bytes of `FILE` as the value (- for standard input), as they are (no --encoding)"}),
				Action: func(c *cli.Context) error {
					return kvPut(e, c)
				},
			},
			{
				Name:      "del",
				Usage:     "delete one key, or every key in [KEY, --end)",
				ArgsUsage: "KEY",
				Flags: append(kvFlags(), encodingFlag(),
					&cli.StringFlag{Name: "end", Usage: "delete the span [KEY, `END`) instead of KEY"}),
				Action: func(c *cli.Context) error {
					return kvDel(e, c)
				},
			},
			{
				Name:  "scan",
				Usage: "list the keys of [--start, --end) in order (or reverse)",
				Flags: append(kvFlags(), consistencyFlag(), encodingFlag(),
					&cli.StringFlag{Name: "start", Usage: "first `KEY` (default: the first key)"},
					&cli.StringFlag{Name: "end", Usage: "exclusive end `KEY` (default: past the last key)"},
					&cli.IntFlag{Name: "limit", Value: 100, Usage: "at most `N` entries; 0 for all"},
					&cli.BoolFlag{Name: "reverse", Usage: "descending key order"},
					&cli.BoolFlag{Name: "keys-only", Usage: "print keys without values"},
					atFlag(), maxStalenessFlag(),
				),
				Action: func(c *cli.Context) error {
					return kvScan(e, c)
				},
			},
			{
				Name:      "cas",
				Usage:     "compare and swap: write (or delete) KEY only if its value is --expect (or it is absent)",
				ArgsUsage: "KEY [NEW_VALUE]",
				Flags: append(kvFlags(), encodingFlag(),
					&cli.StringFlag{Name: "expect", Usage: "required current `VALUE`"},
					&cli.BoolFlag{Name: "expect-absent", Usage: "require the key not to exist"},
					&cli.BoolFlag{Name: "delete", Usage: "delete the key on success instead of writing NEW_VALUE"},
				),
				Action: func(c *cli.Context) error {
					return kvCAS(e, c)
				},
			},
			kvWatchCommand(e),
		},
	}
}

// initHint adds a one-line hint to the error of a call that every node
// refused because the cluster is not initialized.
func initHint(err error) error {
	if errors.Is(err, kvclient.ErrNotInitialized) {
		return fmt.Errorf("%w\nhint: the cluster has no ranges yet: run `pleiades init` (see `pleiades init --help`)", err)
	}
	return err
}

// kvFlags are the connection flags of every command that talks to raftd.
func kvFlags() []cli.Flag {
	return []cli.Flag{
		addrFlag("raftd", hostPort(spec("raftd").busPort), "raftd bus `ADDRS`, comma separated"),
		certsDirFlag(),
		&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "bound on the whole command, retries included"},
		output.Flag(),
	}
}

func consistencyFlag() cli.Flag {
	return &cli.StringFlag{Name: "consistency", Value: "linearizable", Usage: "read consistency: linearizable or stale"}
}

// addrList reads and checks a comma separated address list flag that
// needs at least one address.
func addrList(c *cli.Context, flag string) ([]string, error) {
	addrs, err := config.AddrList(c, flag)
	if err == nil && len(addrs) == 0 {
		err = &config.FlagError{Flag: flag, Value: c.String(flag), Err: errors.New("no address")}
	}
	return addrs, err
}

// consistency reads and checks --consistency.
func consistency(c *cli.Context) (kvclient.Consistency, error) {
	v := c.String("consistency")
	cons, err := kvclient.ParseConsistency(v)
	if err != nil {
		return 0, config.Usagef("invalid value %q for flag --consistency: want linearizable or stale", v)
	}
	return cons, nil
}

// keyArg decodes a key given on the command line and refuses keys raftd
// would refuse, before any call.
func keyArg(enc byteEncoding, what, raw string) ([]byte, error) {
	k, err := enc.decode(what, raw)
	if err != nil {
		return nil, err
	}
	return k, checkKeyArg(what, string(k))
}

// checkKeyArg refuses keys raftd would refuse, before any call.
func checkKeyArg(what, k string) error {
	if k == "" {
		return config.Usagef("%s must not be empty", what)
	}
	if k[0] == 0 {
		return config.Usagef("%s must not begin with a 0x00 byte (system keys)", what)
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
					return nil, config.Usagef("%s: flag %s comes after the arguments; give flags first", c.Command.FullName(), arg)
				}
			}
		}
	}
	if len(a) < lo || len(a) > hi {
		return nil, config.Usagef("%s: want %s, got %d argument(s)", c.Command.FullName(), usage, len(a))
	}
	return a, nil
}

// kvSession holds what one kv command uses: its output format, a deadline
// and a client. Call close when done.
type kvSession struct {
	format string
	ctx    context.Context
	cl     *kvclient.Client
	certs  certsChoice
	addrs  []string
	close  func()
}

// explain adds the hint of a failed call (see certsChoice.explain).
func (s *kvSession) explain(err error) error { return s.certs.explain(err, s.addrs) }

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
	certs := pickCerts(c, addrs)
	tc, err := certs.load()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(e.ctx)
	if d := c.Duration("timeout"); d > 0 {
		ctx, cancel = context.WithTimeout(e.ctx, d)
	}
	cl, err := kvclient.New(ctx, kvclient.Config{Addrs: addrs, TLS: tc})
	if err != nil {
		cancel()
		return nil, err
	}
	return &kvSession{format: f, ctx: ctx, cl: cl, certs: certs, addrs: addrs, close: func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer scancel()
		_ = cl.Close(sctx)
		cancel()
	}}, nil
}

// kvView is one key as the kv commands print it. KeyEncoding and
// ValueEncoding name the encoding of Key and Value when they are not
// plain text (see byteEncoding.forJSON).
type kvView struct {
	Key           string `json:"key"`
	KeyEncoding   string `json:"key_encoding,omitempty"`
	Found         *bool  `json:"found,omitempty"`
	Value         string `json:"value,omitempty"`
	ValueEncoding string `json:"value_encoding,omitempty"`
	Timestamp     string `json:"timestamp,omitempty"`
	// CreateTimestamp and Version: the key's create timestamp and count
	// of writes since (get); Timestamp is its modify timestamp.
	CreateTimestamp string `json:"create_timestamp,omitempty"`
	Version         uint64 `json:"version,omitempty"`
	// ReadAt is the timestamp a --max-staleness get was served at.
	ReadAt string `json:"read_at,omitempty"`
}

// newKVView builds the JSON view of key and, unless value is nil, value.
func newKVView(enc byteEncoding, key, value []byte, ts hlc.Timestamp) kvView {
	v := kvView{Timestamp: tsString(ts)}
	v.Key, v.KeyEncoding = enc.forJSON(key)
	if len(value) > 0 {
		v.Value, v.ValueEncoding = enc.forJSON(value)
	}
	return v
}

func tsString(ts hlc.Timestamp) string {
	if ts.IsZero() {
		return ""
	}
	return ts.String()
}

func kvGet(e *env, c *cli.Context) (err error) {
	a, err := posArgs(c, 1, 1, "KEY")
	if err != nil {
		return err
	}
	enc, err := encodingOf(c)
	if err != nil {
		return err
	}
	key, err := keyArg(enc, "KEY", a[0])
	if err != nil {
		return err
	}
	cons, err := consistency(c)
	if err != nil {
		return err
	}
	stale, err := maxStaleness(c, cons)
	if err != nil {
		return err
	}
	var servedAt hlc.Timestamp
	opts := []kvclient.ReadOption{kvclient.WithConsistency(cons)}
	if stale > 0 {
		opts = append(opts, kvclient.MaxStaleness(stale), kvclient.ServedAt(&servedAt))
	}
	if at := c.String("at"); at != "" {
		ts, err := parseAt(at, time.Now())
		if err != nil {
			return &config.FlagError{Flag: "at", Value: at, Err: err}
		}
		opts = append(opts, kvclient.ReadAt(ts))
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	defer func() { err = s.explain(err) }()
	v, found, err := s.cl.Get(s.ctx, key, opts...)
	if err != nil {
		return err
	}
	if file := c.String("value-file"); file != "" && found {
		return writeValueFile(e, file, v.Value)
	}
	if s.format == "json" {
		view := newKVView(enc, key, v.Value, v.Timestamp)
		view.Found = &found
		view.CreateTimestamp, view.Version = tsString(v.CreateTimestamp), v.Version
		view.ReadAt = tsString(servedAt)
		if err := output.PrintJSON(e.stdout, view); err != nil {
			return err
		}
	} else {
		if found {
			t := output.NewTable(e.stdout, "KEY", "VALUE", "TIMESTAMP")
			t.Row(enc.brief(key), enc.brief(v.Value), tsString(v.Timestamp))
			if err := t.Flush(); err != nil {
				return err
			}
		}
		printReadAt(e, stale, servedAt)
	}
	if !found {
		shown := strconv.Quote(string(key))
		if enc != encText {
			shown = enc.brief(key)
		}
		return fmt.Errorf("key %s not found", shown)
	}
	return nil
}

func kvPut(e *env, c *cli.Context) (err error) {
	file := c.String("value-file")
	n := 2
	if file != "" {
		n = 1
	}
	a, err := posArgs(c, n, n, "KEY VALUE, or KEY and --value-file")
	if err != nil {
		return err
	}
	enc, err := encodingOf(c)
	if err != nil {
		return err
	}
	key, err := keyArg(enc, "KEY", a[0])
	if err != nil {
		return err
	}
	var value []byte
	if file != "" {
		value, err = readValueFile(e, file)
	} else {
		value, err = enc.decode("VALUE", a[1])
	}
	if err != nil {
		return err
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	defer func() { err = s.explain(err) }()
	ts, err := s.cl.Put(s.ctx, key, value)
	if err != nil {
		return err
	}
	if s.format == "json" {
		return output.PrintJSON(e.stdout, newKVView(enc, key, nil, ts))
	}
	_, err = fmt.Fprintf(e.stdout, "OK %s at %s\n", enc.brief(key), ts)
	return err
}

// delView is what `kv del` prints.
type delView struct {
	Key         string `json:"key"`
	KeyEncoding string `json:"key_encoding,omitempty"`
	End         string `json:"end,omitempty"`
	EndEncoding string `json:"end_encoding,omitempty"`
	Deleted     uint64 `json:"deleted"`
}

func kvDel(e *env, c *cli.Context) (err error) {
	a, err := posArgs(c, 1, 1, "KEY")
	if err != nil {
		return err
	}
	enc, err := encodingOf(c)
	if err != nil {
		return err
	}
	key, err := keyArg(enc, "KEY", a[0])
	if err != nil {
		return err
	}
	end, err := enc.decode("--end", c.String("end"))
	if err != nil {
		return err
	}
	span := c.IsSet("end")
	if span && len(end) > 0 && bytes.Compare(end, key) <= 0 {
		return config.Usagef("--end %s must sort after KEY %s", enc.brief(end), enc.brief(key))
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	defer func() { err = s.explain(err) }()
	var view delView
	view.Key, view.KeyEncoding = enc.forJSON(key)
	if len(end) > 0 {
		view.End, view.EndEncoding = enc.forJSON(end)
	}
	if span {
		view.Deleted, err = s.cl.DeleteRange(s.ctx, key, end)
	} else {
		var ok bool
		ok, err = s.cl.Delete(s.ctx, key)
		if ok {
			view.Deleted = 1
		}
	}
	if err != nil {
		return err
	}
	if s.format == "json" {
		return output.PrintJSON(e.stdout, view)
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
	// ReadAt is the timestamp a --max-staleness scan was served at.
	ReadAt string `json:"read_at,omitempty"`
}

func kvScan(e *env, c *cli.Context) (err error) {
	if _, err := posArgs(c, 0, 0, "no arguments (use --start and --end)"); err != nil {
		return err
	}
	enc, err := encodingOf(c)
	if err != nil {
		return err
	}
	start, err := enc.decode("--start", c.String("start"))
	if err != nil {
		return err
	}
	end, err := enc.decode("--end", c.String("end"))
	if err != nil {
		return err
	}
	if len(start) > 0 && start[0] == 0 || len(end) > 0 && end[0] == 0 {
		return config.Usagef("--start and --end must not begin with a 0x00 byte (system keys)")
	}
	if len(start) > 0 && len(end) > 0 && bytes.Compare(start, end) >= 0 {
		return config.Usagef("--start %s must sort before --end %s", enc.brief(start), enc.brief(end))
	}
	limit := c.Int("limit")
	if limit < 0 {
		return config.Usagef("invalid value %d for flag --limit: want 0 (all) or more", limit)
	}
	cons, err := consistency(c)
	if err != nil {
		return err
	}
	stale, err := maxStaleness(c, cons)
	if err != nil {
		return err
	}
	opts := kvclient.ScanOptions{Reverse: c.Bool("reverse"), KeysOnly: c.Bool("keys-only"), Consistency: cons, MaxStaleness: stale}
	if at := c.String("at"); at != "" {
		if opts.ReadAt, err = parseAt(at, time.Now()); err != nil {
			return &config.FlagError{Flag: "at", Value: at, Err: err}
		}
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	defer func() { err = s.explain(err) }()
	if limit > 0 {
		opts.Limit = limit + 1 // one more tells whether the limit cut the scan
	}
	it := s.cl.Scan(s.ctx, start, end, opts)
	kvs, err := it.Collect()
	if err != nil {
		return err
	}
	view := scanView{KVs: []kvView{}, ReadAt: tsString(it.ReadAt())}
	if limit > 0 && len(kvs) > limit {
		kvs, view.More = kvs[:limit], true
	}
	for _, kv := range kvs {
		view.KVs = append(view.KVs, newKVView(enc, kv.Key, kv.Value, kv.Timestamp))
	}
	view.Count = len(view.KVs)
	if s.format == "json" {
		return output.PrintJSON(e.stdout, view)
	}
	var t *output.TableWriter
	if opts.KeysOnly {
		t = output.NewTable(e.stdout, "KEY")
	} else {
		t = output.NewTable(e.stdout, "KEY", "VALUE", "TIMESTAMP")
	}
	for _, kv := range kvs {
		if opts.KeysOnly {
			t.Row(enc.brief(kv.Key))
		} else {
			t.Row(enc.brief(kv.Key), enc.brief(kv.Value), tsString(kv.Timestamp))
		}
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if view.More {
		_, err = fmt.Fprintf(e.stdout, "(%d shown; more past --limit)\n", view.Count)
	}
	printReadAt(e, opts.MaxStaleness, it.ReadAt())
	return err
}

// printReadAt tells, on standard error, where a --max-staleness read was
// served.
func printReadAt(e *env, stale time.Duration, at hlc.Timestamp) {
	switch {
	case stale == 0:
	case at.IsZero():
		fmt.Fprintln(e.stderr, "read linearizably by the leader (no replica's closed timestamp was within --max-staleness)")
	default:
		fmt.Fprintf(e.stderr, "read at %s (%v ago)\n", at, time.Since(time.Unix(0, at.WallTime)).Round(time.Millisecond))
	}
}

// casView is what `kv cas` prints.
type casView struct {
	Key         string  `json:"key"`
	KeyEncoding string  `json:"key_encoding,omitempty"`
	Succeeded   bool    `json:"succeeded"`
	Timestamp   string  `json:"timestamp,omitempty"`
	Current     *kvView `json:"current,omitempty"`
}

func kvCAS(e *env, c *cli.Context) (err error) {
	del := c.Bool("delete")
	var a []string
	if del {
		a, err = posArgs(c, 1, 1, "KEY (no NEW_VALUE with --delete)")
	} else {
		a, err = posArgs(c, 2, 2, "KEY NEW_VALUE")
	}
	if err != nil {
		return err
	}
	enc, err := encodingOf(c)
	if err != nil {
		return err
	}
	key, err := keyArg(enc, "KEY", a[0])
	if err != nil {
		return err
	}
	expect, absent := c.IsSet("expect"), c.Bool("expect-absent")
	if expect == absent {
		return config.Usagef("kv cas: give exactly one of --expect VALUE and --expect-absent")
	}
	if del && absent {
		return config.Usagef("kv cas: --delete with --expect-absent deletes nothing")
	}
	x := kvclient.CAS{Key: key, ExpectAbsent: absent, Delete: del}
	if x.Expected, err = enc.decode("--expect", c.String("expect")); err != nil {
		return err
	}
	if !del {
		if x.NewValue, err = enc.decode("NEW_VALUE", a[1]); err != nil {
			return err
		}
	}
	s, err := openKV(e, c)
	if err != nil {
		return err
	}
	defer s.close()
	defer func() { err = s.explain(err) }()
	res, err := s.cl.CompareAndSwap(s.ctx, x)
	if err != nil {
		return err
	}
	view := casView{Succeeded: res.Succeeded, Timestamp: tsString(res.Timestamp)}
	view.Key, view.KeyEncoding = enc.forJSON(key)
	if res.CurrentFound {
		cur := newKVView(enc, key, res.Current.Value, res.Current.Timestamp)
		view.Current = &cur
	}
	if s.format == "json" {
		if err := output.PrintJSON(e.stdout, view); err != nil {
			return err
		}
	} else if res.Succeeded {
		if del {
			fmt.Fprintf(e.stdout, "deleted %s at %s\n", enc.brief(key), res.Timestamp)
		} else {
			fmt.Fprintf(e.stdout, "OK %s at %s\n", enc.brief(key), res.Timestamp)
		}
	} else if res.CurrentFound {
		fmt.Fprintf(e.stdout, "FAILED: current value %s (at %s)\n", enc.brief(res.Current.Value), tsString(res.Current.Timestamp))
	} else {
		fmt.Fprintln(e.stdout, "FAILED: key absent")
	}
	if !res.Succeeded {
		return errors.New("comparison failed")
	}
	return nil
}

// byteEncoding is how the kv commands read keys and values from the
// command line and print them: text (as is), hex or base64 (standard,
// padded).
type byteEncoding string

const (
	encText   byteEncoding = "text"
	encHex    byteEncoding = "hex"
	encBase64 byteEncoding = "base64"
)

func encodingFlag() cli.Flag {
	return &cli.StringFlag{Name: "encoding", Value: string(encText),
		Usage: "how keys and values are given (arguments, --start, --end, --expect) and printed: text, hex or base64;\n" +
			"\tin JSON output each key and value that is not plain text has a *_encoding field (text that is not\n" +
			"\tvalid UTF-8 is printed in base64 with key_encoding or value_encoding \"base64\")"}
}

// encodingOf reads and checks --encoding.
func encodingOf(c *cli.Context) (byteEncoding, error) {
	switch e := byteEncoding(c.String("encoding")); e {
	case encText, encHex, encBase64:
		return e, nil
	default:
		return "", config.Usagef("invalid value %q for flag --encoding: want text, hex or base64", e)
	}
}

// decode reads a key or value given on the command line; what names it
// in errors.
func (e byteEncoding) decode(what, s string) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	switch e {
	case encHex:
		b, err = hex.DecodeString(s)
	case encBase64:
		b, err = base64.StdEncoding.DecodeString(s)
	default:
		return []byte(s), nil
	}
	if err != nil {
		return nil, config.Usagef("%s %q is not valid %s (--encoding %s): %v", what, s, e, e, err)
	}
	return b, nil
}

// tableBytes bounds what a table or a one-line message shows of one key or
// value: a longer one is cut there and followed by its size. JSON output
// and --value-file keep every byte.
const tableBytes = 64

// brief is show for tables and messages: at most tableBytes characters of
// the shown form, then "…" and the size in bytes when cut (a 100 KB value
// printed a 523 KB line, and kv scan padded every row to the widest).
func (e byteEncoding) brief(b []byte) string {
	s := e.show(b)
	if utf8.RuneCountInString(s) <= tableBytes {
		return s
	}
	r := []rune(s)
	return fmt.Sprintf("%s… (%s)", string(r[:tableBytes]), byteSize(uint64(len(b))))
}

// show formats b for a table: hex or base64, or with text the bytes as is
// when printable UTF-8, else Go-quoted.
func (e byteEncoding) show(b []byte) string {
	switch e {
	case encHex:
		return hex.EncodeToString(b)
	case encBase64:
		return base64.StdEncoding.EncodeToString(b)
	}
	return printable(string(b))
}

// forJSON formats b for JSON output and names its encoding ("" for plain
// text). Text that is not valid UTF-8 would be mangled by JSON (invalid
// bytes become U+FFFD), so it is given in base64 instead.
func (e byteEncoding) forJSON(b []byte) (s, enc string) {
	switch {
	case e == encHex:
		return hex.EncodeToString(b), string(encHex)
	case e == encBase64 || !utf8.Valid(b):
		return base64.StdEncoding.EncodeToString(b), string(encBase64)
	}
	return string(b), ""
}

// printable shows a key or value as is when it is printable UTF-8, else
// Go-quoted.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// writeValueFile writes a value to path ("-": standard output).
func writeValueFile(e *env, path string, value []byte) error {
	if path == "-" {
		_, err := e.stdout.Write(value)
		return err
	}
	if err := os.WriteFile(path, value, 0o600); err != nil {
		return fmt.Errorf("--value-file: %w", err)
	}
	return nil
}

// readValueFile reads a value from path ("-": standard input).
func readValueFile(e *env, path string) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(e.stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the value from standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, config.Usagef("--value-file: %v", err)
	}
	return b, nil
}
