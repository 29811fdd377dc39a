package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/daemon"
)

// childEnv makes the test binary run childSpec through daemon.Main instead
// of the tests (see TestMain): the process-level tests re-execute it.
const childEnv = "PLEIADES_DAEMON_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		daemon.Main(childSpec())
	}
	goleak.VerifyTestMain(m)
}

// idleService does nothing until stopped; it logs its reloads.
type idleService struct{ log *slog.Logger }

func (idleService) Start(context.Context) error { return nil }
func (idleService) Stop(context.Context) error  { return nil }
func (idleService) Err() <-chan error           { return nil }
func (s idleService) Reload(why string)         { s.log.Info("service reloaded", slog.String("reason", why)) }

// childSpec is a tiny daemon with one flag of its own, shown on /v1/greeting.
func childSpec() daemon.Spec {
	return daemon.Spec{
		Name: "testd", Usage: "process test daemon",
		DefaultBusAddr: "127.0.0.1:0", DefaultAdminAddr: "127.0.0.1:0",
		Flags: []cli.Flag{&cli.StringFlag{Name: "greeting", Value: "hello"}},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			g := c.String("greeting")
			rt.Admin.Handle("/v1/greeting", admin.JSON(func(*http.Request) (any, error) { return g, nil }))
			return idleService{log: rt.Logger}, nil
		},
	}
}

// child is a running re-executed test binary.
type child struct {
	cmd    *exec.Cmd
	lines  chan map[string]any // JSON log lines from stderr
	mu     sync.Mutex
	stderr strings.Builder
	done   chan struct{} // closed when stderr is drained
}

func startChild(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, lines: make(chan map[string]any, 100), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.lines)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			c.mu.Lock()
			c.stderr.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				select {
				case c.lines <- m:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			<-c.done
			_ = c.cmd.Wait()
		}
	})
	return c
}

func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// waitMsg returns the first log line with msg, failing after 30s.
func (c *child) waitMsg(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-c.lines:
			if !ok {
				t.Fatalf("child exited before logging %q:\n%s", msg, c.output())
			}
			if m["msg"] == msg {
				return m
			}
		case <-deadline:
			t.Fatalf("child did not log %q:\n%s", msg, c.output())
		}
	}
}

// wait waits for the child to exit and returns its exit status.
func (c *child) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	exited := make(chan error, 1)
	go func() {
		<-c.done
		exited <- c.cmd.Wait()
	}()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("child still running after %v:\n%s", within, c.output())
		return -1
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %q: %v", url, b, err)
	}
}

func TestProcessSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startChild(t, nil, "--dev", "--data-dir", t.TempDir(), "--log-format", "json", "--shutdown-timeout", "5s")
	started := c.waitMsg(t, "started")
	c.waitMsg(t, "ready")
	adminAddr, _ := started["admin_addr"].(string)
	var st admin.Status
	getJSON(t, "http://"+adminAddr+"/v1/status", &st)
	if st.Daemon != "testd" || !st.Ready {
		t.Errorf("status = %+v; want testd ready", st)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := c.wait(t, 10*time.Second); code != daemon.ExitOK {
		t.Fatalf("exit status %d after SIGTERM; want 0:\n%s", code, c.output())
	}
	if !strings.Contains(c.output(), `"msg":"stopped"`) {
		t.Errorf("no stopped log:\n%s", c.output())
	}
}

// TestProcessSIGHUP: SIGHUP reloads a service that implements
// daemon.Reloader (msgd's auth file, say) and the daemon keeps running.
func TestProcessSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startChild(t, nil, "--dev", "--data-dir", t.TempDir(), "--log-format", "json", "--shutdown-timeout", "5s")
	c.waitMsg(t, "ready")
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if m := c.waitMsg(t, "service reloaded"); m["reason"] != "SIGHUP" {
		t.Errorf("reload reason %v; want SIGHUP", m["reason"])
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := c.wait(t, 10*time.Second); code != daemon.ExitOK {
		t.Fatalf("exit status %d after SIGHUP then SIGTERM; want 0:\n%s", code, c.output())
	}
}

func TestProcessBadFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	tests := []struct {
		name     string
		env      []string
		args     []string
		wantFlag string
	}{
		{"flag", nil, []string{"--shutdown-timeout", "soon"}, "shutdown-timeout"},
		{"env", []string{"PLEIADES_BUS_ADDR=nowhere"}, nil, "bus-addr"},
		{"unknown flag", nil, []string{"--no-such-flag"}, "no-such-flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startChild(t, tt.env, append([]string{"--data-dir", t.TempDir()}, tt.args...)...)
			if code := c.wait(t, 30*time.Second); code != daemon.ExitConfig {
				t.Errorf("exit status %d; want 2:\n%s", code, c.output())
			}
			if !strings.Contains(c.output(), tt.wantFlag) {
				t.Errorf("stderr does not name %q:\n%s", tt.wantFlag, c.output())
			}
		})
	}
}

func TestProcessEnvAndConfigFile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "testd.toml")
	body := "greeting = \"from-file\"\nlog-format = \"json\"\nnode-id = 5\ndev = true\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, []string{"PLEIADES_NODE_ID=99", "PLEIADES_DATA_DIR=" + filepath.Join(dir, "data")}, "--config", file)
	started := c.waitMsg(t, "started")
	adminAddr, _ := started["admin_addr"].(string)
	var st admin.Status
	getJSON(t, "http://"+adminAddr+"/v1/status", &st)
	if st.NodeID != 99 {
		t.Errorf("node_id = %d; want 99 (env beats file)", st.NodeID)
	}
	var greeting string
	getJSON(t, "http://"+adminAddr+"/v1/greeting", &greeting)
	if greeting != "from-file" {
		t.Errorf("greeting = %q; want from-file", greeting)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "node-id")); err != nil {
		t.Errorf("node-id not under the env data dir: %v", err)
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.wait(t, 10*time.Second); code != daemon.ExitOK {
		t.Errorf("exit status %d; want 0", code)
	}
}
