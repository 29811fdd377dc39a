package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/services/internal/supervisor"
	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/logkey"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/version"
)

// checkSupervisorFlags validates the flags of supervisorFlags that the
// supervisor would otherwise refuse later, naming the flag.
func checkSupervisorFlags(c *cli.Context) error {
	if d := c.Duration("timer-slack"); d < 0 || d > supervisor.MaxTimerSlack {
		return config.Usagef("invalid value %v for flag --timer-slack: want 0 to %v", d, supervisor.MaxTimerSlack)
	}
	return nil
}

// supervisorFlags are the flags `up` and `dev` share.
func supervisorFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "bin-dir", Usage: "`DIR` holding the daemon binaries (default: the directory of this pleiades binary)"},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format of the supervisor and its daemons: text or json"},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "supervisor log level: debug, info, warn or error"},
		&cli.DurationFlag{Name: "ready-timeout", Value: 60 * time.Second, Usage: "how long each daemon may take to become ready at start"},
		&cli.DurationFlag{Name: "stop-grace", Value: 10 * time.Second, Usage: "how long a daemon may take to stop after SIGTERM before SIGKILL"},
		&cli.DurationFlag{Name: "timer-slack", Value: time.Millisecond, Usage: "Linux timer slack the daemons start with: fewer wake-ups of the Go runtime, which matters on virtual machines (0: the supervisor's own)"},
	}
}

func upCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "run one node's daemons, supervised, in the foreground",
		Description: "Starts stored, gossipd, clockd, raftd, workflowd and msgd in that order, each once the\n" +
			"previous answers /readyz; restarts a daemon that dies (with backoff); SIGTERM or Ctrl-C\n" +
			"stops them in reverse order. The supervisor's own admin endpoint lists the daemons.\n\n" +
			"On a real host: --listen-host 0.0.0.0 --advertise-host <this host's IP or name> --join <another\n" +
			"host>:7403; raftd learns the other nodes from gossip. The certificates come from `pleiades cert`\n" +
			"(create-ca once, create-node per host with --hosts <advertised host>); --dev makes throwaway ones.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: "./data", Usage: "the node's data `DIR`"},
			&cli.IntFlag{Name: "port-offset", Usage: "added to every default port (bus, admin, NATS)"},
			&cli.BoolFlag{Name: "dev", Usage: "create a throwaway CA and node certificate in the certs dir when missing (without it, `pleiades cert` must have made them)"},
			&cli.StringFlag{Name: "certs-dir", Usage: "certificates `DIR`: ca.crt, node.crt, node.key (default <data-dir>/certs)"},
			&cli.StringSliceFlag{Name: "join", Usage: "gossip seeds: `HOST:PORT,...` of other nodes' gossipd buses (port 7403 by default)"},
			&cli.StringSliceFlag{Name: "daemons", Usage: "run only these daemons (default all: " + strings.Join(daemonNames(), ",") + ")"},
			&cli.StringFlag{Name: "admin-addr", Usage: "the supervisor's admin `ADDR` (default 127.0.0.1:7500 plus the port offset)"},
		}, append(hostFlags(), supervisorFlags()...)...),
		Action: func(c *cli.Context) error {
			offset := c.Int("port-offset")
			if offset < 0 || offset > 20000 {
				return config.Usagef("invalid value %d for flag --port-offset: want 0..20000", offset)
			}
			if err := checkSupervisorFlags(c); err != nil {
				return err
			}
			dataDir, err := filepath.Abs(c.String("data-dir"))
			if err != nil {
				return config.Usagef("invalid value for flag --data-dir: %v", err)
			}
			certsDir := c.String("certs-dir")
			if certsDir == "" {
				certsDir = filepath.Join(dataDir, "certs")
			}
			only := map[string]bool{}
			for _, d := range splitList(c.StringSlice("daemons")) {
				if !isDaemon(d) {
					return config.Usagef("invalid value %q for flag --daemons: known daemons are %s", d, strings.Join(daemonNames(), ", "))
				}
				only[d] = true
			}
			join := splitList(c.StringSlice("join"))
			for _, a := range join {
				if err := config.ValidateAddr(a); err != nil {
					return config.Usagef("invalid value %q for flag --join: %v", a, err)
				}
			}
			hosts, err := hostAddrsFrom(c)
			if err != nil {
				return err
			}
			adminAddr := c.String("admin-addr")
			if adminAddr == "" {
				adminAddr = net.JoinHostPort(hosts.admin, strconv.Itoa(supervisorAdminPort+offset))
			} else if err := config.ValidateAddr(adminAddr); err != nil {
				return config.Usagef("invalid value %q for flag --admin-addr: %v", adminAddr, err)
			}
			binDir, err := binDir(c)
			if err != nil {
				return err
			}
			log, err := newLogger(e, c)
			if err != nil {
				return err
			}
			if !c.Bool("dev") {
				// Before anything is created: a refused start changes nothing.
				if err := checkCertificates(certsDir, hosts); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(dataDir, 0o755); err != nil {
				return fmt.Errorf("create data dir: %w", err)
			}
			// The node id is the one the node certificate carries; a dev
			// certificate is issued for the data dir's.
			var want uint64
			if !c.Bool("dev") {
				if want, err = certNodeID(certsDir); err != nil {
					return err
				}
			}
			id, err := daemon.LoadOrCreateNodeID(dataDir, want)
			if err != nil {
				return fmt.Errorf("%w (the certificate in %s is for node %d; issue one for this data dir's node with `pleiades cert create-node --node-id <id>`)", err, certsDir, want)
			}
			if c.Bool("dev") {
				if err := tlsutil.EnsureDev(certsDir, "node-"+strconv.FormatUint(id, 10), append([]string{loopback, "localhost"}, hosts.advertisedHosts()...), id); err != nil {
					return fmt.Errorf("dev certificates: %w", err)
				}
				// Certificates kept from an earlier run may lack a new
				// advertised host.
				if err := checkCertificates(certsDir, hosts); err != nil {
					return err
				}
			}
			n := node{dataDir: dataDir, certsDir: certsDir, nodeID: id, offset: offset, binDir: binDir, join: join, only: only, logFormat: c.String("log-format"), hosts: hosts}
			if err := writeClusterFile(filepath.Join(dataDir, nodeFileName), clusterFile(adminAddr, []node{n})); err != nil {
				return err
			}
			log.Info("daemon logs go to <data-dir>/logs/<daemon>.log", slog.String("dir", filepath.Join(dataDir, "logs")))
			return supervise(e.ctx, c, log, n.children(), adminAddr, id, func() {
				log.Info("node ready", slog.String("data_dir", dataDir), slog.String("admin_addr", adminAddr), slog.Uint64("node_id", id),
					slog.String("logs", filepath.Join(dataDir, "logs")))
			})
		},
	}
}

func isDaemon(name string) bool {
	for _, d := range daemonOrder {
		if d.name == name {
			return true
		}
	}
	return false
}

// splitList flattens repeated and comma-separated list flag values.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// binDir returns --bin-dir, or the directory of the running executable,
// after checking that it holds every daemon binary.
func binDir(c *cli.Context) (string, error) {
	dir := c.String("bin-dir")
	if dir == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("locate the pleiades binary: %w", err)
		}
		dir = filepath.Dir(exe)
	}
	var missing []string
	for _, d := range daemonOrder {
		if _, err := os.Stat(filepath.Join(dir, d.name)); err != nil {
			missing = append(missing, d.name)
		}
	}
	if len(missing) > 0 {
		return "", config.Usagef("--bin-dir %s lacks %s (run `make build`)", dir, strings.Join(missing, ", "))
	}
	return dir, nil
}

func newLogger(e *env, c *cli.Context) (*slog.Logger, error) {
	level, err := config.ParseLevel(c.String("log-level"))
	if err != nil {
		return nil, config.Usagef("invalid value for flag --log-level: %v", err)
	}
	log, err := logkey.New(e.stderr, c.String("log-format"), level)
	if err != nil {
		return nil, config.Usagef("invalid value for flag --log-format: %v", err)
	}
	return log.With(slog.String("component", "supervisor")), nil
}

// supervise runs children under a supervisor with its admin endpoint at
// adminAddr until ctx ends or SIGTERM/SIGINT arrives; SIGHUP is forwarded
// to the children. nodeID is the node the supervisor runs (0 for a dev
// cluster of several), reported on /v1/status. The admin endpoint's
// /metrics has the daemons' readiness, states, restarts and exits.
func supervise(ctx context.Context, c *cli.Context, log *slog.Logger, children []supervisor.Child, adminAddr string, nodeID uint64, onReady func()) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sup, err := supervisor.New(supervisor.Config{
		Children:     children,
		ReadyTimeout: c.Duration("ready-timeout"),
		StopGrace:    c.Duration("stop-grace"),
		TimerSlack:   c.Duration("timer-slack"),
	}, supervisor.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	adm, err := admin.New(admin.Config{Addr: adminAddr}, admin.Deps{Logger: log, Gatherer: reg}, admin.Info{Daemon: "supervisor", NodeID: nodeID, Version: version.String()})
	if err != nil {
		return err
	}
	adm.AddReadyCheck("daemons", sup.Ready)
	adm.Handle("/v1/daemons", admin.JSON(func(*http.Request) (any, error) {
		return daemonsView{Daemons: sup.Status()}, nil
	}))
	if err := adm.Start(ctx); err != nil {
		return fmt.Errorf("supervisor admin endpoint: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = adm.Stop(sctx)
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-hup:
				sup.Signal(s)
			case <-done:
				return
			}
		}
	}()

	log.Info("supervisor starting", slog.String("admin_addr", adminAddr), slog.Int("daemons", len(children)))
	err = sup.Run(ctx, onReady)
	if err != nil {
		return err
	}
	if errors.Is(context.Cause(ctx), context.Canceled) {
		log.Info("supervisor stopped")
	}
	return nil
}

// daemonsView is the JSON of the supervisor's /v1/daemons.
type daemonsView struct {
	Daemons []supervisor.ChildStatus `json:"daemons"`
}
