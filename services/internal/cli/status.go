package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/services/internal/supervisor"
	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/output"
)

func statusCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show each daemon of a node: state, pid, restarts, readiness, addresses",
		Description: "Asks the node's supervisor (`pleiades up`) at --addr. When no supervisor answers, it\n" +
			"probes each daemon's default admin endpoint instead (pid and restarts are then unknown),\n" +
			"prints what it found, and exits 1.",
		Flags: []cli.Flag{
			addrFlag("supervisor", hostPort(supervisorAdminPort), "the supervisor's admin `ADDR`"),
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "bound on the whole command"},
			output.Flag(),
		},
		Action: func(c *cli.Context) error {
			f, err := format(c)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(e.ctx, c.Duration("timeout"))
			defer cancel()
			view, err := fetchDaemons(ctx, c.String("addr"))
			var noSupervisor error
			if err != nil {
				view = probeDaemons(ctx)
				view.Supervisor = ""
				view.Note = fmt.Sprintf("no supervisor at %s (%v); probed default admin endpoints", c.String("addr"), err)
				noSupervisor = fmt.Errorf("no supervisor at %s: %w\nhint: `make run` (pleiades up) starts a node, `make dev` (pleiades dev) a local cluster; --addr names another supervisor's admin address", c.String("addr"), err)
			}
			if f == "json" {
				err = output.PrintJSON(e.stdout, view)
			} else {
				err = printStatus(e.stdout, view)
			}
			return errors.Join(noSupervisor, err)
		},
	}
}

// statusView is what `status` prints.
type statusView struct {
	Supervisor string                   `json:"supervisor,omitempty"`
	Note       string                   `json:"note,omitempty"`
	Daemons    []supervisor.ChildStatus `json:"daemons"`
}

// fetchDaemons reads the supervisor's /v1/daemons.
func fetchDaemons(ctx context.Context, addr string) (statusView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/daemons", nil)
	if err != nil {
		return statusView{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return statusView{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return statusView{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return statusView{}, fmt.Errorf("GET /v1/daemons: status %d", resp.StatusCode)
	}
	var v daemonsView
	if err := json.Unmarshal(body, &v); err != nil {
		return statusView{}, fmt.Errorf("decode /v1/daemons: %w", err)
	}
	return statusView{Supervisor: addr, Daemons: v.Daemons}, nil
}

// probeDaemons asks each daemon's default admin endpoint for its status.
func probeDaemons(ctx context.Context) statusView {
	var v statusView
	n := node{}
	for _, d := range daemonOrder {
		st := supervisor.ChildStatus{Name: d.name, AdminAddr: n.adminAddr(d.name), BusAddr: n.busAddr(d.name), State: "down"}
		if s, err := admin.FetchStatus(ctx, nil, st.AdminAddr); err == nil {
			st.Ready = s.Ready
			var conds []string
			for _, name := range slices.Sorted(maps.Keys(s.Checks)) {
				if c := s.Checks[name]; c.Degraded {
					conds = append(conds, name+" degraded: "+c.Error)
				}
			}
			st.Conditions = strings.Join(conds, "\n")
			st.State = supervisor.StateStarting
			if s.Ready {
				st.State = supervisor.StateReady
			}
			if a := s.Addresses["bus"]; a != "" {
				st.BusAddr = a
			}
		} else {
			st.Detail = err.Error()
		}
		v.Daemons = append(v.Daemons, st)
	}
	return v
}

func printStatus(w io.Writer, v statusView) error {
	if v.Note != "" {
		fmt.Fprintln(w, v.Note)
	}
	t := output.NewTable(w, "DAEMON", "STATE", "PID", "RESTARTS", "READY", "BUS", "ADMIN", "LAST EXIT")
	for _, d := range v.Daemons {
		pid, restarts := "-", "-"
		if v.Supervisor != "" {
			restarts = strconv.Itoa(d.Restarts)
			if d.PID != 0 {
				pid = strconv.Itoa(d.PID)
			}
		}
		t.Row(d.Name, string(d.State), pid, restarts, strconv.FormatBool(d.Ready), dash(d.BusAddr), d.AdminAddr, dash(d.LastExit))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	// A ready daemon serving with a limitation (stored on a full disk
	// refuses writes, serves reads) says so under the table.
	for _, d := range v.Daemons {
		for _, c := range strings.Split(d.Conditions, "\n") {
			if c != "" {
				fmt.Fprintf(w, "%s: %s\n", d.Name, c)
			}
		}
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
