package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/logkey"
	"github.com/pleiades-db/pleiades/shared/version"
)

// Exit statuses of Main.
const (
	ExitOK      = 0 // clean stop
	ExitFailure = 1 // runtime or service failure, or a stop that overran its timeout
	ExitConfig  = 2 // bad configuration
)

// readyPollInterval is how often Main checks readiness until it first
// holds, to log "ready".
const readyPollInterval = 100 * time.Millisecond

// slowStop is how long a stop may take before Main logs what it waits for.
const slowStop = time.Second

// Service is what a daemon's Build returns: its server, started after the
// runtime and stopped before it.
type Service interface {
	// Start starts the service without blocking; ctx bounds start-up only.
	Start(ctx context.Context) error
	// Stop stops the service within ctx; it must be idempotent.
	Stop(ctx context.Context) error
	// Err delivers a fatal failure after Start; Main then stops and exits 1.
	Err() <-chan error
}

// Reloader is implemented by a Service that re-reads files of its own
// (an authorization file, say) on SIGHUP, after the node certificate.
// Reload logs what it did; a file that fails to load keeps the previous
// configuration in force.
type Reloader interface {
	Reload(why string)
}

// Spec describes a daemon binary to Main.
type Spec struct {
	// Name is the binary's and daemon's name, e.g. "raftd".
	Name string
	// Usage is a one-line description for --help.
	Usage string
	// DefaultBusAddr and DefaultAdminAddr are the --bus-addr and
	// --admin-addr defaults (see the ports table).
	DefaultBusAddr, DefaultAdminAddr string
	// Flags are the daemon's own flags, declared as plain urfave/cli
	// flags; each gets a PLEIADES_* env var and a --config file key.
	Flags []cli.Flag
	// Advertise makes Main keep "<Name>: <address>" in the node's gossip
	// metadata while the daemon runs (gossipclient.Advertise, to the
	// gossipd named by the daemon's --gossip-addr flag), so that other
	// nodes and `pleiades members` see where it listens. It is for daemons
	// that do not follow gossip themselves (raftd, clockd and msgd publish
	// their address in their own membership loops).
	Advertise bool
	// Build creates the service from the parsed flags and the runtime. It
	// registers bus handlers, ready checks and admin views, and must not
	// start anything. A *config.FlagError (or one wrapped) exits with
	// status 2; any other error with 1.
	Build func(c *cli.Context, rt *Runtime) (Service, error)
}

// Main runs the daemon described by spec until SIGTERM or SIGINT and
// exits the process; it never returns.
func Main(spec Spec) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := Run(ctx, spec, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// gossipAddr returns the daemon's --gossip-addr when Main should advertise
// its address there (see Spec.Advertise), else "".
func gossipAddr(c *cli.Context, spec Spec) string {
	if !spec.Advertise {
		return ""
	}
	for _, f := range spec.Flags {
		if slices.Contains(f.Names(), flagGossipAddr) {
			return c.String(flagGossipAddr)
		}
	}
	return ""
}

// flagGossipAddr is the flag naming a daemon's gossipd.
const flagGossipAddr = "gossip-addr"

// advertisable reports whether a bound address can be given to other
// nodes as is: not when its host is unspecified (0.0.0.0, ::).
func advertisable(addr string) (string, bool) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, false
	}
	ip := net.ParseIP(host)
	return addr, ip == nil || !ip.IsUnspecified()
}

// runError marks a failure after the configuration was accepted.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// Run is Main without the process: it runs the daemon with args (args[0]
// is the program name) until ctx is done, writing help to stdout and logs
// and errors to stderr, and returns the exit status.
func Run(ctx context.Context, spec Spec, args []string, stdout, stderr io.Writer) int {
	flags := append(config.CommonFlags(spec.DefaultBusAddr, spec.DefaultAdminAddr), spec.Flags...)
	ntf := notifier{socket: os.Getenv(notifySocketEnv)}
	app := &cli.App{
		Name:  spec.Name,
		Usage: spec.Usage,
		Flags: flags,
		Action: func(c *cli.Context) error {
			return serve(ctx, c, spec, ntf, stderr)
		},
		Commands: []*cli.Command{healthCommand(spec)},
	}
	config.Prepare(app)
	app.Version = version.String()
	app.Writer, app.ErrWriter = stdout, stderr
	app.HideHelpCommand = true
	err := app.Run(args)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", spec.Name, err)
	var re *runError
	if errors.As(err, &re) {
		var fe *config.FlagError
		if errors.As(re.err, &fe) {
			return ExitConfig
		}
		return ExitFailure
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", spec.Name)
	return ExitConfig
}

// serve is the app's action: everything after flag parsing. Errors it
// returns as *runError exit 1 (or 2 for a wrapped *config.FlagError);
// others exit 2.
func serve(ctx context.Context, c *cli.Context, spec Spec, ntf notifier, stderr io.Writer) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", c.Args().Slice())
	}
	cm, err := config.CommonFrom(c)
	if err != nil {
		return err
	}
	logger, err := logkey.New(stderr, cm.LogFormat, cm.LogLevel)
	if err != nil {
		return err
	}
	rt, err := NewRuntime(spec.Name, cm, logger)
	if err != nil {
		return &runError{err}
	}
	log := rt.Logger
	svc, err := spec.Build(c, rt)
	if err != nil {
		return &runError{fmt.Errorf("build: %w", err)}
	}
	if svc == nil {
		return &runError{errors.New("build returned no service")}
	}

	// The advertising goroutine (see Spec.Advertise) ends first at
	// a stop, so that it never sees its gossipd go.
	actx, stopAdvertising := context.WithCancel(ctx)
	advertised := make(chan struct{})
	close(advertised)
	stopAll := func(what string, cause error) error {
		if err := ntf.send("STOPPING=1"); err != nil {
			log.Warn("systemd notification failed", slog.Any(logkey.Err, err))
		}
		stopAdvertising()
		<-advertised
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cm.ShutdownTimeout)
		defer cancel()
		start := time.Now()
		// A stop slower than a second says which part it waits for (the
		// admin endpoint's own log says which requests).
		var waiting atomic.Value
		waiting.Store("the " + spec.Name + " service")
		slow := time.AfterFunc(slowStop, func() {
			log.Warn("still stopping", slog.String("waiting_for", waiting.Load().(string)), slog.Duration("after", slowStop))
		})
		defer slow.Stop()
		errs := []error{cause}
		if err := svc.Stop(sctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", spec.Name, err))
		}
		waiting.Store("the runtime (bus, then admin endpoint)")
		if err := rt.Stop(sctx); err != nil {
			errs = append(errs, fmt.Errorf("stop runtime: %w", err))
		}
		if sctx.Err() != nil {
			errs = append(errs, fmt.Errorf("stop exceeded --shutdown-timeout %v", cm.ShutdownTimeout))
		}
		err := errors.Join(errs...)
		if err != nil {
			log.Error("stopped with errors", slog.String("reason", what), slog.Any(logkey.Err, err), slog.Duration(logkey.Duration, time.Since(start)))
			return &runError{err}
		}
		log.Info("stopped", slog.String("reason", what), slog.Duration(logkey.Duration, time.Since(start)))
		return nil
	}

	if err := rt.Start(ctx); err != nil {
		return stopAll("start failed", err)
	}
	if err := svc.Start(ctx); err != nil {
		return stopAll("start failed", fmt.Errorf("start %s: %w", spec.Name, err))
	}
	if gossip := gossipAddr(c, spec); gossip != "" {
		if addr, ok := advertisable(rt.Bus.Addr().String()); ok {
			advertised = make(chan struct{})
			go func() { // owned by stopAll, which waits for it
				defer close(advertised)
				gossipclient.New(rt.Bus, gossip).Advertise(actx, spec.Name, addr, log)
			}()
		} else {
			log.Info("bus address not advertised in gossip: bound to every interface", slog.String("bus_addr", addr))
		}
	}

	// SIGHUP reloads the node certificate (a rotation; see ReloadTLS).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(readyPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-hup:
			rt.ReloadTLS("SIGHUP")
			if r, ok := svc.(Reloader); ok {
				r.Reload("SIGHUP")
			}
		case <-ctx.Done():
			log.Info("stopping", slog.String("reason", "signal"))
			return stopAll("signal", nil)
		case err := <-svc.Err():
			return stopAll("service failed", fmt.Errorf("%s failed: %w", spec.Name, err))
		case err := <-rt.Err():
			return stopAll("runtime failed", err)
		case <-tick.C:
			if ok, _ := rt.Admin.Ready(ctx); ok {
				log.Info("ready")
				tick.Stop()
				if err := ntf.send("READY=1\nSTATUS=ready"); err != nil {
					log.Warn("systemd notification failed", slog.Any(logkey.Err, err))
				}
			}
		}
	}
}
