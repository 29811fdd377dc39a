package config

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

func testTool(out *strings.Builder) *cli.App {
	app := &cli.App{
		Name:   "tool",
		Writer: out, ErrWriter: out,
		Commands: []*cli.Command{
			{
				Name: "get",
				Flags: []cli.Flag{
					&cli.DurationFlag{Name: "timeout", Value: time.Second},
					&cli.IntFlag{Name: "limit"},
					&cli.StringFlag{Name: "mode"},
					&cli.BoolFlag{Name: "all"},
				},
				Action: func(c *cli.Context) error {
					switch c.String("mode") {
					case "fail":
						return errors.New("no such key")
					case "usage":
						return Usagef("get: want a KEY")
					case "flag":
						return &FlagError{Flag: "mode", Value: "flag", Err: errors.New("want fail or usage")}
					}
					return nil
				},
			},
			{Name: "group", Subcommands: []*cli.Command{{Name: "one", Action: func(*cli.Context) error { return nil }}}},
		},
	}
	Prepare(app)
	return app
}

func TestRunExitStatusesAndMessages(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"get"}, ExitOK, ""},
		{[]string{"get", "--mode", "fail"}, ExitFailed, "tool: no such key"},
		{[]string{"get", "--mode", "usage"}, ExitUsage, "tool: get: want a KEY"},
		{[]string{"get", "--mode", "flag"}, ExitUsage, `invalid value "flag" for flag --mode: want fail or usage`},
		{[]string{"frob"}, ExitUsage, "unknown command \"frob\" for `tool`; commands: get, group (see `tool --help`)"},
		{[]string{"group", "two"}, ExitUsage, "unknown command \"two\" for `tool group`; commands: one (see `tool group --help`)"},
		{[]string{"group"}, ExitOK, "one"},
		{[]string{"get", "--bogus"}, ExitUsage, "unknown flag --bogus for `tool get` (see `tool get --help`)"},
		{[]string{"get", "--timeout", "abc"}, ExitUsage, `invalid value "abc" for flag --timeout: want a duration such as 500ms, 5s or 1m30s`},
		{[]string{"get", "--limit", "x"}, ExitUsage, `invalid value "x" for flag --limit: want a whole number`},
		{[]string{"get", "--all=maybe"}, ExitUsage, `invalid value "maybe" for flag --all: want true or false`},
		{[]string{"group", "one", "--bogus"}, ExitUsage, "unknown flag --bogus for `tool group one`"},
		{[]string{"get", "--timeout"}, ExitUsage, `invalid value "" for flag --timeout: needs a value: want a duration`},
	} {
		var out strings.Builder
		code := Run(context.Background(), testTool(&out), append([]string{"tool"}, tt.args...))
		if code != tt.code || !strings.Contains(out.String(), tt.want) {
			t.Errorf("tool %q: exit %d, output %q; want %d and %q", tt.args, code, out.String(), tt.code, tt.want)
		}
		if strings.Contains(out.String(), "No help topic") || strings.Contains(out.String(), " -bogus") {
			t.Errorf("tool %q: output %q still has urfave/cli's wording", tt.args, out.String())
		}
	}
}

func TestRunKeepsAnExitCodersStatus(t *testing.T) {
	var out strings.Builder
	app := &cli.App{Name: "tool", Writer: &out, ErrWriter: &out, Action: func(*cli.Context) error { return cli.Exit("", 3) }}
	Prepare(app)
	if code := Run(context.Background(), app, []string{"tool"}); code != 3 || out.String() != "" {
		t.Errorf("exit %d, output %q; want 3 and nothing", code, out.String())
	}
}
