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
		Usage: "create the cluster CA and the node, client and admin certificates of the bus (mutual TLS)",
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
					&cli.Uint64Flag{Name: "node-id", Usage: "the node `ID` the certificate carries (the daemons take it as theirs); 0: a random one, or the one of an existing node's <data-dir>/node-id"},
					keepExistingFlag(),
					output.Flag(),
				},
				Action: func(c *cli.Context) error {
					if _, err := format(c); err != nil {
						return err
					}
					out := c.String("out-dir")
					kept, id, err := createNode(c.String("ca-dir"), out, c.String("name"), splitList(c.StringSlice("hosts")), c.Uint64("node-id"), c.Bool("keep-existing"))
					if err != nil {
						return err
					}
					return report(e, c, map[string]string{"certs_dir": out, "name": c.String("name"), "node_id": strconv.FormatUint(id, 10), "kept": strconv.FormatBool(kept)})
				},
			},
			{
				Name: "create-client",
				Usage: "issue a client (application) certificate into --out-dir: KV, workflows and events, " +
					"optionally only keys under --prefix",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ca-dir", Required: true, Usage: "`DIR` holding ca.crt and ca.key"},
					&cli.StringFlag{Name: "out-dir", Required: true, Usage: "`DIR` for client.crt, client.key and a copy of ca.crt"},
					&cli.StringFlag{Name: "name", Required: true, Usage: "the certificate's common `NAME`, e.g. the application"},
					&cli.StringSliceFlag{Name: "prefix", Usage: "limit the certificate to keys starting with `PREFIX` (repeat for several; none: every key)"},
					output.Flag(),
				},
				Action: func(c *cli.Context) error {
					if _, err := format(c); err != nil {
						return err
					}
					var prefixes [][]byte
					for _, p := range c.StringSlice("prefix") {
						prefixes = append(prefixes, []byte(p))
					}
					out := c.String("out-dir")
					if err := tlsutil.CreateClient(c.String("ca-dir"), out, c.String("name"), prefixes); err != nil {
						return err
					}
					return report(e, c, map[string]string{"certs_dir": out, "name": c.String("name"), "role": tlsutil.ClientRole(prefixes...).String()})
				},
			},
			{
				Name:  "create-admin",
				Usage: "issue an admin (operator) certificate into --out-dir: init, ranges, status, store maintenance; the CLI uses it when the directory holds one",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ca-dir", Required: true, Usage: "`DIR` holding ca.crt and ca.key"},
					&cli.StringFlag{Name: "out-dir", Required: true, Usage: "`DIR` for admin.crt, admin.key and a copy of ca.crt (e.g. the --certs-dir the CLI uses)"},
					&cli.StringFlag{Name: "name", Value: "admin", Usage: "the certificate's common `NAME`, e.g. the operator"},
					output.Flag(),
				},
				Action: func(c *cli.Context) error {
					if _, err := format(c); err != nil {
						return err
					}
					out := c.String("out-dir")
					if err := tlsutil.CreateAdmin(c.String("ca-dir"), out, c.String("name")); err != nil {
						return err
					}
					return report(e, c, map[string]string{"certs_dir": out, "name": c.String("name"), "role": "admin"})
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
