package cli

import (
	"context"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/version"
)

// Exit codes of the pleiades command.
const (
	ExitOK     = config.ExitOK
	ExitFailed = config.ExitFailed
	ExitUsage  = config.ExitUsage
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
		rangeCommand(env),
		workflowsCommand(env),
		nodeCommand(env),
		eventsCommand(env),
		versionCommand(env),
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

// Run runs the pleiades command line args and returns the exit code (see
// config.Run: 0 done, 1 the command ran and failed, 2 bad usage).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return config.Run(ctx, NewApp(ctx, stdout, stderr), args)
}
