package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/services/internal/supervisor"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), append([]string{"pleiades"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestNodeChildren(t *testing.T) {
	n := node{index: 2, dataDir: "/d/node2", certsDir: "/d/node2/certs", nodeID: 42, offset: 10, binDir: "/bin",
		join: []string{"127.0.0.1:7403"}, clockPeers: []string{"127.0.0.1:7404"}, raftPeers: []string{"127.0.0.1:7402", "127.0.0.1:7422"}}
	ch := n.children()
	var names []string
	for _, c := range ch {
		names = append(names, c.Name)
	}
	want := []string{"node2/stored", "node2/gossipd", "node2/clockd", "node2/raftd", "node2/workflowd", "node2/msgd"}
	if !slices.Equal(names, want) {
		t.Fatalf("children = %v; want %v", names, want)
	}
	byName := map[string]supervisor.Child{}
	for _, c := range ch {
		byName[strings.TrimPrefix(c.Name, "node2/")] = c
	}
	for _, tt := range []struct {
		daemon, bus, admin string
		args               []string
	}{
		{"stored", "127.0.0.1:7411", "127.0.0.1:7511", []string{"--node-id 42", "--data-dir /d/node2", "--certs-dir /d/node2/certs"}},
		{"clockd", "127.0.0.1:7414", "127.0.0.1:7514", []string{"--stored-addr 127.0.0.1:7411", "--gossip-addr 127.0.0.1:7413", "--peers 127.0.0.1:7404"}},
		{"gossipd", "127.0.0.1:7413", "127.0.0.1:7513", []string{"--join 127.0.0.1:7403"}},
		{"raftd", "127.0.0.1:7412", "127.0.0.1:7512", []string{"--clock-addr 127.0.0.1:7414", "--peers 127.0.0.1:7402,127.0.0.1:7422", "--stored-socket /d/node2/stored/stored.sock"}},
		{"workflowd", "127.0.0.1:7415", "127.0.0.1:7515", []string{"--raft-addr 127.0.0.1:7412"}},
		{"msgd", "127.0.0.1:7416", "127.0.0.1:7516", []string{"--nats-port 4232", "--nats-cluster-port 6232", "--gossip-addr 127.0.0.1:7413", "--clock-addr 127.0.0.1:7414", "--raft-addr 127.0.0.1:7412"}},
	} {
		c := byName[tt.daemon]
		if c.BusAddr != tt.bus || c.AdminAddr != tt.admin {
			t.Errorf("%s: bus %s admin %s; want %s %s", tt.daemon, c.BusAddr, c.AdminAddr, tt.bus, tt.admin)
		}
		if c.Path != "/bin/"+tt.daemon || c.LogFile != "/d/node2/logs/"+tt.daemon+".log" {
			t.Errorf("%s: path %s log %s", tt.daemon, c.Path, c.LogFile)
		}
		args := strings.Join(c.Args, " ")
		for _, a := range append(tt.args, "--bus-addr "+tt.bus, "--admin-addr "+tt.admin) {
			if !strings.Contains(args, a) {
				t.Errorf("%s args %q lack %q", tt.daemon, args, a)
			}
		}
	}
	// dev's small ballast reaches stored; without one stored keeps its default.
	n.ballast = "67108864"
	if args := strings.Join(n.children()[0].Args, " "); !strings.Contains(args, "--ballast-bytes 67108864") {
		t.Errorf("stored args %q lack the ballast", args)
	}
	n.ballast = ""
	if args := strings.Join(n.children()[0].Args, " "); strings.Contains(args, "--ballast-bytes") {
		t.Errorf("stored args %q name a ballast nobody asked for", args)
	}
	only := node{only: map[string]bool{"stored": true, "raftd": true}}
	if got := len(only.children()); got != 2 {
		t.Errorf("--daemons stored,raftd gives %d children; want 2", got)
	}
	// raftd names stored's local socket only when this supervisor starts
	// stored and the path fits a Unix socket.
	for _, tt := range []struct {
		n    node
		want bool
	}{
		{node{dataDir: "/d", only: map[string]bool{"raftd": true}}, false},
		{node{dataDir: "/" + strings.Repeat("d", 100)}, false},
		{node{dataDir: "/d"}, true},
	} {
		for _, c := range tt.n.children() {
			if strings.HasSuffix(c.Name, "raftd") && strings.Contains(strings.Join(c.Args, " "), "--stored-socket") != tt.want {
				t.Errorf("data dir %.20s, daemons %v: raftd args %q; want --stored-socket: %v", tt.n.dataDir, tt.n.only, c.Args, tt.want)
			}
		}
	}
}

func TestDevNodes(t *testing.T) {
	root := t.TempDir()
	nodes, err := devNodes(root, 3, 0, "/bin", "text")
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 3 {
		t.Fatalf("%d nodes", len(nodes))
	}
	ids := map[uint64]bool{}
	for i, n := range nodes {
		if n.offset != 10*i || ids[n.nodeID] || n.nodeID == 0 {
			t.Errorf("node %d: offset %d id %d", i+1, n.offset, n.nodeID)
		}
		ids[n.nodeID] = true
		if len(n.raftPeers) != 2 || len(n.clockPeers) != 2 {
			t.Errorf("node %d peers %v %v", i+1, n.raftPeers, n.clockPeers)
		}
		if _, err := tlsutil.Load(n.certsDir); err != nil {
			t.Errorf("node %d certs: %v", i+1, err)
		}
	}
	if len(nodes[0].join) != 0 || nodes[2].join[0] != "127.0.0.1:7403" {
		t.Errorf("join: node1 %v node3 %v", nodes[0].join, nodes[2].join)
	}
	// A second preparation keeps ids and certificates.
	again, err := devNodes(root, 3, 0, "/bin", "text")
	if err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		if again[i].nodeID != nodes[i].nodeID {
			t.Errorf("node %d id changed: %d -> %d", i+1, nodes[i].nodeID, again[i].nodeID)
		}
	}
	cl := clusterFile("127.0.0.1:7500", nodes)
	if got := cl.Nodes[1].Daemons["raftd"]; got.Bus != "127.0.0.1:7412" || got.Admin != "127.0.0.1:7512" {
		t.Errorf("cluster node2 raftd = %+v", got)
	}
	if cl.Nodes[1].CertsDir != nodes[1].certsDir || cl.SupervisorPID != os.Getpid() {
		t.Errorf("cluster node2 certs %q, supervisor pid %d; want %q and this process", cl.Nodes[1].CertsDir, cl.SupervisorPID, nodes[1].certsDir)
	}
	if got := cl.Nodes[2].Daemons["msgd"]; got.NATS != "127.0.0.1:4242" || got.NATSCluster != "127.0.0.1:6242" {
		t.Errorf("cluster node3 msgd = %+v; want NATS 4242, routes 6242", got)
	}
}

// TestPortsDisjoint: for any base offset, no two nodes of a dev cluster
// (up to the maximum) share a port, NATS ports included.
func TestPortsDisjoint(t *testing.T) {
	for _, base := range []int{0, 1400, 3400, 6000, 6900, 20000} {
		seen := map[int]string{}
		for k := range maxDevNodes {
			n := node{index: k + 1, offset: base + nodePortStride*k}
			ports := map[string]int{"supervisor": supervisorAdminPort + base, "nats": n.natsPort(), "nats-cluster": n.natsClusterPort()}
			for _, d := range daemonOrder {
				ports[d.name+" bus"], ports[d.name+" admin"] = d.busPort+n.offset, d.adminPort+n.offset
			}
			for what, p := range ports {
				if what == "supervisor" && k > 0 {
					continue
				}
				id := fmt.Sprintf("node%d %s", k+1, what)
				if other, dup := seen[p]; dup {
					t.Errorf("base %d: port %d is both %s and %s", base, p, other, id)
				}
				seen[p] = id
			}
		}
	}
}

func TestCertCommands(t *testing.T) {
	dir := t.TempDir()
	ca, out := filepath.Join(dir, "ca"), filepath.Join(dir, "n1")
	if code, _, stderr := run(t, "cert", "create-ca", "--certs-dir", ca); code != 0 {
		t.Fatalf("create-ca exit %d: %s", code, stderr)
	}
	if code, _, _ := run(t, "cert", "create-ca", "--certs-dir", ca); code != ExitFailed {
		t.Errorf("second create-ca exit %d; want %d", code, ExitFailed)
	}
	code, stdout, stderr := run(t, "cert", "create-node", "--ca-dir", ca, "--out-dir", out, "--name", "n1", "--hosts", "127.0.0.1,localhost", "--output", "json")
	if code != 0 {
		t.Fatalf("create-node exit %d: %s", code, stderr)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got["certs_dir"] != out {
		t.Errorf("create-node json = %q (%v)", stdout, err)
	}
	if _, err := tlsutil.Load(out); err != nil {
		t.Errorf("load issued certs: %v", err)
	}
	if code, _, _ := run(t, "cert", "create-node", "--ca-dir", filepath.Join(dir, "nope"), "--out-dir", out, "--name", "x"); code != ExitFailed {
		t.Errorf("create-node without CA exit %d; want 1", code)
	}
	if code, stdout, stderr := run(t, "cert", "create-node", "--ca-dir", ca, "--out-dir", filepath.Join(dir, "n7"), "--name", "n7", "--node-id", "7", "--output", "json"); code != 0 || !strings.Contains(stdout, `"node_id": "7"`) {
		t.Errorf("create-node --node-id 7: exit %d, %s %s", code, stdout, stderr)
	}

	// Roles: a client limited to prefixes, an admin; the CLI prefers admin.crt.
	if code, _, stderr := run(t, "cert", "create-client", "--ca-dir", ca, "--out-dir", out, "--name", "app", "--prefix", "app/", "--prefix", "tmp/"); code != 0 {
		t.Fatalf("create-client exit %d: %s", code, stderr)
	}
	if code, _, stderr := run(t, "cert", "create-admin", "--ca-dir", ca, "--out-dir", out); code != 0 {
		t.Fatalf("create-admin exit %d: %s", code, stderr)
	}
	for k, want := range map[tlsutil.Kind]string{tlsutil.KindClient: `client (prefixes "app/", "tmp/")`, tlsutil.KindAdmin: "admin"} {
		tc, err := tlsutil.LoadKind(out, k)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := tlsutil.RoleOfConfig(tc); err != nil || r.String() != want {
			t.Errorf("%s certificate role %v, %v; want %s", k, r, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(out, tlsutil.CAKey)); err == nil {
		t.Error("the CA key was copied to a certificates directory")
	}

	// Rotation keeps the name, hosts and role, with a new key and validity.
	before, err := tlsutil.LoadKind(out, tlsutil.KindNode)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = run(t, "cert", "rotate", "--ca-dir", ca, "--certs-dir", out, "--days", "90", "--output", "json")
	if code != 0 {
		t.Fatalf("rotate exit %d: %s", code, stderr)
	}
	after, err := tlsutil.LoadKind(out, tlsutil.KindNode)
	if err != nil {
		t.Fatal(err)
	}
	bl, _ := tlsutil.Leaf(before)
	al, _ := tlsutil.Leaf(after)
	br, _ := tlsutil.RoleOf(bl)
	ar, _ := tlsutil.RoleOf(al)
	if ar.String() != br.String() || al.Subject.CommonName != "n1" || tlsutil.CheckHost(after, "localhost") != nil || tlsutil.CheckHost(after, "127.0.0.1") != nil ||
		bytes.Equal(al.Raw, bl.Raw) || al.NotAfter.Sub(time.Now()) > 91*24*time.Hour {
		t.Errorf("rotated certificate %s %v until %v (%s); want n1 %v, same hosts, 90 days", al.Subject.CommonName, ar, al.NotAfter, stdout, br)
	}
	if code, _, _ := run(t, "cert", "rotate", "--ca-dir", ca, "--certs-dir", out, "--kind", "bogus"); code != ExitFailed {
		t.Errorf("rotate --kind bogus exit %d; want %d", code, ExitFailed)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"status", "--output", "yaml"},
		{"status", "--no-such-flag"},
		{"cert", "create-ca"},
		{"dev", "--nodes", "12", "--bin-dir", "/nonexistent"},
		{"up", "--daemons", "stored,nosuchd", "--bin-dir", "/nonexistent"},
		{"up", "--port-offset", "-5"},
		{"up", "--join", "nohost", "--bin-dir", "/nonexistent"},
		{"dev", "--ballast-bytes", "-5", "--bin-dir", "/nonexistent"},
		{"events", "--since", "yesterday"},
	} {
		if code, _, stderr := run(t, args...); code != ExitUsage {
			t.Errorf("%q exit %d; want %d (%s)", args, code, ExitUsage, stderr)
		}
	}
	// A bad timer slack is named (before the bin dir is looked at).
	for _, args := range [][]string{{"up", "--timer-slack", "1s"}, {"dev", "--timer-slack", "-1ms"}} {
		if code, _, stderr := run(t, args...); code != ExitUsage || !strings.Contains(stderr, "--timer-slack") {
			t.Errorf("%q exit %d; want %d naming --timer-slack (%s)", args, code, ExitUsage, stderr)
		}
	}
	// A bin dir without the daemons is named.
	_, _, stderr := run(t, "up", "--bin-dir", t.TempDir(), "--data-dir", t.TempDir())
	if !strings.Contains(stderr, "lacks stored") {
		t.Errorf("missing binaries not named: %q", stderr)
	}
}

func TestStatusFromSupervisor(t *testing.T) {
	view := daemonsView{Daemons: []supervisor.ChildStatus{
		{Name: "stored", State: supervisor.StateReady, PID: 100, Ready: true, AdminAddr: "127.0.0.1:7501", BusAddr: "127.0.0.1:7401",
			Conditions: "disk degraded: disk full on node 1 (free 20.0 MiB of 200.0 MiB, floor 50.0 MiB, ballast released)"},
		{Name: "raftd", State: supervisor.StateBackoff, Restarts: 3, AdminAddr: "127.0.0.1:7502", LastExit: "signal: killed"},
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/daemons" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(view)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	code, stdout, stderr := run(t, "status", "--addr", addr, "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got statusView
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout)
	}
	if got.Supervisor != addr || len(got.Daemons) != 2 || got.Daemons[1].Restarts != 3 || !got.Daemons[0].Ready {
		t.Errorf("status json = %+v", got)
	}
	code, stdout, _ = run(t, "status", "--addr", addr)
	if code != 0 {
		t.Fatalf("table exit %d", code)
	}
	for _, want := range []string{"DAEMON", "stored", "ready", "100", "raftd", "backoff", "signal: killed",
		"\nstored: disk degraded: disk full on node 1 (free 20.0 MiB of 200.0 MiB"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}

func TestStatusWithoutSupervisor(t *testing.T) {
	// Nothing listens on this port; status falls back to probing and says so.
	code, stdout, stderr := run(t, "status", "--addr", "127.0.0.1:1", "--output", "json", "--timeout", "2s")
	if code != ExitFailed || !strings.Contains(stderr, "no supervisor at 127.0.0.1:1") || !strings.Contains(stderr, "hint:") {
		t.Fatalf("exit %d, stderr %q; want 1 saying no supervisor answered, with a hint", code, stderr)
	}
	var got statusView
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if got.Note == "" || len(got.Daemons) != 6 {
		t.Errorf("fallback view = %+v", got)
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// TestAddrEnvPerDaemon: PLEIADES_<DAEMON>_ADDR aims the commands that call
// that daemon, and only them (PLEIADES_ADDR used to mean raftd for kv,
// gossipd for members, clockd for clock...).
func TestAddrEnvPerDaemon(t *testing.T) {
	certs := filepath.Join(t.TempDir(), "certs")
	if err := tlsutil.EnsureDev(certs, "node-1", []string{"127.0.0.1"}, 1); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PLEIADES_RAFT_ADDR", "127.0.0.1:2")
	t.Setenv("PLEIADES_GOSSIP_ADDR", "127.0.0.1:3")
	t.Setenv("PLEIADES_CLOCK_ADDR", "127.0.0.1:4")
	t.Setenv("PLEIADES_STORED_ADDR", "127.0.0.1:5")
	t.Setenv("PLEIADES_ADDR", "127.0.0.1:6")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"kv", "get", "--certs-dir", certs, "k"}, "127.0.0.1:2"},
		{[]string{"ranges", "--certs-dir", certs}, "127.0.0.1:2"},
		{[]string{"members", "--certs-dir", certs}, "127.0.0.1:3"},
		{[]string{"clock", "--certs-dir", certs}, "127.0.0.1:4"},
		{[]string{"store", "stats", "--certs-dir", certs}, "127.0.0.1:5"},
	} {
		_, _, errOut := run(t, tt.args...)
		if !strings.Contains(errOut, "nothing listens at "+tt.want) {
			t.Errorf("%q: %q; want a call to %s", tt.args, errOut, tt.want)
		}
	}
}

// TestUsageErrorsSayWhatIsAccepted: a mistyped command, flag or value is
// named as typed, with what is accepted, and exits 2.
func TestUsageErrorsSayWhatIsAccepted(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"frob"}, `unknown command "frob" for ` + "`pleiades`" + `; commands: bench, cert, clock, deploy, dev, events, health, init, kv, members, node, range, ranges, status, store, up, version`},
		{[]string{"kv", "frob"}, `unknown command "frob" for ` + "`pleiades kv`" + `; commands: cas, del, get, put, scan`},
		{[]string{"kv", "get", "--bogus", "k"}, "unknown flag --bogus for `pleiades kv get` (see `pleiades kv get --help`)"},
		{[]string{"kv", "get", "--timeout", "abc", "k"}, `invalid value "abc" for flag --timeout: want a duration such as 500ms, 5s or 1m30s`},
		{[]string{"kv", "scan", "--limit", "many"}, `invalid value "many" for flag --limit: want a whole number`},
		{[]string{"members", "--all=maybe"}, `invalid value "maybe" for flag --all: want true or false`},
	} {
		code, _, stderr := run(t, tt.args...)
		if code != ExitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, %q; want %d and %q", tt.args, code, stderr, ExitUsage, tt.want)
		}
	}
	code, stdout, stderr := run(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "pleiades ") {
		t.Errorf("version: exit %d, %q %q", code, stdout, stderr)
	}
	if code, stdout, _ := run(t, "version", "-o", "json"); code != 0 || !strings.Contains(stdout, `"version"`) {
		t.Errorf("version -o json: exit %d, %q", code, stdout)
	}
}
