package cli

import (
	"fmt"
	"strconv"
	"time"

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
				Name: "rotate",
				Usage: "issue a fresh certificate in place of the one in --certs-dir: same name, hosts and role " +
					"(node id, prefixes), new key and validity; the daemons using the directory present it to new " +
					"connections within seconds (or at once on SIGHUP), without a restart or dropping live ones",
				Description: "Steps: 1. `pleiades cert rotate --ca-dir CA --certs-dir DIR` on each host (node.crt; " +
					"--kind client or admin for those); 2. nothing else: daemons reload when the files change " +
					"(`systemctl reload pleiades.target` or `kill -HUP` makes it immediate). `pleiades status` warns " +
					"30 days before a certificate ends; pleiades_tls_certificate_expiry_timestamp_seconds has the date. " +
					"A new CA is not a rotation: it needs every certificate reissued and a restart.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ca-dir", Required: true, Usage: "`DIR` holding ca.crt and ca.key"},
					&cli.StringFlag{Name: "certs-dir", Required: true, Usage: "`DIR` holding the certificate to replace"},
					&cli.StringFlag{Name: "kind", Value: "node", Usage: "which certificate of the directory: node, client or admin"},
					daysFlag(),
					output.Flag(),
				},
				Action: func(c *cli.Context) error {
					if _, err := format(c); err != nil {
						return err
					}
					notAfter, err := rotate(c.String("ca-dir"), c.String("certs-dir"), c.String("kind"), c.Int("days"))
					if err != nil {
						return err
					}
					return report(e, c, map[string]string{"certs_dir": c.String("certs-dir"), "kind": c.String("kind"), "not_after": notAfter.UTC().Format(time.RFC3339)})
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

// daysFlag is the validity of the certificate a command issues.
func daysFlag() cli.Flag {
	return &cli.IntFlag{Name: "days", Value: int(tlsutil.LeafValidity / (24 * time.Hour)), Usage: "the certificate's validity in `DAYS`"}
}

// rotate reissues the certificate of kind in dir with the CA in caDir:
// same name, hosts and role, new key, valid for days.
func rotate(caDir, dir, kind string, days int) (time.Time, error) {
	var k tlsutil.Kind
	switch kind {
	case "node":
		k = tlsutil.KindNode
	case "client":
		k = tlsutil.KindClient
	case "admin":
		k = tlsutil.KindAdmin
	default:
		return time.Time{}, fmt.Errorf("--kind %q: want node, client or admin", kind)
	}
	if days <= 0 {
		return time.Time{}, fmt.Errorf("--days %d: want a positive number", days)
	}
	tc, err := tlsutil.LoadKind(dir, k)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the certificate to rotate: %w", err)
	}
	leaf, err := tlsutil.Leaf(tc)
	if err != nil {
		return time.Time{}, err
	}
	role, err := tlsutil.RoleOf(leaf)
	if err != nil {
		return time.Time{}, err
	}
	if role.Kind != k {
		return time.Time{}, fmt.Errorf("the %s certificate in %s has role %s: issue it anew with `pleiades cert create-%s`", kind, dir, role, kind)
	}
	var hosts []string
	for _, h := range leaf.DNSNames {
		if h != tlsutil.ServerName {
			hosts = append(hosts, h)
		}
	}
	for _, ip := range leaf.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	notAfter := time.Now().Add(time.Duration(days) * 24 * time.Hour)
	if err := tlsutil.CreateLeaf(caDir, dir, leaf.Subject.CommonName, hosts, role, notAfter); err != nil {
		return time.Time{}, err
	}
	return notAfter, nil
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
