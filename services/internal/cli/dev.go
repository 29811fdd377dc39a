package cli

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/services/internal/supervisor"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// devBallastBytes is a dev node's ballast: room enough for a full disk's
// recovery on a laptop, not the 1 GiB per node of stored's default.
const devBallastBytes = 64 << 20

func devCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "dev",
		Usage: "run a local cluster of N nodes on loopback, supervised, in the foreground",
		Description: "Node k uses the default ports plus 10*(k-1) and the data dir <data-dir>/nodeK; node 1 has\n" +
			"the default ports, so every command works against it without flags. One dev CA\n" +
			"(<data-dir>/certs) signs every node's certificate. The nodes' addresses are printed and\n" +
			"written to <data-dir>/cluster.json. Ctrl-C stops everything.",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 3, Usage: "number of nodes (1-9)"},
			&cli.StringFlag{Name: "data-dir", Value: "./data/dev", Usage: "`DIR` holding every node's data dir"},
			&cli.IntFlag{Name: "port-offset", Usage: "added to every node's ports (to run beside another cluster)"},
			&cli.StringFlag{Name: "admin-addr", Usage: "the supervisor's admin `ADDR` (default 127.0.0.1:7500 plus the port offset)"},
			&cli.Int64Flag{Name: "ballast-bytes", Value: devBallastBytes, Usage: "each node's stored ballast file (-1: stored's own default, 1% of the disk up to 1 GiB; 0: none)"},
			&cli.StringSliceFlag{Name: "daemons", Usage: "run only these daemons on each node (default all: " + strings.Join(daemonNames(), ",") + ")"},
			output.Flag(),
		}, supervisorFlags()...),
		Action: func(c *cli.Context) error {
			f, err := format(c)
			if err != nil {
				return err
			}
			count := c.Int("nodes")
			if count < 1 || count > maxDevNodes {
				return config.Usagef("invalid value %d for flag --nodes: want 1..%d", count, maxDevNodes)
			}
			base := c.Int("port-offset")
			if base < 0 || base > 20000 {
				return config.Usagef("invalid value %d for flag --port-offset: want 0..20000", base)
			}
			ballast := c.Int64("ballast-bytes")
			if ballast < -1 {
				return config.Usagef("invalid value %d for flag --ballast-bytes: want -1, 0 or a size in bytes", ballast)
			}
			if err := checkSupervisorFlags(c); err != nil {
				return err
			}
			adminAddr := c.String("admin-addr")
			if adminAddr == "" {
				adminAddr = hostPort(supervisorAdminPort + base)
			} else if err := config.ValidateAddr(adminAddr); err != nil {
				return config.Usagef("invalid value %q for flag --admin-addr: %v", adminAddr, err)
			}
			root, err := filepath.Abs(c.String("data-dir"))
			if err != nil {
				return config.Usagef("invalid value for flag --data-dir: %v", err)
			}
			bin, err := binDir(c)
			if err != nil {
				return err
			}
			log, err := newLogger(e, c)
			if err != nil {
				return err
			}
			only := map[string]bool{}
			for _, d := range splitList(c.StringSlice("daemons")) {
				if !isDaemon(d) {
					return config.Usagef("invalid value %q for flag --daemons: known daemons are %s", d, strings.Join(daemonNames(), ", "))
				}
				only[d] = true
			}
			nodes, err := devNodes(root, count, base, bin, c.String("log-format"))
			if err != nil {
				return err
			}
			for i := range nodes {
				nodes[i].only = only
				nodes[i].ballast = strconv.FormatInt(ballast, 10)
			}
			cl := clusterFile(adminAddr, nodes)
			if err := writeClusterFile(filepath.Join(root, clusterFileName), cl); err != nil {
				return err
			}
			var children []supervisor.Child
			for _, n := range nodes {
				children = append(children, n.children()...)
			}
			log.Info("daemon logs go to <data-dir>/nodeK/logs/<daemon>.log", slog.String("dir", filepath.Join(root, "node*", "logs")))
			return supervise(e.ctx, c, log, children, adminAddr, 0, func() {
				log.Info("cluster ready", slog.Int("nodes", count), slog.String("cluster_file", filepath.Join(root, "cluster.json")))
				if f == "json" {
					_ = output.PrintJSON(e.stdout, cl)
					return
				}
				printCluster(e, cl)
			})
		},
	}
}

// devNodes prepares count nodes under root: one dev CA, a data dir, node
// id and certificate per node; node k's ports are the defaults plus
// base + 10*(k-1).
func devNodes(root string, count, base int, bin, logFormat string) ([]node, error) {
	caDir := filepath.Join(root, "certs")
	if _, err := os.Stat(filepath.Join(caDir, tlsutil.CAKey)); os.IsNotExist(err) {
		if err := tlsutil.CreateCA(caDir); err != nil {
			return nil, err
		}
	}
	var nodes []node
	for k := 1; k <= count; k++ {
		dir := filepath.Join(root, "node"+strconv.Itoa(k))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
		id, err := daemon.LoadOrCreateNodeID(dir, 0)
		if err != nil {
			return nil, err
		}
		certs := filepath.Join(dir, "certs")
		// A certificate from before roles (or of another node id) is
		// issued again; each node's directory also gets an admin
		// certificate for the CLI. The CA key stays in caDir.
		if have, err := certNodeID(certs); err != nil || have != id {
			if _, err := tlsutil.CreateNode(caDir, certs, "node-"+strconv.FormatUint(id, 10), []string{loopback, "localhost"}, id); err != nil {
				return nil, err
			}
		}
		if _, err := os.Stat(filepath.Join(certs, tlsutil.AdminCert)); os.IsNotExist(err) {
			if err := tlsutil.CreateAdmin(caDir, certs, "admin"); err != nil {
				return nil, err
			}
		}
		nodes = append(nodes, node{index: k, dataDir: dir, certsDir: certs, nodeID: id, offset: base + nodePortStride*(k-1), binDir: bin, logFormat: logFormat, pprof: true})
	}
	for i := range nodes {
		for j, o := range nodes {
			if i == j {
				continue
			}
			nodes[i].clockPeers = append(nodes[i].clockPeers, o.busAddr("clockd"))
			nodes[i].raftPeers = append(nodes[i].raftPeers, o.busAddr("raftd"))
		}
		if i > 0 {
			nodes[i].join = []string{nodes[0].busAddr("gossipd")}
		}
	}
	return nodes, nil
}

// cluster is the JSON of cluster.json (pleiades dev) and node.json
// (pleiades up): what a supervisor runs. The CLI reads it to pick the
// certificates of the cluster it talks to (pickCerts).
type cluster struct {
	SupervisorAdmin string `json:"supervisor_admin"`
	// SupervisorPID is the process id of the supervisor that wrote the
	// file, to tell a running cluster from a stopped one.
	SupervisorPID int           `json:"supervisor_pid"`
	Nodes         []clusterNode `json:"nodes"`
}

type clusterNode struct {
	// Node is the node's number in a dev cluster (omitted for up).
	Node     int                      `json:"node,omitempty"`
	NodeID   uint64                   `json:"node_id,string"`
	DataDir  string                   `json:"data_dir"`
	CertsDir string                   `json:"certs_dir"`
	Daemons  map[string]daemonAddress `json:"daemons"`
}

type daemonAddress struct {
	Bus   string `json:"bus"`
	Admin string `json:"admin"`
	// NATS and NATSCluster are msgd's client and route addresses.
	NATS        string `json:"nats,omitempty"`
	NATSCluster string `json:"nats_cluster,omitempty"`
}

func clusterFile(adminAddr string, nodes []node) cluster {
	cl := cluster{SupervisorAdmin: adminAddr, SupervisorPID: os.Getpid()}
	for _, n := range nodes {
		cn := clusterNode{Node: n.index, NodeID: n.nodeID, DataDir: n.dataDir, CertsDir: n.certsDir, Daemons: map[string]daemonAddress{}}
		for _, d := range daemonOrder {
			a := daemonAddress{Bus: n.busAddr(d.name), Admin: n.adminAddr(d.name)}
			if d.name == "msgd" {
				a.NATS, a.NATSCluster = hostPort(n.natsPort()), hostPort(n.natsClusterPort())
			}
			cn.Daemons[d.name] = a
		}
		cl.Nodes = append(cl.Nodes, cn)
	}
	return cl
}

// writeClusterFile writes cl to path (atomically: a reader never sees half
// a file).
func writeClusterFile(path string, cl cluster) error {
	b, err := json.MarshalIndent(cl, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func printCluster(e *env, cl cluster) {
	t := output.NewTable(e.stdout, "NODE", "DAEMON", "BUS", "ADMIN")
	for _, n := range cl.Nodes {
		for _, d := range daemonNames() {
			a := n.Daemons[d]
			t.Row(strconv.Itoa(n.Node), d, a.Bus, a.Admin)
		}
	}
	_ = t.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
