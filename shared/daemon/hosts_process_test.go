package daemon_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// TestProcessSystemdNotify runs the daemon as systemd's Type=notify would:
// with NOTIFY_SOCKET naming a datagram socket, on which it must say
// READY=1 once ready and STOPPING=1 when SIGTERM arrives.
func TestProcessSystemdNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, tt := range []struct {
		name   string
		socket func(dir string) (listen, env string)
	}{
		{"path", func(dir string) (string, string) { p := filepath.Join(dir, "notify"); return p, p }},
		{"abstract", func(dir string) (string, string) {
			n := "pleiades-test-" + filepath.Base(dir)
			return "\x00" + n, "@" + n
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			listen, env := tt.socket(dir)
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: listen, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := startChild(t, []string{"NOTIFY_SOCKET=" + env}, "--dev", "--data-dir", filepath.Join(dir, "data"), "--log-format", "json")
			read := func() string {
				t.Helper()
				buf := make([]byte, 4096)
				_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("no notification: %v\n%s", err, c.output())
				}
				return string(buf[:n])
			}
			if msg := read(); !strings.HasPrefix(msg, "READY=1\n") {
				t.Fatalf("first notification %q; want READY=1", msg)
			}
			if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if msg := read(); msg != "STOPPING=1" {
				t.Errorf("notification after SIGTERM %q; want STOPPING=1", msg)
			}
			if code := c.wait(t, 10*time.Second); code != daemon.ExitOK {
				t.Errorf("exit status %d; want 0:\n%s", code, c.output())
			}
		})
	}
}

// TestProcessHealth runs `<daemon> health`, the health check of a scratch
// image, against a ready daemon, through the flag and the environment,
// and against an address nothing answers on.
func TestProcessHealth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d := startChild(t, nil, "--dev", "--data-dir", t.TempDir(), "--log-format", "json", "--admin-addr", "0.0.0.0:0")
	started := d.waitMsg(t, "started")
	d.waitMsg(t, "ready")
	_, port, _ := net.SplitHostPort(started["admin_addr"].(string))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want int
	}{
		{"flag", nil, []string{"health", "--admin-addr", "127.0.0.1:" + port}, daemon.ExitOK},
		{"wildcard means loopback", nil, []string{"health", "--admin-addr", "0.0.0.0:" + port}, daemon.ExitOK},
		{"env", []string{"PLEIADES_ADMIN_ADDR=0.0.0.0:" + port}, []string{"health"}, daemon.ExitOK},
		{"unreachable", nil, []string{"health", "--admin-addr", dead, "--timeout", "2s"}, daemon.ExitFailure},
		{"bad address", nil, []string{"health", "--admin-addr", "nowhere"}, daemon.ExitConfig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := startChild(t, tt.env, tt.args...)
			if code := c.wait(t, 30*time.Second); code != tt.want {
				t.Errorf("exit status %d; want %d:\n%s", code, tt.want, c.output())
			}
		})
	}
}

// TestProcessAdvertiseCertificate checks --advertise-addr against the node
// certificate: a certificate that is not valid for the advertised host
// stops start-up with a message saying what to run; a matching one starts
// and the status shows the advertised address.
func TestProcessAdvertiseCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	caDir, certs := filepath.Join(dir, "ca"), filepath.Join(dir, "certs")
	if err := tlsutil.CreateCA(caDir); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsutil.CreateNode(caDir, certs, "host1", []string{"10.0.0.5", "host1.example"}, 0); err != nil {
		t.Fatal(err)
	}
	base := []string{"--data-dir", filepath.Join(dir, "data"), "--certs-dir", certs, "--log-format", "json"}
	for _, tt := range []struct {
		name, advertise, bus string
		want                 int
		stderr               string
	}{
		{"other IP", "10.9.9.9:7402", "127.0.0.1:0", daemon.ExitFailure, "create-node --hosts 10.9.9.9"},
		{"other name", "host2.example:7402", "127.0.0.1:0", daemon.ExitFailure, "not for \"host2.example\""},
		{"bus address", "", "192.0.2.77:0", daemon.ExitFailure, "create-node --hosts 192.0.2.77"},
		{"wildcard", "0.0.0.0:7402", "127.0.0.1:0", daemon.ExitConfig, "advertise-addr"},
		{"port 0", "10.0.0.5:0", "127.0.0.1:0", daemon.ExitConfig, "advertise-addr"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{}, base...), "--bus-addr", tt.bus)
			if tt.advertise != "" {
				args = append(args, "--advertise-addr", tt.advertise)
			}
			c := startChild(t, nil, args...)
			if code := c.wait(t, 30*time.Second); code != tt.want {
				t.Fatalf("exit status %d; want %d:\n%s", code, tt.want, c.output())
			}
			if !strings.Contains(c.output(), tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, c.output())
			}
		})
	}

	for _, adv := range []string{"10.0.0.5:7402", "host1.example:7402"} {
		c := startChild(t, nil, append(append([]string{}, base...), "--bus-addr", "127.0.0.1:0", "--advertise-addr", adv)...)
		started := c.waitMsg(t, "started")
		var st admin.Status
		getJSON(t, "http://"+started["admin_addr"].(string)+"/v1/status", &st)
		if st.Addresses["advertise"] != adv {
			t.Errorf("status addresses %v; want advertise %s", st.Addresses, adv)
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		if code := c.wait(t, 10*time.Second); code != daemon.ExitOK {
			t.Errorf("exit status %d; want 0:\n%s", code, c.output())
		}
	}

	// --dev makes a certificate valid for the advertised host.
	devCerts := filepath.Join(dir, "dev-certs")
	c := startChild(t, nil, "--dev", "--data-dir", filepath.Join(dir, "dev"), "--certs-dir", devCerts, "--log-format", "json",
		"--bus-addr", "127.0.0.1:0", "--advertise-addr", "host9.example:7402")
	c.waitMsg(t, "ready")
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	c.wait(t, 10*time.Second)
	tc, err := tlsutil.Load(devCerts)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.CheckHost(tc, "host9.example"); err != nil {
		t.Errorf("dev certificate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(devCerts, tlsutil.NodeCert)); err != nil {
		t.Error(err)
	}
}

func TestDialableAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:7502":   "127.0.0.1:7502",
		":7502":          "127.0.0.1:7502",
		"[::]:7502":      "[::1]:7502",
		"10.0.0.5:7502":  "10.0.0.5:7502",
		"host1:7502":     "host1:7502",
		"127.0.0.1:7502": "127.0.0.1:7502",
	} {
		if got := daemon.DialableAddr(in); got != want {
			t.Errorf("DialableAddr(%q) = %q; want %q", in, got, want)
		}
	}
}
