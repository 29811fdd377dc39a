package cli

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/version"
)

func versionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version of this pleiades binary (also --version)",
		Flags: []cli.Flag{output.Flag()},
		Action: func(c *cli.Context) error {
			f, err := format(c)
			if err != nil {
				return err
			}
			if f == output.JSON {
				return output.PrintJSON(e.stdout, map[string]string{"version": version.String(), "go": runtime.Version()})
			}
			_, err = fmt.Fprintf(e.stdout, "pleiades %s (%s)\n", version.String(), runtime.Version())
			return err
		},
	}
}
