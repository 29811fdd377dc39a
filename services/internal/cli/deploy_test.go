package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// TestComposeFileIsGenerated: the committed docker-compose.yml is exactly
// `pleiades deploy compose --hosts 3` (make compose regenerates it).
func TestComposeFileIsGenerated(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("..", "..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	code, got, stderr := run(t, "deploy", "compose", "--hosts", "3")
	if code != ExitOK {
		t.Fatalf("deploy compose exit %d: %s", code, stderr)
	}
	if got != string(want) {
		t.Errorf("docker-compose.yml differs from `pleiades deploy compose --hosts 3`: run `make compose`")
	}
}

// composeFile is the part of a compose file the tests read.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		NetworkMode string            `yaml:"network_mode"`
		Hostname    string            `yaml:"hostname"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
		Restart     string            `yaml:"restart"`
		Profiles    []string          `yaml:"profiles"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Networks map[string]struct {
			IPv4 string `yaml:"ipv4_address"`
		} `yaml:"networks"`
	} `yaml:"services"`
	Volumes  map[string]any `yaml:"volumes"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
}

func generateCompose(t *testing.T, args ...string) (string, composeFile) {
	t.Helper()
	code, out, stderr := run(t, append([]string{"deploy", "compose"}, args...)...)
	if code != ExitOK {
		t.Fatalf("deploy compose %q exit %d: %s", args, code, stderr)
	}
	var f composeFile
	if err := yaml.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("deploy compose %q: not YAML: %v", args, err)
	}
	return out, f
}

// TestComposeLayout checks the generated file for five hosts on a subnet:
// every daemon of a host is its own service in the host's namespace, on
// the host's volume, listening as a host would (stored on loopback only),
// advertised at the host's address and started after what it needs.
func TestComposeLayout(t *testing.T) {
	_, f := generateCompose(t, "--hosts", "5", "--subnet", "172.28.9.0/24", "--publish-admin=false", "--tag", "v1")
	deps := map[string][]string{"stored": nil, "clockd": {"stored"}, "gossipd": nil, "raftd": {"stored", "clockd", "gossipd"},
		"workflowd": {"raftd", "gossipd"}, "msgd": {"gossipd"}}
	wantVolumes := []string{"ca", "cli"}
	for k := 1; k <= 5; k++ {
		h := fmt.Sprintf("host%d", k)
		ip := fmt.Sprintf("172.28.9.%d", 10+k)
		wantVolumes = append(wantVolumes, h)
		ns, ok := f.Services[h]
		if !ok || ns.Image != "pleiades/hostns:v1" || ns.Hostname != h || ns.Networks["default"].IPv4 != ip || len(ns.Ports) != 0 {
			t.Errorf("%s: %+v", h, ns)
		}
		certs := f.Services[h+"-certs"]
		if !slices.Contains(certs.Command, h+","+ip) || certs.DependsOn["ca"].Condition != "service_completed_successfully" {
			t.Errorf("%s-certs: %+v", h, certs)
		}
		for _, d := range daemonOrder {
			name := h + "-" + d.name
			s, ok := f.Services[name]
			if !ok {
				t.Errorf("no service %s", name)
				continue
			}
			if s.Image != "pleiades/"+d.name+":v1" || s.NetworkMode != "service:"+h || !slices.Equal(s.Volumes, []string{h + ":/data"}) || s.Restart != "unless-stopped" {
				t.Errorf("%s: image %s network %s volumes %v restart %s", name, s.Image, s.NetworkMode, s.Volumes, s.Restart)
			}
			bus, adv := s.Environment["PLEIADES_BUS_ADDR"], s.Environment["PLEIADES_ADVERTISE_ADDR"]
			if d.name == "stored" {
				if bus != "127.0.0.1:7401" || adv != "" {
					t.Errorf("%s: bus %q advertised %q; want loopback, not advertised", name, bus, adv)
				}
			} else if bus != fmt.Sprintf("0.0.0.0:%d", d.busPort) || adv != fmt.Sprintf("%s:%d", ip, d.busPort) {
				t.Errorf("%s: bus %q advertised %q", name, bus, adv)
			}
			if s.DependsOn[h].Condition != "service_started" || s.DependsOn[h+"-certs"].Condition != "service_completed_successfully" {
				t.Errorf("%s: depends on %v", name, s.DependsOn)
			}
			for _, dep := range deps[d.name] {
				if s.DependsOn[h+"-"+dep].Condition != "service_healthy" {
					t.Errorf("%s does not wait for %s-%s to be healthy: %v", name, h, dep, s.DependsOn)
				}
			}
			if len(s.DependsOn) != 2+len(deps[d.name]) {
				t.Errorf("%s depends on %v", name, s.DependsOn)
			}
		}
		join := strings.Split(f.Services[h+"-gossipd"].Environment["PLEIADES_JOIN"], ",")
		if len(join) != 4 || slices.Contains(join, ip+":7403") {
			t.Errorf("%s-gossipd joins %v; want the four other hosts", h, join)
		}
		if f.Services["init"].DependsOn[h+"-raftd"].Condition != "service_healthy" {
			t.Errorf("init does not wait for %s-raftd", h)
		}
	}
	if init := f.Services["init"]; !slices.Contains(init.Command, "--min-nodes") || !slices.Contains(init.Command, "5") || init.Restart != "on-failure" {
		t.Errorf("init: %+v", init)
	}
	if cli := f.Services["cli"]; !slices.Equal(cli.Profiles, []string{"cli"}) || cli.Environment["PLEIADES_CERTS_DIR"] != "/data/certs" {
		t.Errorf("cli: %+v", cli)
	}
	var vols []string
	for v := range f.Volumes {
		vols = append(vols, v)
	}
	slices.Sort(vols)
	slices.Sort(wantVolumes)
	if !slices.Equal(vols, wantVolumes) {
		t.Errorf("volumes %v; want %v", vols, wantVolumes)
	}
	if f.Networks["default"].IPAM.Config[0].Subnet != "172.28.9.0/24" {
		t.Errorf("networks: %+v", f.Networks)
	}
	// Without a subnet, hosts are advertised by name; admin ports are
	// published on the docker host's loopback, host k from 17501+100(k-1).
	_, f = generateCompose(t, "--hosts", "2")
	if adv := f.Services["host2-raftd"].Environment["PLEIADES_ADVERTISE_ADDR"]; adv != "host2:7402" {
		t.Errorf("host2-raftd advertised at %q; want host2:7402", adv)
	}
	if p := f.Services["host2"].Ports; len(p) != 6 || p[1] != "127.0.0.1:17602:7502" {
		t.Errorf("host2 ports %v", p)
	}
}

// TestComposeValidates runs `docker-compose config` (1.29 here) on
// generated files when docker-compose is installed.
func TestComposeValidates(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose not installed: generated files not validated by it")
	}
	for _, args := range [][]string{{"--hosts", "1"}, {"--hosts", "3"}, {"--hosts", "5", "--subnet", "10.99.0.0/16"}} {
		out, _ := generateCompose(t, args...)
		path := filepath.Join(t.TempDir(), "docker-compose.yml")
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "-f", path, "config", "-q")
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Errorf("docker-compose config %q: %v: %s", args, err, stderr.String())
		}
	}
}

func TestDeployUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--hosts", "0"}, {"--hosts", "100"}, {"--subnet", "172.28.0.0/28"}, {"--subnet", "nonet"},
		{"--subnet", "fd00::/64"}, {"--subnet", "172.28.0.1/24"}, {"--tag", ""}, {"extra"},
	} {
		if code, _, stderr := run(t, append([]string{"deploy", "compose"}, args...)...); code != ExitUsage {
			t.Errorf("deploy compose %q exit %d; want %d: %s", args, code, ExitUsage, stderr)
		}
	}
}

// TestCertKeepExisting: with --keep-existing the cert commands run again
// keep a CA and a matching node certificate, and refuse (changing
// nothing) a certificate not valid for the hosts asked.
func TestCertKeepExisting(t *testing.T) {
	dir := t.TempDir()
	ca, out := filepath.Join(dir, "ca"), filepath.Join(dir, "n1")
	for range 2 {
		if code, _, stderr := run(t, "cert", "create-ca", "--certs-dir", ca, "--keep-existing"); code != ExitOK {
			t.Fatalf("create-ca --keep-existing exit %d: %s", code, stderr)
		}
	}
	caCert, _ := os.ReadFile(filepath.Join(ca, tlsutil.CACert))
	if code, _, _ := run(t, "cert", "create-ca", "--certs-dir", ca); code != ExitFailed {
		t.Errorf("create-ca over a CA without --keep-existing exit %d; want %d", code, ExitFailed)
	}
	node := func(hosts string) (int, string) {
		code, _, stderr := run(t, "cert", "create-node", "--ca-dir", ca, "--out-dir", out, "--name", "host1", "--hosts", hosts, "--keep-existing")
		return code, stderr
	}
	if code, stderr := node("host1,10.0.0.1"); code != ExitOK {
		t.Fatalf("create-node exit %d: %s", code, stderr)
	}
	crt, _ := os.ReadFile(filepath.Join(out, tlsutil.NodeCert))
	if code, stderr := node("host1"); code != ExitOK {
		t.Fatalf("create-node again exit %d: %s", code, stderr)
	}
	if code, stderr := node("host2"); code != ExitFailed || !strings.Contains(stderr, "not valid for host2") {
		t.Errorf("create-node for another host over a kept one exit %d: %s", code, stderr)
	}
	again, _ := os.ReadFile(filepath.Join(out, tlsutil.NodeCert))
	if !bytes.Equal(crt, again) {
		t.Error("the node certificate changed")
	}
	if now, _ := os.ReadFile(filepath.Join(ca, tlsutil.CACert)); !bytes.Equal(caCert, now) {
		t.Error("the CA changed")
	}
}
