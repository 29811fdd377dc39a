package cli

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pleiades-db/pleiades/services/internal/supervisor"
	"github.com/pleiades-db/pleiades/shared/bus"
)

// Default ports of node 1 (README's ports table). Node k of `dev` adds
// nodePortStride*(k-1) to each.
const (
	supervisorAdminPort = 7500
	nodePortStride      = 10
	maxDevNodes         = 9
	loopback            = "127.0.0.1"
)

// daemonSpec is one daemon of a node as the supervisor runs it.
type daemonSpec struct {
	name      string
	busPort   int
	adminPort int
}

// daemonOrder lists a node's daemons in start order; they stop in
// reverse. gossipd comes before clockd, which publishes its address there
// and follows the membership: stopped first, clockd no longer sees its
// gossipd go (a WARN at every shutdown).
var daemonOrder = []daemonSpec{
	{"stored", 7401, 7501},
	{"gossipd", 7403, 7503},
	{"clockd", 7404, 7504},
	{"raftd", 7402, 7502},
	{"workflowd", 7405, 7505},
	{"msgd", 7406, 7506},
}

// daemonNames returns the names in start order.
func daemonNames() []string {
	out := make([]string, len(daemonOrder))
	for i, d := range daemonOrder {
		out[i] = d.name
	}
	return out
}

// node describes one node's suite: where its data lives and its ports.
type node struct {
	// index is 1-based; 0 for a standalone `up`.
	index    int
	dataDir  string
	certsDir string
	nodeID   uint64
	offset   int
	binDir   string
	// join lists gossipd bus addresses of other nodes.
	join []string
	// clockPeers and raftPeers list other nodes' clockd and raftd addresses.
	clockPeers, raftPeers []string
	// only, if not empty, restricts the daemons started.
	only map[string]bool
	// logFormat is passed to every daemon.
	logFormat string
	// hosts are the listen, advertised and admin hosts (zero: loopback).
	hosts hostAddrs
	// pprof serves /debug/pprof/ on every daemon's admin endpoint (dev
	// clusters, for profiling benchmarks).
	pprof bool
	// ballast, if set, is stored's --ballast-bytes (dev keeps it small:
	// a node of a laptop's cluster need not hold 1 GiB back).
	ballast string
}

func hostPort(port int) string { return net.JoinHostPort(loopback, strconv.Itoa(port)) }

// busAddr, advertiseAddr and adminAddr return a daemon's addresses on
// node n (advertiseAddr "" when it is the bus address).
func (n node) busAddr(d string) string       { return n.hosts.busAddr(d, spec(d).busPort+n.offset) }
func (n node) advertiseAddr(d string) string { return n.hosts.advertised(d, spec(d).busPort+n.offset) }
func (n node) adminAddr(d string) string     { return n.hosts.adminAt(d, spec(d).adminPort+n.offset) }

// localBus is the address another daemon of node n dials d's bus at.
func (n node) localBus(d string) string { return local(n.busAddr(d)) }

func spec(name string) daemonSpec {
	for _, d := range daemonOrder {
		if d.name == name {
			return d
		}
	}
	panic("cli: unknown daemon " + name) // names come from daemonOrder only
}

// children returns the supervisor's children for node n, in start order.
func (n node) children() []supervisor.Child {
	var out []supervisor.Child
	for _, d := range daemonOrder {
		if len(n.only) > 0 && !n.only[d.name] {
			continue
		}
		args := []string{
			"--data-dir", n.dataDir,
			"--certs-dir", n.certsDir,
			"--node-id", strconv.FormatUint(n.nodeID, 10),
			"--bus-addr", n.busAddr(d.name),
			"--admin-addr", n.adminAddr(d.name),
		}
		if a := n.advertiseAddr(d.name); a != "" {
			args = append(args, "--advertise-addr", a)
		}
		if n.logFormat != "" {
			args = append(args, "--log-format", n.logFormat)
		}
		if n.pprof {
			args = append(args, "--pprof")
		}
		args = append(args, n.daemonArgs(d.name)...)
		name := d.name
		if n.index > 0 {
			name = fmt.Sprintf("node%d/%s", n.index, d.name)
		}
		out = append(out, supervisor.Child{
			Name:      name,
			Path:      filepath.Join(n.binDir, d.name),
			Args:      args,
			AdminAddr: local(n.adminAddr(d.name)),
			BusAddr:   n.busAddr(d.name),
			LogFile:   filepath.Join(n.dataDir, "logs", d.name+".log"),
		})
	}
	return out
}

// NATS ports of node 1 (msgd's client and route listeners); they shift
// with the node's offset like the other ports, and stay clear of every
// bus and admin port of the cluster (TestPortsDisjoint).
const (
	natsPort        = 4222
	natsClusterPort = 6222
)

func (n node) natsPort() int        { return natsPort + n.offset }
func (n node) natsClusterPort() int { return natsClusterPort + n.offset }

// daemonArgs are the cross-daemon flags of one daemon.
func (n node) daemonArgs(d string) []string {
	list := func(flag string, addrs []string) []string {
		if len(addrs) == 0 {
			return nil
		}
		return []string{flag, strings.Join(addrs, ",")}
	}
	switch d {
	case "stored":
		if n.ballast != "" {
			return []string{"--ballast-bytes", n.ballast}
		}
	case "clockd":
		return append([]string{"--stored-addr", n.localBus("stored"), "--gossip-addr", n.localBus("gossipd")}, list("--peers", n.clockPeers)...)
	case "gossipd":
		return list("--join", n.join)
	case "raftd":
		args := []string{"--stored-addr", n.localBus("stored"), "--gossip-addr", n.localBus("gossipd"), "--clock-addr", n.localBus("clockd")}
		// The stored this supervisor starts listens on its default local
		// socket (stored --local-socket), unless the data dir is too deep
		// for a Unix socket path (it logs that and skips it).
		if sock := filepath.Join(n.dataDir, "stored", "stored.sock"); (len(n.only) == 0 || n.only["stored"]) && len(sock) <= bus.MaxSocketPath {
			args = append(args, "--stored-socket", sock)
		}
		return append(args, list("--peers", n.raftPeers)...)
	case "workflowd":
		return []string{"--raft-addr", n.localBus("raftd"), "--gossip-addr", n.localBus("gossipd")}
	case "msgd":
		return append([]string{"--gossip-addr", n.localBus("gossipd"), "--clock-addr", n.localBus("clockd"), "--raft-addr", n.localBus("raftd"), "--store-addr", n.localBus("stored"), "--workflow-addr", n.localBus("workflowd"),
			"--nats-port", strconv.Itoa(n.natsPort()), "--nats-cluster-port", strconv.Itoa(n.natsClusterPort())}, n.hosts.natsArgs()...)
	}
	return nil
}
