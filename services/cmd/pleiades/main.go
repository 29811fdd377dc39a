// Command pleiades is the Pleiades command line: it runs a node's daemons
// (up, dev), shows their status and makes certificates. See package
// services/internal/cli; usage: pleiades --help.
package main

import (
	"context"
	"os"

	"github.com/pleiades-db/pleiades/services/internal/cli"
)

func main() {
	os.Exit(cli.Run(context.Background(), os.Args, os.Stdout, os.Stderr))
}
