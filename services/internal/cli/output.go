package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/output"
)

// format reads and checks --output (see package shared/output).
func format(c *cli.Context) (string, error) { return output.Format(c) }
