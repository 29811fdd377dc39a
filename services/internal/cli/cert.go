package cli

import (
	"fmt"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

func certCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "cert",
		Usage: "create the cluster CA and node certificates for the bus (mutual TLS)",
		Subcommands: []*cli.Command{
			{
				Name:  "create-ca",
				Usage: "create a cluster CA (ca.crt, ca.key) in --certs-dir",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "certs-dir", Required: true, Usage: "`DIR` for ca.crt and ca.key (keep ca.key private)"},
					keepExistingFlag(),
					output.Flag(),
				},
				Action: func(c *cli.Context) error {
					if _, err := format(c); err != nil {
						return err
					}
					dir := c.String("certs-dir")
					kept, err := createCA(dir, c.Bool("keep-existing"))
					if err != nil {
						return err
					}
					return report(e, c, map[string]string{"ca_dir": dir, "ca_cert": dir + "/" + tlsutil.CACert, "kept": strconv.FormatBool(kept)})
				},
			},
			{
				Name:  "create-node",
				Usage: "issue a node certificate signed by the CA in --ca-dir into --out-dir",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ca-dir", Required: true, Usage: "`DIR` holding ca.crt and ca.key"},
					&cli.StringFlag{Name: "out-dir", Required: true, Usage: "`DIR` for node.crt, node.key and a copy of ca.crt (a node's --certs-dir)"},
					&cli.StringFlag{Name: "name", Required: true, Usage: "the certificate's common `NAME`, e.g. the host name"},
					&cli.StringSliceFlag{Name: "hosts", Usage: "IP addresses or DNS names the certificate is valid for: every address the node is advertised at"},
					keepExistingFlag(),
					output.Flag(),
				},
				Action: func(c *cli.Context) error {
					if _, err := format(c); err != nil {
						return err
					}
					out := c.String("out-dir")
					kept, err := createNode(c.String("ca-dir"), out, c.String("name"), splitList(c.StringSlice("hosts")), c.Bool("keep-existing"))
					if err != nil {
						return err
					}
					return report(e, c, map[string]string{"certs_dir": out, "name": c.String("name"), "kept": strconv.FormatBool(kept)})
				},
			},
		},
	}
}

// report prints a small result as JSON or as key: value lines.
func report(e *env, c *cli.Context, kv map[string]string) error {
	if c.String("output") == "json" {
		return output.PrintJSON(e.stdout, kv)
	}
	t := output.NewTable(e.stdout, "KEY", "VALUE")
	for _, k := range sortedKeys(kv) {
		t.Row(k, kv[k])
	}
	if err := t.Flush(); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	return nil
}
