package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// TestNodeChildrenOnAHost: a node listening on every interface and
// advertised at its IP gives each daemon facing other hosts that listen
// and advertised address, keeps stored on loopback, and has the daemons
// of the host dial each other on loopback.
func TestNodeChildrenOnAHost(t *testing.T) {
	n := node{dataDir: "/d", certsDir: "/d/certs", nodeID: 7, binDir: "/bin",
		hosts: hostAddrs{listen: "0.0.0.0", advertise: "10.0.0.5", admin: "127.0.0.1",
			adminAddr: map[string]string{"raftd": "0.0.0.0:9502"}, advertiseAddr: map[string]string{"msgd": "msg.example:7406"}}}
	args := map[string]string{}
	admin := map[string]string{}
	for _, c := range n.children() {
		args[c.Name] = strings.Join(c.Args, " ") + " "
		admin[c.Name] = c.AdminAddr
	}
	for _, tt := range []struct {
		daemon string
		want   []string
		absent []string
	}{
		{"stored", []string{"--bus-addr 127.0.0.1:7401 ", "--admin-addr 127.0.0.1:7501 "}, []string{"--advertise-addr"}},
		{"gossipd", []string{"--bus-addr 0.0.0.0:7403 ", "--advertise-addr 10.0.0.5:7403 "}, nil},
		{"clockd", []string{"--bus-addr 0.0.0.0:7404 ", "--advertise-addr 10.0.0.5:7404 ", "--stored-addr 127.0.0.1:7401 ", "--gossip-addr 127.0.0.1:7403 "}, nil},
		{"raftd", []string{"--bus-addr 0.0.0.0:7402 ", "--advertise-addr 10.0.0.5:7402 ", "--admin-addr 0.0.0.0:9502 ",
			"--stored-addr 127.0.0.1:7401 ", "--gossip-addr 127.0.0.1:7403 ", "--clock-addr 127.0.0.1:7404 "}, []string{"--peers"}},
		{"workflowd", []string{"--raft-addr 127.0.0.1:7402 "}, nil},
		{"msgd", []string{"--advertise-addr msg.example:7406 ", "--nats-host 0.0.0.0 ", "--nats-advertise-host 10.0.0.5 ",
			"--clock-addr 127.0.0.1:7404 ", "--raft-addr 127.0.0.1:7402 "}, nil},
	} {
		for _, w := range tt.want {
			if !strings.Contains(args[tt.daemon], w) {
				t.Errorf("%s args %q lack %q", tt.daemon, args[tt.daemon], w)
			}
		}
		for _, a := range tt.absent {
			if strings.Contains(args[tt.daemon], a) {
				t.Errorf("%s args %q hold %q", tt.daemon, args[tt.daemon], a)
			}
		}
	}
	// The supervisor polls a wildcard admin address on loopback.
	if admin["raftd"] != "127.0.0.1:9502" {
		t.Errorf("raftd polled at %s; want 127.0.0.1:9502", admin["raftd"])
	}
}

// fakeBinDir holds empty files named after the daemons, enough for up's
// bin dir check.
func fakeBinDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range daemonNames() {
		if err := os.WriteFile(filepath.Join(dir, d), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestUpHostUsageErrors(t *testing.T) {
	bin := fakeBinDir(t)
	for _, tt := range []struct {
		args []string
		flag string
	}{
		{[]string{"--listen-host", "0.0.0.0"}, "--advertise-host"},
		{[]string{"--listen-host", "nohost"}, "--listen-host"},
		{[]string{"--admin-host", "nohost"}, "--admin-host"},
		{[]string{"--advertise-host", "0.0.0.0"}, "--advertise-host"},
		{[]string{"--daemon-bus-addr", "stored=0.0.0.0:7401"}, "--daemon-bus-addr"},
		{[]string{"--daemon-bus-addr", "nosuchd=127.0.0.1:1"}, "--daemon-bus-addr"},
		{[]string{"--daemon-bus-addr", "raftd"}, "--daemon-bus-addr"},
		{[]string{"--daemon-advertise-addr", "stored=10.0.0.5:7401"}, "--daemon-advertise-addr"},
		{[]string{"--daemon-advertise-addr", "raftd=0.0.0.0:7402"}, "--daemon-advertise-addr"},
		{[]string{"--daemon-admin-addr", "raftd=x"}, "--daemon-admin-addr"},
	} {
		data := filepath.Join(t.TempDir(), "data")
		args := append([]string{"up", "--bin-dir", bin, "--data-dir", data}, tt.args...)
		code, _, stderr := run(t, args...)
		if code != ExitUsage || !strings.Contains(stderr, tt.flag) {
			t.Errorf("%q exit %d; want %d naming %s: %s", tt.args, code, ExitUsage, tt.flag, stderr)
		}
		if _, err := os.Stat(data); err == nil {
			t.Errorf("%q created the data dir", tt.args)
		}
	}
	if code, _, stderr := run(t, "init", "--min-nodes", "-1"); code != ExitUsage || !strings.Contains(stderr, "--min-nodes") {
		t.Errorf("init --min-nodes -1 exit %d; want %d naming --min-nodes: %s", code, ExitUsage, stderr)
	}
}

// TestUpNeedsCertificates: without --dev, up refuses to start a node that
// has no certificates, or one not valid for the advertised host, says
// what to run, and creates nothing.
func TestUpNeedsCertificates(t *testing.T) {
	bin := fakeBinDir(t)
	dir := t.TempDir()
	caDir, certs := filepath.Join(dir, "ca"), filepath.Join(dir, "certs")
	for _, tt := range []struct {
		name  string
		setup func()
		args  []string
		want  []string
	}{
		{"none", func() {}, nil, []string{"pleiades cert create-ca", "pleiades cert create-node", "--hosts 127.0.0.1,10.0.0.5", "--dev"}},
		{"wrong host", func() {
			if err := tlsutil.CreateCA(caDir); err != nil {
				t.Fatal(err)
			}
			if _, err := tlsutil.CreateNode(caDir, certs, "host1", []string{"10.0.0.6"}, 0); err != nil {
				t.Fatal(err)
			}
		}, nil, []string{"not for \"10.0.0.5\"", "create-node --hosts 10.0.0.5"}},
		{"wrong daemon host", func() {}, []string{"--advertise-host", "10.0.0.6", "--daemon-advertise-addr", "raftd=raft.example:7402"},
			[]string{"not for \"raft.example\""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.setup()
			data := filepath.Join(t.TempDir(), "data")
			args := append([]string{"up", "--bin-dir", bin, "--data-dir", data, "--certs-dir", certs,
				"--listen-host", "0.0.0.0", "--advertise-host", "10.0.0.5"}, tt.args...)
			code, _, stderr := run(t, args...)
			if code != ExitFailed {
				t.Fatalf("exit %d; want %d: %s", code, ExitFailed, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q: %s", w, stderr)
				}
			}
			if _, err := os.Stat(data); err == nil {
				t.Error("the refused start created the data dir")
			}
		})
	}
}
