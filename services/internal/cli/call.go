package cli

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/output"
)

// daemonFlags are the flags of a command that calls one daemon over the
// bus: --addr (node 1's bus address of daemon by default, also
// PLEIADES_<DAEMON>_ADDR), --certs-dir, --timeout and --output, then extra.
func daemonFlags(daemon string, extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		addrFlag(daemon, hostPort(spec(daemon).busPort), "the "+daemon+"'s bus `ADDR`"),
		certsDirFlag(),
		&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "bound on the whole command"},
		output.Flag(),
	}, extra...)
}

// addrEnv names the environment variable of the --addr flag of the
// commands that call daemon: the one the daemons' own flags naming that
// daemon use (raftd's --stored-addr is PLEIADES_STORED_ADDR, workflowd's
// --raft-addr PLEIADES_RAFT_ADDR), so that one variable means one daemon
// wherever it is read.
func addrEnv(daemon string) string {
	switch daemon {
	case "raftd":
		return "PLEIADES_RAFT_ADDR"
	case "gossipd":
		return "PLEIADES_GOSSIP_ADDR"
	case "clockd":
		return "PLEIADES_CLOCK_ADDR"
	case "stored":
		return "PLEIADES_STORED_ADDR"
	case "workflowd":
		return "PLEIADES_WORKFLOW_ADDR"
	case "supervisor":
		return "PLEIADES_SUPERVISOR_ADDR"
	}
	return config.EnvName(daemon + "-addr")
}

// addrFlag is the --addr flag of a command that calls daemon.
func addrFlag(daemon, value, usage string) cli.Flag {
	return &cli.StringFlag{Name: "addr", Value: value, EnvVars: []string{addrEnv(daemon)}, Usage: usage}
}

// daemonCall is what daemonFlags give a command once checked.
type daemonCall struct {
	ctx    context.Context
	cancel context.CancelFunc
	addr   string
	format string
	certs  certsChoice
}

// newDaemonCall checks --output and --addr and bounds the call by
// --timeout; the caller must call cancel.
func newDaemonCall(e *env, c *cli.Context) (*daemonCall, error) {
	f, err := format(c)
	if err != nil {
		return nil, err
	}
	addr, err := config.Addr(c, "addr")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(e.ctx, c.Duration("timeout"))
	return &daemonCall{ctx: ctx, cancel: cancel, addr: addr, format: f, certs: pickCerts(c, []string{addr})}, nil
}

// explain adds the hint of dc's failure (see certsChoice.explain).
func (dc *daemonCall) explain(err error) error { return dc.certs.explain(err, []string{dc.addr}) }
