package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/output"
)

func healthCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "health",
		Usage: "ask daemons' admin endpoints whether they are ready (exit 1 when one is not)",
		Description: "Reads /v1/status from each admin endpoint of --admin-addr (comma separated; a wildcard\n" +
			"host means loopback) and prints its daemon, node, version, readiness, failed checks and\n" +
			"addresses. Each daemon binary has the same check for one endpoint: `<daemon> health`.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "admin-addr", Usage: "admin endpoint `ADDRS` (default: the six daemons' default ones on this host)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "bound on the whole command"},
			output.Flag(),
		},
		Action: func(c *cli.Context) error {
			f, err := format(c)
			if err != nil {
				return err
			}
			if _, err := posArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			addrs := splitList(c.StringSlice("admin-addr"))
			if len(addrs) == 0 {
				for _, d := range daemonOrder {
					addrs = append(addrs, hostPort(d.adminPort))
				}
			}
			for _, a := range addrs {
				if err := config.ValidateAddr(a); err != nil {
					return &config.FlagError{Flag: "admin-addr", Value: a, Err: err}
				}
			}
			ctx, cancel := context.WithTimeout(e.ctx, c.Duration("timeout"))
			defer cancel()
			rows := fetchHealth(ctx, addrs)
			if f == "json" {
				err = output.PrintJSON(e.stdout, rows)
			} else {
				err = printHealth(e, rows)
			}
			if err != nil {
				return err
			}
			var bad []string
			for _, r := range rows {
				if !r.Ready {
					bad = append(bad, r.Addr)
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("not ready: %s", strings.Join(bad, ", "))
			}
			return nil
		},
	}
}

// healthRow is one endpoint's answer.
type healthRow struct {
	Addr  string `json:"admin_addr"`
	Ready bool   `json:"ready"`
	Error string `json:"error,omitempty"`
	*admin.Status
}

// fetchHealth reads every endpoint's status at once.
func fetchHealth(ctx context.Context, addrs []string) []healthRow {
	rows := make([]healthRow, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			rows[i] = healthRow{Addr: a}
			st, err := admin.FetchStatus(ctx, nil, daemon.DialableAddr(a))
			if err != nil {
				rows[i].Error = err.Error()
				return
			}
			rows[i].Status, rows[i].Ready = &st, st.Ready
			if !st.Ready {
				var failed []string
				for name, ch := range st.Checks {
					if !ch.OK {
						failed = append(failed, name+": "+ch.Error)
					}
				}
				sort.Strings(failed)
				rows[i].Error = strings.Join(failed, "; ")
			}
		})
	}
	wg.Wait()
	return rows
}

func printHealth(e *env, rows []healthRow) error {
	t := output.NewTable(e.stdout, "ADMIN", "DAEMON", "NODE", "VERSION", "READY", "ADDRESSES", "ERROR")
	for _, r := range rows {
		daemonName, node, ver, addrs := "-", "-", "-", "-"
		if r.Status != nil {
			daemonName, node, ver = r.Daemon, strconv.FormatUint(r.NodeID, 10), r.Version
			var parts []string
			for _, k := range sortedKeys(r.Addresses) {
				parts = append(parts, k+"="+r.Addresses[k])
			}
			addrs = dash(strings.Join(parts, " "))
		}
		t.Row(r.Addr, daemonName, node, ver, strconv.FormatBool(r.Ready), addrs, dash(r.Error))
	}
	return t.Flush()
}
