package config

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit statuses of a command run by Run.
const (
	ExitOK     = 0 // done
	ExitFailed = 1 // the command ran and failed
	ExitUsage  = 2 // bad command line: unknown command or flag, bad value
)

// UsageError is a bad command line found by an action (a missing
// argument, two flags that exclude each other): exit status 2, like a
// *FlagError.
type UsageError struct{ Err error }

// Error implements error.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// IsUsage reports whether err is a bad command line: a *UsageError or a
// *FlagError in its chain.
func IsUsage(err error) bool {
	var ue *UsageError
	var fe *FlagError
	return errors.As(err, &ue) || errors.As(err, &fe)
}

// failure marks an error returned by an action that is not a usage error:
// the command ran and failed (exit status 1).
type failure struct{ err error }

func (e *failure) Error() string { return e.err.Error() }
func (e *failure) Unwrap() error { return e.err }

// Run runs app (prepared with Prepare or built by NewApp) with args
// (args[0] is the program name) and returns its exit status: ExitOK,
// ExitFailed when an action returned an error, ExitUsage for a bad command
// line (unknown command or flag, a flag value that does not parse, an
// action's *FlagError or *UsageError), or the status of a cli.ExitCoder
// an action returned. An error is printed on app.ErrWriter as
// "<app name>: <error>" (an ExitCoder's only when it has a message).
func Run(ctx context.Context, app *cli.App, args []string) int {
	app.Action = markFailures(app.Action)
	markCommandFailures(app.Commands)
	err := app.RunContext(ctx, args)
	if err == nil {
		return ExitOK
	}
	w := app.ErrWriter
	if w == nil {
		w = app.Writer
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) && ec.ExitCode() > 0 {
		// A status chosen by the action (a command it ran, say).
		if msg := ec.Error(); msg != "" {
			fmt.Fprintf(w, "%s: %s\n", app.Name, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintf(w, "%s: %v\n", app.Name, err)
	var f *failure
	if errors.As(err, &f) && !IsUsage(err) {
		return ExitFailed
	}
	return ExitUsage
}

func markFailures(a cli.ActionFunc) cli.ActionFunc {
	if a == nil {
		return nil
	}
	return func(c *cli.Context) error {
		err := a(c)
		if err == nil || IsUsage(err) {
			return err
		}
		var f *failure
		if errors.As(err, &f) {
			return err
		}
		return &failure{err}
	}
}

func markCommandFailures(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.Action = markFailures(cmd.Action)
		markCommandFailures(cmd.Subcommands)
	}
}

// unknownCommand is the action of an app or command group with
// subcommands and no action of its own: with no argument it prints the
// help, with one it says the command is unknown and lists the known ones
// (urfave/cli alone says "No help topic for 'x'" and exits 3).
func unknownCommand(c *cli.Context) error {
	if !c.Args().Present() {
		return cli.ShowSubcommandHelp(c)
	}
	var names []string
	cmds := c.App.Commands
	if !isRoot(c) {
		cmds = c.Command.Subcommands
	}
	where := commandPath(c)
	for _, cmd := range cmds {
		if !cmd.Hidden && cmd.Name != "help" {
			names = append(names, cmd.Name)
		}
	}
	sort.Strings(names)
	return Usagef("unknown command %q for `%s`; commands: %s (see `%s --help`)",
		c.Args().First(), where, strings.Join(names, ", "), where)
}

// isRoot reports whether c is the app's own context, not a command's.
func isRoot(c *cli.Context) bool {
	return c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name
}

// commandPath is the command line that leads to c's command, e.g.
// "pleiades kv get".
func commandPath(c *cli.Context) string {
	var names []string
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Command.Name != "" && x.Command.Name != c.App.Name {
			names = append(names, x.Command.Name)
		}
	}
	path := c.App.Name
	for i := len(names) - 1; i >= 0; i-- {
		path += " " + names[i]
	}
	return path
}

var (
	reUndefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
	reBadValue      = regexp.MustCompile(`^invalid value "(.*)" for flag -+([^:]+): (.*)$`)
	reBadBool       = regexp.MustCompile(`^invalid boolean value "(.*)" for -+([^:]+): (.*)$`)
	reNeedsArg      = regexp.MustCompile(`^flag needs an argument: -+(.+)$`)
)

// describeUsage rewrites the flag package's terse parse errors into ones
// that name the flag as typed (--name, not -name) and say what is
// accepted. c is the context of the command whose flags failed to parse.
func describeUsage(c *cli.Context, err error) error {
	msg := err.Error()
	where := commandPath(c)
	if m := reUndefinedFlag.FindStringSubmatch(msg); m != nil {
		return Usagef("unknown flag --%s for `%s` (see `%s --help`)", m[1], where, where)
	}
	if m := reNeedsArg.FindStringSubmatch(msg); m != nil {
		return &FlagError{Flag: m[1], Value: "", Err: fmt.Errorf("needs a value: %s", accepted(c, m[1], "give one after the flag"))}
	}
	if m := reBadBool.FindStringSubmatch(msg); m != nil {
		return &FlagError{Flag: m[2], Value: m[1], Err: errors.New(accepted(c, m[2], m[3]))}
	}
	if m := reBadValue.FindStringSubmatch(msg); m != nil {
		return &FlagError{Flag: m[2], Value: m[1], Err: errors.New(accepted(c, m[2], m[3]))}
	}
	return err
}

// accepted says which values flag name takes, by its type; dflt when the
// type says nothing useful.
func accepted(c *cli.Context, name, dflt string) string {
	var flags []cli.Flag
	if c.Command != nil {
		flags = append(flags, c.Command.Flags...)
	}
	flags = append(flags, c.App.Flags...)
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			switch f.(type) {
			case *cli.DurationFlag:
				return "want a duration such as 500ms, 5s or 1m30s"
			case *cli.IntFlag, *cli.Int64Flag:
				return "want a whole number"
			case *cli.UintFlag, *cli.Uint64Flag:
				return "want a whole number, 0 or more"
			case *cli.Float64Flag:
				return "want a number such as 0.05"
			case *cli.BoolFlag:
				return "want true or false"
			}
			return dflt
		}
	}
	return dflt
}
