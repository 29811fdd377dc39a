package config

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// Names of the flags every daemon has.
const (
	FlagConfig          = "config"
	FlagNodeID          = "node-id"
	FlagDataDir         = "data-dir"
	FlagBusAddr         = "bus-addr"
	FlagAdminAddr       = "admin-addr"
	FlagAdminTokenFile  = "admin-token-file"
	FlagPprof           = "pprof"
	FlagAdvertiseAddr   = "advertise-addr"
	FlagCertsDir        = "certs-dir"
	FlagDev             = "dev"
	FlagMaxFrameSize    = "max-frame-size"
	FlagBusTCP          = "bus-tcp"
	FlagLogFormat       = "log-format"
	FlagLogLevel        = "log-level"
	FlagShutdownTimeout = "shutdown-timeout"
)

// Defaults of the common flags that do not depend on the daemon.
const (
	DefaultDataDir      = "./data"
	DefaultMaxFrameSize = 16 << 20
	// MinMaxFrameSize is the smallest --max-frame-size accepted.
	MinMaxFrameSize        = 128 << 10
	DefaultLogFormat       = "text"
	DefaultLogLevel        = "info"
	DefaultShutdownTimeout = 10 * time.Second
)

// Common is the configuration every daemon shares. Build it with
// CommonFrom; it is passed by value and never changed afterwards.
type Common struct {
	// NodeID identifies the node; 0 means "load <DataDir>/node-id, or
	// create and persist a random non-zero one".
	NodeID uint64
	// DataDir is the node's data directory, shared by its daemons. Default ./data.
	DataDir string
	// BusAddr is the UDP address of the daemon's QUIC bus endpoint.
	BusAddr string
	// AdminAddr is the TCP address of the daemon's HTTP admin endpoint.
	AdminAddr string
	// AdminTokenFile, when set, holds the bearer token the admin
	// endpoint requires on /metrics, /v1/... and /debug/pprof/ (the file
	// must not be readable by group or others).
	AdminTokenFile string
	// Pprof serves /debug/pprof/ on the admin endpoint (off by default:
	// profiles reveal memory contents).
	Pprof bool
	// AdvertiseAddr is the bus address other hosts reach this daemon at,
	// published in gossip metadata. Empty means the bound bus address,
	// unless that is a wildcard (0.0.0.0, ::), which is never advertised.
	// Its host must not be a wildcard and its port not 0.
	AdvertiseAddr string
	// CertsDir holds ca.crt, node.crt and node.key. Default <DataDir>/certs.
	CertsDir string
	// Dev creates a CA and a node certificate in CertsDir when missing.
	Dev bool
	// MaxFrameSize bounds every bus frame, in bytes. Default 16 MiB.
	MaxFrameSize int
	// NoBusTCP turns off the bus's TCP listener on the bus port and its
	// sending of large calls over TCP (--bus-tcp=false; bus.Config.DisableTCP).
	NoBusTCP bool
	// LogFormat is "text" or "json". Default text.
	LogFormat string
	// LogLevel is the minimum level logged. Default info.
	LogLevel slog.Level
	// ShutdownTimeout bounds a graceful stop. Default 10s.
	ShutdownTimeout time.Duration
}

// CommonFlags returns the flags every daemon has, with the daemon's own
// default bus and admin addresses. The --config flag is added by NewApp
// and Prepare, not here.
func CommonFlags(defaultBusAddr, defaultAdminAddr string) []cli.Flag {
	return []cli.Flag{
		&cli.Uint64Flag{Name: FlagNodeID, Usage: "node id; 0 loads <data-dir>/node-id or creates a random one"},
		&cli.StringFlag{Name: FlagDataDir, Value: DefaultDataDir, Usage: "node data directory, shared by the node's daemons"},
		&cli.StringFlag{Name: FlagBusAddr, Value: defaultBusAddr, Usage: "UDP `ADDR` of the QUIC bus endpoint"},
		&cli.StringFlag{Name: FlagAdminAddr, Value: defaultAdminAddr, Usage: "TCP `ADDR` of the HTTP admin endpoint"},
		&cli.StringFlag{Name: FlagAdminTokenFile, Usage: "`FILE` holding a bearer token the admin endpoint requires on /metrics, /v1/... and /debug/pprof/ (mode 0600)"},
		&cli.BoolFlag{Name: FlagPprof, Usage: "serve /debug/pprof/ on the admin endpoint"},
		&cli.StringFlag{Name: FlagAdvertiseAddr, Usage: "bus `ADDR` other hosts reach this daemon at (default: --bus-addr unless it is a wildcard); the node certificate must be valid for its host"},
		&cli.StringFlag{Name: FlagCertsDir, Usage: "directory with ca.crt, node.crt, node.key (default: <data-dir>/certs)"},
		&cli.BoolFlag{Name: FlagDev, Usage: "create a CA and node certificate in the certs dir when missing"},
		&cli.IntFlag{Name: FlagMaxFrameSize, Value: DefaultMaxFrameSize, Usage: "largest bus frame, in bytes"},
		&cli.BoolFlag{Name: FlagBusTCP, Value: true, Usage: "listen on TCP at the bus port too and send calls with requests over 16 KiB over TCP (false: all on QUIC, e.g. where a firewall drops TCP)"},
		&cli.StringFlag{Name: FlagLogFormat, Value: DefaultLogFormat, Usage: "log format: text or json"},
		&cli.StringFlag{Name: FlagLogLevel, Value: DefaultLogLevel, Usage: "minimum log level: debug, info, warn or error"},
		&cli.DurationFlag{Name: FlagShutdownTimeout, Value: DefaultShutdownTimeout, Usage: "bound on a graceful stop"},
	}
}

// FlagError is an invalid configuration value; its message names the flag.
type FlagError struct {
	// Flag is the flag's name, without dashes.
	Flag string
	// Value is the rejected value.
	Value string
	// Err says what is wrong with it.
	Err error
}

// Error implements error.
func (e *FlagError) Error() string {
	return fmt.Sprintf("invalid value %q for flag --%s: %v", e.Value, e.Flag, e.Err)
}

// Unwrap returns the underlying error.
func (e *FlagError) Unwrap() error { return e.Err }

// CommonFrom reads and validates the common flags from c. Its errors are
// *FlagError values naming the flag.
func CommonFrom(c *cli.Context) (Common, error) {
	cm := Common{
		NodeID:          c.Uint64(FlagNodeID),
		DataDir:         c.String(FlagDataDir),
		BusAddr:         c.String(FlagBusAddr),
		AdminAddr:       c.String(FlagAdminAddr),
		AdminTokenFile:  c.String(FlagAdminTokenFile),
		Pprof:           c.Bool(FlagPprof),
		AdvertiseAddr:   c.String(FlagAdvertiseAddr),
		CertsDir:        c.String(FlagCertsDir),
		Dev:             c.Bool(FlagDev),
		MaxFrameSize:    c.Int(FlagMaxFrameSize),
		NoBusTCP:        !c.Bool(FlagBusTCP),
		LogFormat:       c.String(FlagLogFormat),
		ShutdownTimeout: c.Duration(FlagShutdownTimeout),
	}
	if cm.DataDir == "" {
		return Common{}, &FlagError{Flag: FlagDataDir, Value: "", Err: fmt.Errorf("must not be empty")}
	}
	if cm.CertsDir == "" {
		cm.CertsDir = filepath.Join(cm.DataDir, "certs")
	}
	if err := ValidateAddr(cm.BusAddr); err != nil {
		return Common{}, &FlagError{Flag: FlagBusAddr, Value: cm.BusAddr, Err: err}
	}
	if err := ValidateAddr(cm.AdminAddr); err != nil {
		return Common{}, &FlagError{Flag: FlagAdminAddr, Value: cm.AdminAddr, Err: err}
	}
	if cm.AdvertiseAddr != "" {
		if err := ValidateAdvertiseAddr(cm.AdvertiseAddr); err != nil {
			return Common{}, &FlagError{Flag: FlagAdvertiseAddr, Value: cm.AdvertiseAddr, Err: err}
		}
	}
	if cm.MaxFrameSize < MinMaxFrameSize {
		// Unary requests up to 64 KiB share a connection's calls stream:
		// every daemon must take frames a little over that.
		return Common{}, &FlagError{Flag: FlagMaxFrameSize, Value: strconv.Itoa(cm.MaxFrameSize), Err: fmt.Errorf("must be at least %d (128 KiB)", MinMaxFrameSize)}
	}
	switch cm.LogFormat {
	case "text", "json":
	default:
		return Common{}, &FlagError{Flag: FlagLogFormat, Value: cm.LogFormat, Err: fmt.Errorf("want text or json")}
	}
	lvl, err := ParseLevel(c.String(FlagLogLevel))
	if err != nil {
		return Common{}, &FlagError{Flag: FlagLogLevel, Value: c.String(FlagLogLevel), Err: err}
	}
	cm.LogLevel = lvl
	if cm.ShutdownTimeout <= 0 {
		return Common{}, &FlagError{Flag: FlagShutdownTimeout, Value: cm.ShutdownTimeout.String(), Err: fmt.Errorf("must be positive")}
	}
	return cm, nil
}

// ValidateAddr checks that addr is host:port with a numeric port in
// 0..65535 (0 picks a free port). The host may be empty (all interfaces).
func ValidateAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q: want a number in 0..65535", port)
	}
	return nil
}

// ValidateAdvertiseAddr checks an address other hosts are to dial:
// host:port with a host that is not a wildcard (0.0.0.0, ::, empty) and a
// port that is not 0.
func ValidateAdvertiseAddr(addr string) error {
	if err := ValidateAddr(addr); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return fmt.Errorf("host %q is a wildcard: give an address other hosts can dial", host)
	}
	if port == "0" {
		return fmt.Errorf("port 0: give the port the daemon listens on")
	}
	return nil
}

// ParseLevel parses a log level name: debug, info, warn or error (any case).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("want debug, info, warn or error")
}

// Addr returns the value of the address flag name, validated with
// ValidateAddr; a bad value is a *FlagError naming the flag.
func Addr(c *cli.Context, name string) (string, error) {
	v := c.String(name)
	if err := ValidateAddr(v); err != nil {
		return "", &FlagError{Flag: name, Value: v, Err: err}
	}
	return v, nil
}

// OptionalAddr is Addr for a flag that may be empty (the feature it
// names is then off): "" is returned as is.
func OptionalAddr(c *cli.Context, name string) (string, error) {
	if c.String(name) == "" {
		return "", nil
	}
	return Addr(c, name)
}

// AddrList reads a list-of-addresses flag (a string slice flag, or a
// string flag): comma separated, a slice flag also repeatable, blanks
// ignored. Each address is checked with ValidateAddr;
// a bad one is a *FlagError naming the flag and the address. An unset
// flag gives nil.
func AddrList(c *cli.Context, name string) ([]string, error) {
	vals := c.StringSlice(name)
	if s, ok := c.Value(name).(string); ok && s != "" {
		vals = []string{s}
	}
	var out []string
	for _, v := range vals {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if err := ValidateAddr(a); err != nil {
				return nil, &FlagError{Flag: name, Value: a, Err: err}
			}
			out = append(out, a)
		}
	}
	return out, nil
}
