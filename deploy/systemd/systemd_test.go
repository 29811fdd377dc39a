package systemd

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var daemons = []string{"stored", "clockd", "gossipd", "raftd", "workflowd", "msgd"}

// install runs install.sh --root into a temporary root with stand-in
// binaries and returns the root.
func install(t *testing.T) string {
	t.Helper()
	bin, root := t.TempDir(), t.TempDir()
	for _, b := range append(slices.Clone(daemons), "pleiades") {
		if err := os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("./install.sh", "--bin-dir", bin, "--root", root).CombinedOutput()
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	return root
}

// TestInstallAndVerify installs the units under a temporary root and runs
// `systemd-analyze verify` on them: any complaint (unknown key, bad value,
// missing unit or binary) fails the test, not only a non-zero exit.
func TestInstallAndVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the units are not verified (apt-get install systemd)")
	}
	root := install(t)
	units := filepath.Join(root, "etc", "systemd", "system")
	for _, f := range append(slices.Clone(daemons), "pleiades") {
		if _, err := os.Stat(filepath.Join(root, "usr", "local", "bin", f)); err != nil {
			t.Errorf("install.sh did not install %s: %v", f, err)
		}
	}
	env, err := os.ReadFile(filepath.Join(root, "etc", "pleiades", "pleiades.env"))
	if err != nil || !bytes.Contains(env, []byte("NODE_ADVERTISE_HOST=")) {
		t.Errorf("install.sh did not install pleiades.env: %v", err)
	}
	// systemd's own units (sysinit.target, ...) under the root.
	sys := "/usr/lib/systemd/system"
	if _, err := os.Stat(sys); err != nil {
		sys = "/lib/systemd/system"
	}
	if err := os.MkdirAll(filepath.Join(root, "usr", "lib", "systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", sys, filepath.Join(root, "usr", "lib", "systemd")+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", sys, err, out)
	}
	// ExecReload's kill(1), as on the hosts.
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "/bin/kill", filepath.Join(root, "bin", "kill")).CombinedOutput(); err != nil {
		t.Fatalf("copy kill: %v\n%s", err, out)
	}
	args := []string{"verify", "--man=no", "--generators=no", "--root=" + root, filepath.Join(units, "pleiades.target")}
	for _, d := range daemons {
		args = append(args, filepath.Join(units, "pleiades-"+d+".service"))
	}
	cmd := exec.Command(analyze, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil || out.Len() > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out.String())
	}
}

// unit is a unit file: section → key → values (a key may repeat).
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: bad line %q", path, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unit) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// TestUnitShape checks what every daemon unit must have: notify
// readiness, restart on failure, the timer slack, the hardening, the
// node's settings file, membership of the target and start order.
func TestUnitShape(t *testing.T) {
	after := map[string][]string{
		"stored":    nil,
		"clockd":    {"stored", "gossipd"},
		"gossipd":   nil,
		"raftd":     {"stored", "clockd", "gossipd"},
		"workflowd": {"raftd", "gossipd"},
		"msgd":      {"gossipd"},
	}
	want := map[string]string{
		"Type": "notify", "Restart": "on-failure", "TimerSlackNSec": "1ms", "User": "pleiades",
		"StateDirectory": "pleiades", "ProtectSystem": "strict", "NoNewPrivileges": "true",
		"EnvironmentFile": "/etc/pleiades/pleiades.env",
	}
	target := readUnit(t, "pleiades.target")
	for _, d := range daemons {
		name := "pleiades-" + d + ".service"
		u := readUnit(t, name)
		for k, v := range want {
			if got := u["Service"][k]; !slices.Equal(got, []string{v}) {
				t.Errorf("%s: %s=%v; want %s", name, k, got, v)
			}
		}
		if !slices.Equal(u["Unit"]["PartOf"], []string{"pleiades.target"}) || !slices.Equal(u["Install"]["WantedBy"], []string{"pleiades.target"}) {
			t.Errorf("%s: PartOf=%v WantedBy=%v; want pleiades.target", name, u["Unit"]["PartOf"], u["Install"]["WantedBy"])
		}
		for _, dep := range after[d] {
			if !slices.Contains(u.words("Unit", "After"), "pleiades-"+dep+".service") {
				t.Errorf("%s does not start after pleiades-%s", name, dep)
			}
		}
		if !slices.Contains(target.words("Unit", "Wants"), name) {
			t.Errorf("pleiades.target does not want %s", name)
		}
		exec := u.words("Service", "ExecStart")
		if len(exec) == 0 || exec[0] != "/usr/local/bin/"+d {
			t.Errorf("%s: ExecStart %v", name, exec)
		}
		// stored listens on loopback only; the others are advertised.
		bus := exec[slices.Index(exec, "--bus-addr")+1]
		if d == "stored" {
			if bus != "127.0.0.1:7401" || slices.Contains(exec, "--advertise-addr") {
				t.Errorf("%s: ExecStart %v; want stored on loopback, not advertised", name, exec)
			}
		} else if !strings.HasPrefix(bus, "${NODE_LISTEN_HOST}:") || !slices.Contains(exec, "--advertise-addr") {
			t.Errorf("%s: ExecStart %v; want the listen host and an advertised address", name, exec)
		}
	}
}

// TestInstallSysctl: install.sh installs the bus's UDP buffer limits into
// sysctl.d, at least the 7 MiB quic-go asks for (a daemon not run as root
// gets no more than these maxima).
func TestInstallSysctl(t *testing.T) {
	root := install(t)
	conf, err := os.ReadFile(filepath.Join(root, "etc", "sysctl.d", "90-pleiades.conf"))
	if err != nil {
		t.Fatalf("install.sh did not install the sysctl file: %v", err)
	}
	for _, key := range []string{"net.core.rmem_max", "net.core.wmem_max"} {
		var found bool
		for line := range strings.Lines(string(conf)) {
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.TrimSpace(k) != key {
				continue
			}
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 7<<20 {
				t.Errorf("%s = %q, want at least %d", key, strings.TrimSpace(v), 7<<20)
			}
			found = true
		}
		if !found {
			t.Errorf("sysctl file sets no %s", key)
		}
	}
}
