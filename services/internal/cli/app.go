package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/version"
)

// Exit codes of the pleiades command.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// commands lists the command groups, in help order. Each group lives in
// its own file.
func commands(env *env) []*cli.Command {
	return []*cli.Command{
		upCommand(env),
		devCommand(env),
		statusCommand(env),
		certCommand(env),
		deployCommand(env),
		healthCommand(env),
		clockCommand(env),
		membersCommand(env),
		storeCommand(env),
		benchCommand(env),
		initCommand(env),
		kvCommand(env),
		rangesCommand(env),
		workflowsCommand(env),
		eventsCommand(env),
	}
}

// env is what commands share: output streams and the process context.
type env struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
}

// NewApp returns the pleiades app writing to stdout and stderr; ctx ends
// long-running commands (up, dev) when cancelled.
func NewApp(ctx context.Context, stdout, stderr io.Writer) *cli.App {
	e := &env{ctx: ctx, stdin: os.Stdin, stdout: stdout, stderr: stderr}
	app := &cli.App{
		Name:                 "pleiades",
		Usage:                "operate and develop against a Pleiades cluster",
		Version:              version.String(),
		Commands:             commands(e),
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
	}
	config.Prepare(app)
	return app
}

// Run runs the pleiades command line args and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := NewApp(ctx, stdout, stderr)
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintf(stderr, "pleiades: %v\n", err)
		var re runError
		if errors.As(err, &re) {
			return ExitFailed
		}
		// Flag parsing, --config loading and usagef errors.
		return ExitUsage
	}
	return ExitOK
}

// runError marks a failure of a command that parsed fine: exit 1. Every
// other error is a bad command line: exit 2.
type runError struct{ error }

func (e runError) Unwrap() error { return e.error }

// action wraps a command's action so that its failures exit 1, except
// usage errors (usagef, *config.FlagError), which exit 2.
func action(f func(c *cli.Context) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		err := f(c)
		var ue usageError
		var fe *config.FlagError
		if err == nil || errors.As(err, &ue) || errors.As(err, &fe) {
			return err
		}
		return runError{err}
	}
}

// usageError marks a bad command line.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}
