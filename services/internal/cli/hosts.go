package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// hostAddrs are where one node's daemons listen and are reached: the
// host-wide listen, advertised and admin hosts of `up`, and per-daemon
// addresses that replace what those derive. The zero value is loopback
// everywhere (`dev`).
type hostAddrs struct {
	// listen is the host the buses facing other hosts bind (every daemon
	// but stored, which binds loopback). Default 127.0.0.1.
	listen string
	// advertise is the host other hosts dial those buses at. Default
	// listen.
	advertise string
	// admin is the host the admin endpoints bind. Default 127.0.0.1.
	admin string
	// bus, advertiseAddr and adminAddr hold per-daemon addresses given
	// with --daemon-bus-addr, --daemon-advertise-addr and
	// --daemon-admin-addr.
	bus, advertiseAddr, adminAddr map[string]string
}

// hostFlags are `up`'s flags for a node on a real host.
func hostFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen-host", Value: loopback, Usage: "`HOST` (IP) the buses of raftd, gossipd, clockd, workflowd and msgd listen on, e.g. 0.0.0.0; stored always listens on loopback"},
		&cli.StringFlag{Name: "advertise-host", Usage: "`HOST` (IP or DNS name) other hosts reach this node's buses at; the node certificate must carry it (default: --listen-host; required when that is a wildcard)"},
		&cli.StringFlag{Name: "admin-host", Value: loopback, Usage: "`HOST` (IP) the daemons' admin endpoints listen on"},
		&cli.StringSliceFlag{Name: "daemon-bus-addr", Usage: "`NAME=ADDR` bus address of one daemon instead of --listen-host and its default port (repeatable)"},
		&cli.StringSliceFlag{Name: "daemon-advertise-addr", Usage: "`NAME=ADDR` advertised bus address of one daemon instead of --advertise-host and its port (repeatable)"},
		&cli.StringSliceFlag{Name: "daemon-admin-addr", Usage: "`NAME=ADDR` admin address of one daemon instead of --admin-host and its default port (repeatable)"},
	}
}

// hostAddrsFrom reads and checks hostFlags.
func hostAddrsFrom(c *cli.Context) (hostAddrs, error) {
	h := hostAddrs{listen: c.String("listen-host"), advertise: c.String("advertise-host"), admin: c.String("admin-host")}
	for _, f := range []struct{ flag, v string }{{"listen-host", h.listen}, {"admin-host", h.admin}} {
		if net.ParseIP(f.v) == nil {
			return h, config.Usagef("invalid value %q for flag --%s: want an IP address of this host (0.0.0.0 for all)", f.v, f.flag)
		}
	}
	if h.advertise == "" {
		if net.ParseIP(h.listen).IsUnspecified() {
			return h, config.Usagef("--listen-host %s is a wildcard: give --advertise-host, the IP or DNS name other hosts reach this node at", h.listen)
		}
		h.advertise = h.listen
	}
	if err := config.ValidateAdvertiseAddr(net.JoinHostPort(h.advertise, "1")); err != nil {
		return h, config.Usagef("invalid value %q for flag --advertise-host: %v", h.advertise, err)
	}
	var err error
	if h.bus, err = daemonAddrs(c, "daemon-bus-addr", config.ValidateAddr); err != nil {
		return h, err
	}
	if h.advertiseAddr, err = daemonAddrs(c, "daemon-advertise-addr", config.ValidateAdvertiseAddr); err != nil {
		return h, err
	}
	if h.adminAddr, err = daemonAddrs(c, "daemon-admin-addr", config.ValidateAddr); err != nil {
		return h, err
	}
	if a, ok := h.bus["stored"]; ok {
		if ip := net.ParseIP(hostOf(a)); ip == nil || !ip.IsLoopback() {
			return h, config.Usagef("invalid value %q for flag --daemon-bus-addr: stored serves its own host only: give a loopback address", "stored="+a)
		}
	}
	if _, ok := h.advertiseAddr["stored"]; ok {
		return h, config.Usagef("invalid flag --daemon-advertise-addr stored=...: stored serves its own host only and is never advertised")
	}
	return h, nil
}

// daemonAddrs reads a NAME=ADDR list flag.
func daemonAddrs(c *cli.Context, flag string, check func(string) error) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range splitList(c.StringSlice(flag)) {
		name, addr, ok := strings.Cut(v, "=")
		switch {
		case !ok:
			return nil, config.Usagef("invalid value %q for flag --%s: want NAME=HOST:PORT", v, flag)
		case !isDaemon(name):
			return nil, config.Usagef("invalid value %q for flag --%s: known daemons are %s", v, flag, strings.Join(daemonNames(), ", "))
		}
		if err := check(addr); err != nil {
			return nil, config.Usagef("invalid value %q for flag --%s: %v", v, flag, err)
		}
		out[name] = addr
	}
	return out, nil
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// bus returns daemon d's bus listen address with port.
func (h hostAddrs) busAddr(d string, port int) string {
	if a, ok := h.bus[d]; ok {
		return a
	}
	host := h.listen
	if host == "" || d == "stored" {
		host = loopback
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// advertised returns daemon d's advertised bus address, "" when it is
// the bus address itself (or d is stored, which is never advertised).
func (h hostAddrs) advertised(d string, port int) string {
	if d == "stored" {
		return ""
	}
	if a, ok := h.advertiseAddr[d]; ok {
		return a
	}
	if h.advertise == "" {
		return ""
	}
	bus := h.busAddr(d, port)
	_, p, _ := net.SplitHostPort(bus)
	if a := net.JoinHostPort(h.advertise, p); a != bus {
		return a
	}
	return ""
}

// natsArgs are msgd's NATS listen and advertised hosts (its client and
// route listeners are not on the bus): the node's, when they are not
// loopback.
func (h hostAddrs) natsArgs() []string {
	var out []string
	if h.listen != "" && h.listen != loopback {
		out = append(out, "--nats-host", h.listen)
	}
	if h.advertise != "" && h.advertise != h.listen && h.advertise != loopback {
		out = append(out, "--nats-advertise-host", h.advertise)
	}
	return out
}

// admin returns daemon d's admin address with port.
func (h hostAddrs) adminAt(d string, port int) string {
	if a, ok := h.adminAddr[d]; ok {
		return a
	}
	host := h.admin
	if host == "" {
		host = loopback
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// advertisedHosts are the hosts other hosts dial this node at, which its
// certificate must carry: the advertised host and per-daemon advertised
// hosts, leaving out loopback.
func (h hostAddrs) advertisedHosts() []string {
	var out []string
	add := func(host string) {
		if ip := net.ParseIP(host); host == "" || host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return
		}
		for _, o := range out {
			if o == host {
				return
			}
		}
		out = append(out, host)
	}
	add(h.advertise)
	for _, d := range daemonNames() {
		add(hostOf(h.advertiseAddr[d]))
	}
	return out
}

// checkCertificates makes sure certsDir holds a node certificate valid for
// every advertised host, saying what to run when not.
func checkCertificates(certsDir string, h hostAddrs) error {
	missing := []string{}
	for _, f := range []string{tlsutil.CACert, tlsutil.NodeCert, tlsutil.NodeKey} {
		if _, err := os.Stat(filepath.Join(certsDir, f)); err != nil {
			missing = append(missing, f)
		}
	}
	hosts := strings.Join(append([]string{"127.0.0.1"}, h.advertisedHosts()...), ",")
	if len(missing) > 0 {
		return fmt.Errorf("no certificates in %s (missing %s): create the cluster CA once with "+
			"`pleiades cert create-ca --certs-dir CA_DIR` (keep CA_DIR private), then this host's with "+
			"`pleiades cert create-node --ca-dir CA_DIR --out-dir %s --name $(hostname) --hosts %s`; "+
			"or pass --dev for a throwaway CA of this node alone", certsDir, strings.Join(missing, ", "), certsDir, hosts)
	}
	tc, err := tlsutil.Load(certsDir)
	if err != nil {
		return fmt.Errorf("load certificates from %s: %w", certsDir, err)
	}
	for _, host := range h.advertisedHosts() {
		if err := tlsutil.CheckHost(tc, host); err != nil {
			return fmt.Errorf("certificate in %s does not match the advertised host: %w", certsDir, err)
		}
	}
	return nil
}

// local returns an address of this host's daemon at addr that another
// daemon of the host can dial (a wildcard listen address means loopback).
func local(addr string) string { return daemon.DialableAddr(addr) }
