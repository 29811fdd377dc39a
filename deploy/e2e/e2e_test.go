package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/admin"
	"github.com/pleiades-db/pleiades/shared/eventually"
)

// daemons are the node's daemons in start order.
var daemons = []string{"stored", "gossipd", "clockd", "raftd", "workflowd", "msgd"}

// binDir holds the binaries TestMain built.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "pleiades-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if err := build(dir); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: build:", err)
			return 1
		}
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

// build compiles every command of the suite into dir.
func build(dir string) error {
	root, err := filepath.Abs("../..")
	if err != nil {
		return err
	}
	cmds := map[string]string{
		"stored": "stored", "clockd": "clockd", "gossipd": "gossipd", "raftd": "raftd",
		"workflowd": "workflowd", "msgd": "services", "pleiades": "services",
	}
	for name, mod := range cmds {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = filepath.Join(root, mod)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", name, err, out)
		}
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for a process writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running pleiades command.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e tests run real processes; skipped under -short")
	}
	p := &proc{cmd: exec.Command(filepath.Join(binDir, "pleiades"), args...), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("pleiades %s output:\n%s", strings.Join(args, " "), p.stderr.String())
		}
	})
	return p
}

// pleiades runs a short CLI command and returns its stdout.
func pleiades(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return pleiadesWithin(t, 20*time.Second, args...)
}

// pleiadesWithin is pleiades for a command that may take up to limit.
func pleiadesWithin(t *testing.T, limit time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "pleiades"), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("pleiades %v: %w: %s", args, err, errb.String())
	}
	return out.String(), nil
}

type daemonStatus struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	PID       int    `json:"pid"`
	Restarts  int    `json:"restarts"`
	Ready     bool   `json:"ready"`
	AdminAddr string `json:"admin_addr"`
	// Conditions are the failing conditions of a ready daemon.
	Conditions string `json:"conditions"`
}

type statusView struct {
	Supervisor string         `json:"supervisor"`
	Daemons    []daemonStatus `json:"daemons"`
}

func status(t *testing.T, supervisorAddr string) (statusView, error) {
	t.Helper()
	out, err := pleiades(t, "status", "--addr", supervisorAddr, "--output", "json")
	if err != nil {
		return statusView{}, err
	}
	var v statusView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return statusView{}, fmt.Errorf("decode status: %w: %s", err, out)
	}
	return v, nil
}

func allReady(v statusView, want int) error {
	if v.Supervisor == "" {
		return fmt.Errorf("no supervisor answered")
	}
	if len(v.Daemons) != want {
		return fmt.Errorf("%d daemons listed; want %d", len(v.Daemons), want)
	}
	for _, d := range v.Daemons {
		if !d.Ready || d.State != "ready" || d.PID == 0 {
			return fmt.Errorf("%s is %s (ready=%v pid=%d)", d.Name, d.State, d.Ready, d.PID)
		}
	}
	return nil
}

func readyz(addr string) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s/readyz: %d %s", addr, resp.StatusCode, body)
	}
	return nil
}

// inParallel calls f(0..n-1) on workers goroutines and waits.
func inParallel(workers, n int, f func(i int)) {
	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				f(i)
			}
		}()
	}
	wg.Wait()
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func waitExit(t *testing.T, p *proc, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("pleiades did not exit within %v", timeout)
	}
}

// TestUpNode is the foundation's acceptance test: `pleiades up` brings up
// all six daemons ready; a daemon killed with SIGKILL is restarted; SIGTERM
// stops everything and leaves no process behind.
func TestUpNode(t *testing.T) {
	const offset = 1200
	sup := fmt.Sprintf("127.0.0.1:%d", 7500+offset)
	dataDir := t.TempDir()
	p := start(t, "up", "--dev", "--data-dir", dataDir, "--port-offset", fmt.Sprint(offset), "--bin-dir", binDir)

	var v statusView
	eventually.NoError(t, 90*time.Second, "all daemons ready", func() (err error) {
		if v, err = status(t, sup); err != nil {
			return err
		}
		return allReady(v, len(daemons))
	})
	for i, d := range v.Daemons {
		if d.Name != daemons[i] {
			t.Errorf("daemon %d is %s; want %s", i, d.Name, daemons[i])
		}
		if err := readyz(d.AdminAddr); err != nil {
			t.Error(err)
		}
		checkTimerSlack(t, d)
	}
	if err := readyz(sup); err != nil {
		t.Errorf("supervisor: %v", err)
	}
	// raftd calls its stored over stored's local socket, not QUIC.
	if _, err := os.Stat(filepath.Join(dataDir, "stored", "stored.sock")); err != nil {
		t.Errorf("stored's local socket: %v", err)
	}
	eventually.True(t, 30*time.Second, "raftd calling stored over the local socket", func() bool {
		return metric(t, v.Daemons[3].AdminAddr, "pleiades_bus_local_calls_total") > 0
	})

	// kill -9 raftd: the supervisor restarts it.
	victim := v.Daemons[3]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 60*time.Second, "raftd restarted", func() error {
		v2, err := status(t, sup)
		if err != nil {
			return err
		}
		d := v2.Daemons[3]
		if d.Restarts < 1 || !d.Ready || d.PID == victim.PID || d.PID == 0 {
			return fmt.Errorf("raftd: %+v", d)
		}
		checkTimerSlack(t, d)
		return nil
	})

	// The supervisor's own endpoint: its node's id, and the daemons'
	// states, restarts and exits as metrics.
	id, err := os.ReadFile(filepath.Join(dataDir, "node-id"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := admin.FetchStatus(t.Context(), nil, sup)
	if err != nil || st.NodeID == 0 || fmt.Sprint(st.NodeID) != strings.TrimSpace(string(id)) {
		t.Errorf("supervisor /v1/status node_id %d (%v); want the node's %s", st.NodeID, err, id)
	}
	metrics := get(t, sup, "/metrics")
	for _, want := range []string{`pleiades_supervisor_daemon_ready{daemon="raftd"} 1`, `pleiades_supervisor_daemon_ready{daemon="stored"} 1`,
		`pleiades_supervisor_daemon_exits_total{daemon="raftd",kind="signal"} 1`, `pleiades_supervisor_daemon_state{daemon="msgd",state="ready"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("supervisor /metrics lacks %q", want)
		}
	}

	v, err = status(t, sup)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, d := range v.Daemons {
		pids = append(pids, d.PID)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, p, 60*time.Second)
	if p.err != nil {
		t.Errorf("pleiades up exit: %v", p.err)
	}
	for i, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) still alive after SIGTERM to up", v.Daemons[i].Name, pid)
		}
	}
	out := p.stderr.String()
	for _, want := range []string{"daemon exited; restarting", "supervisor stopped", "daemon logs go to <data-dir>/logs/<daemon>.log"} {
		if !strings.Contains(out, want) {
			t.Errorf("supervisor log lacks %q", want)
		}
	}
	// gossipd starts before and stops after clockd, which follows it:
	// clockd never loses it (it used to warn at every shutdown).
	clockLog, err := os.ReadFile(filepath.Join(dataDir, "logs", "clockd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(clockLog), "membership failed") {
		t.Errorf("clockd lost gossipd:\n%s", clockLog)
	}
}

// checkTimerSlack checks that every thread of daemon d has the 1ms timer
// slack `pleiades up` starts its daemons with.
func checkTimerSlack(t *testing.T, d daemonStatus) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", d.PID))
	if err != nil {
		t.Errorf("%s: %v", d.Name, err)
		return
	}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + task.Name() + "/timerslack_ns")
		if err != nil {
			continue // the thread exited
		}
		if got := strings.TrimSpace(string(b)); got != "1000000" {
			t.Errorf("%s thread %s: timer slack %s ns; want 1000000", d.Name, task.Name(), got)
		}
	}
}

// TestUpKilledLeavesNoOrphans: SIGKILL to `pleiades up` takes every daemon
// with it.
func TestUpKilledLeavesNoOrphans(t *testing.T) {
	const offset = 1300
	sup := fmt.Sprintf("127.0.0.1:%d", 7500+offset)
	p := start(t, "up", "--dev", "--data-dir", t.TempDir(), "--port-offset", fmt.Sprint(offset), "--bin-dir", binDir,
		"--daemons", "stored,clockd,gossipd")
	var v statusView
	eventually.NoError(t, 60*time.Second, "daemons ready", func() (err error) {
		if v, err = status(t, sup); err != nil {
			return err
		}
		return allReady(v, 3)
	})
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitExit(t, p, 10*time.Second)
	eventually.NoError(t, 10*time.Second, "children gone", func() error {
		for _, d := range v.Daemons {
			if alive(d.PID) {
				return fmt.Errorf("%s (pid %d) alive", d.Name, d.PID)
			}
		}
		return nil
	})
}

// TestDevCluster: `pleiades dev --nodes 3` brings up three nodes whose 18
// admin endpoints are ready, and writes cluster.json.
func TestDevCluster(t *testing.T) {
	const offset = 1400
	dir := t.TempDir()
	sup := fmt.Sprintf("127.0.0.1:%d", 7500+offset)
	p := start(t, "dev", "--nodes", "3", "--data-dir", dir, "--port-offset", fmt.Sprint(offset), "--bin-dir", binDir)
	eventually.NoError(t, 120*time.Second, "cluster ready", func() error {
		v, err := status(t, sup)
		if err != nil {
			return err
		}
		return allReady(v, 3*len(daemons))
	})
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		Nodes []struct {
			Node    int    `json:"node"`
			NodeID  uint64 `json:"node_id,string"`
			Daemons map[string]struct {
				Bus   string `json:"bus"`
				Admin string `json:"admin"`
			} `json:"daemons"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(b, &cl); err != nil {
		t.Fatal(err)
	}
	if len(cl.Nodes) != 3 {
		t.Fatalf("cluster.json has %d nodes", len(cl.Nodes))
	}
	ids := map[uint64]bool{}
	for _, n := range cl.Nodes {
		ids[n.NodeID] = true
		for _, d := range daemons {
			a := n.Daemons[d]
			// msgd's readiness includes its routes to the live peers it
			// knows: a peer it learns of after the supervisor saw it ready
			// makes it unready until the route is up.
			eventually.NoError(t, 15*time.Second, fmt.Sprintf("node %d %s ready", n.Node, d), func() error { return readyz(a.Admin) })
		}
	}
	if len(ids) != 3 {
		t.Errorf("node ids not distinct: %v", ids)
	}
	if want := fmt.Sprintf("127.0.0.1:%d", 7412+offset); cl.Nodes[1].Daemons["raftd"].Bus != want {
		t.Errorf("node 2 raftd bus = %s; want %s", cl.Nodes[1].Daemons["raftd"].Bus, want)
	}
	// Every member advertises its daemons' bus addresses in gossip.
	eventually.NoError(t, 30*time.Second, "daemon addresses in gossip", func() error {
		out, err := pleiades(t, "members", "--addr", cl.Nodes[0].Daemons["gossipd"].Bus, "--certs-dir", filepath.Join(dir, "node1", "certs"), "-o", "json")
		if err != nil {
			return err
		}
		var ms []struct {
			NodeID    uint64            `json:"node_id,string"`
			Addresses map[string]string `json:"addresses"`
		}
		if err := json.Unmarshal([]byte(out), &ms); err != nil {
			return fmt.Errorf("members json: %w: %s", err, out)
		}
		for _, n := range cl.Nodes {
			var got map[string]string
			for _, m := range ms {
				if m.NodeID == n.NodeID {
					got = m.Addresses
				}
			}
			for _, d := range []string{"clockd", "raftd", "msgd"} {
				if got[d] != n.Daemons[d].Bus {
					return fmt.Errorf("node %d advertises %s at %q; want %s (all: %v)", n.Node, d, got[d], n.Daemons[d].Bus, got)
				}
			}
		}
		return nil
	})
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waitExit(t, p, 60*time.Second)
	if p.err != nil {
		t.Errorf("pleiades dev exit: %v", p.err)
	}
}

// get returns the body of GET http://addr/path, failing t unless it
// answers 200.
func get(t *testing.T, addr, path string) string {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s%s: %d %v", addr, path, resp.StatusCode, err)
	}
	return string(body)
}
