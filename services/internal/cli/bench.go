package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

// benchCommand groups the benchmarks. bench kv runs here (it only needs
// the KV client); bench store and bench gossip measure a daemon's
// internals, so they live in that daemon's module as commands of their
// own (stored-bench, gossipd-bench, built into the same bin directory),
// which these subcommands run with the arguments given.
func benchCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "run a benchmark",
		Subcommands: []*cli.Command{
			benchToolCommand(e, "gossip", "gossipd-bench", "compare gossipd's membership protocol with hashicorp/memberlist"),
			benchKVCommand(e),
			benchMsgCommand(e),
			benchToolCommand(e, "store", "stored-bench", "compare stored over the bus with its engine in-process"),
			benchWatchCommand(e),
			benchWorkflowsCommand(e),
		},
	}
}

// benchToolCommand is `pleiades bench <name>`: it runs the benchmark
// command tool (found next to the pleiades binary, else on PATH) with the
// arguments given, and exits with its status.
func benchToolCommand(e *env, name, tool, usage string) *cli.Command {
	return &cli.Command{
		Name:            name,
		Usage:           usage + " (runs " + tool + ")",
		ArgsUsage:       "[" + tool + " flags]",
		Description:     "Runs " + tool + " with the arguments given; `pleiades bench " + name + " --help` lists its flags.",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			path, err := toolPath(tool)
			if err != nil {
				return err
			}
			cmd := exec.CommandContext(e.ctx, path, c.Args().Slice()...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
			err = cmd.Run()
			var xe *exec.ExitError
			if errors.As(err, &xe) && xe.ExitCode() > 0 {
				// The tool has said what went wrong: keep its status.
				return cli.Exit("", xe.ExitCode())
			}
			if err != nil {
				return fmt.Errorf("run %s: %w", path, err)
			}
			return nil
		},
	}
}

// toolPath finds the executable tool: beside the running pleiades binary
// (bin/ after `make build`), else on PATH.
func toolPath(tool string) (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), tool)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found beside the pleiades binary or on PATH (run `make build`)", tool)
}
