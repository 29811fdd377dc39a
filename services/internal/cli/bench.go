package cli

import "github.com/urfave/cli/v2"

// benchCommand groups the benchmarks; each subcommand's code lives in
// services/internal/bench/<name>.
func benchCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "run a benchmark",
		Subcommands: []*cli.Command{
			benchGossipCommand(e),
			benchKVCommand(e),
			benchMsgCommand(e),
			benchNATSServerCommand(e),
			benchStoreCommand(e),
			benchWorkflowsCommand(e),
		},
	}
}
