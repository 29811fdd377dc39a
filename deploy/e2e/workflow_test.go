package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"log/slog"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/workflowclient"

	"github.com/pleiades-db/pleiades/shared/eventually"
)

// tenSteps is the workflow the fault tests run: ten logical steps, each
// recording its execution in the KV (key wfexec/<instance>/<step>/<epoch>,
// so a step run again by another owner leaves a second record), appending
// its name to the data's log (so a step lost or applied twice shows), and
// pausing a little so that faults land mid-workflow.
func tenSteps(pause string) string {
	var b strings.Builder
	b.WriteString("id: tensteps\nversion: 1\ndescription: ten recorded steps\nsteps:\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "  - name: exec%d\n    kv.put: {key: '\"wfexec/\" + instance + \"/%02d/\" + string(epoch)', value: 'key'}\n", i, i)
		fmt.Fprintf(&b, "  - name: s%d\n    set: {log: 'concat(data.log, [\"s%d\"])'}\n", i, i)
		fmt.Fprintf(&b, "  - name: pause%d\n    delay: '\"%s\"'\n", i, pause)
	}
	return b.String()
}

// wfCluster is a three-node dev cluster without workflowd (the test runs
// its own workflowds, to kill, freeze and restart them at will).
type wfCluster struct {
	dir    string
	offset int
	sup    string
	proc   *proc
	nodes  []devNode
	kv     *kvclient.Client
	b      *bus.Bus
}

func startWFCluster(t *testing.T, offset int) *wfCluster {
	t.Helper()
	c := &wfCluster{dir: t.TempDir(), offset: offset, sup: fmt.Sprintf("127.0.0.1:%d", 7500+offset)}
	c.proc = start(t, "dev", "--nodes", "3", "--data-dir", c.dir, "--port-offset", strconv.Itoa(offset), "--bin-dir", binDir,
		"--daemons", "stored,clockd,gossipd,raftd")
	eventually.NoError(t, 120*time.Second, "dev cluster ready", func() error {
		select {
		case <-c.proc.done:
			return fmt.Errorf("pleiades dev exited: %v", c.proc.err)
		default:
		}
		v, err := status(t, c.sup)
		if err != nil {
			return err
		}
		return allReady(v, 3*4)
	})
	b, err := os.ReadFile(filepath.Join(c.dir, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		Nodes []struct {
			Node    int    `json:"node"`
			NodeID  uint64 `json:"node_id,string"`
			Daemons map[string]struct {
				Bus string `json:"bus"`
			} `json:"daemons"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(b, &cl); err != nil {
		t.Fatal(err)
	}
	for _, n := range cl.Nodes {
		c.nodes = append(c.nodes, devNode{Index: n.Node, NodeID: n.NodeID, RaftAddr: n.Daemons["raftd"].Bus})
	}
	dc := &devCluster{dir: c.dir, nodes: c.nodes}
	c.kv = dc.client(t, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mustInit(t, ctx, c.kv, kvclient.InitOptions{})
	tc, err := tlsutil.Load(filepath.Join(c.dir, "node1", "certs"))
	if err != nil {
		t.Fatal(err)
	}
	c.b, err = bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tc}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.b.Stop(ctx)
	})
	return c
}

// wfd is a workflowd process the test runs on one node.
type wfd struct {
	node       int
	bus, admin string
	args       []string
	p          *proc
	client     *workflowclient.Client
}

// workflowd starts a workflowd on node k (1-based) with a short lease.
func (c *wfCluster) workflowd(t *testing.T, k int) *wfd {
	t.Helper()
	off := c.offset + 10*(k-1)
	nodeDir := filepath.Join(c.dir, fmt.Sprintf("node%d", k))
	w := &wfd{node: k, bus: fmt.Sprintf("127.0.0.1:%d", 7405+off), admin: fmt.Sprintf("127.0.0.1:%d", 7505+off)}
	w.args = []string{"--data-dir", nodeDir, "--certs-dir", filepath.Join(nodeDir, "certs"), "--bus-addr", w.bus, "--admin-addr", w.admin,
		"--raft-addr", c.nodes[k-1].RaftAddr, "--gossip-addr", fmt.Sprintf("127.0.0.1:%d", 7403+off),
		"--instance-lease", "2s", "--poll-interval", "100ms", "--max-clock-offset", "100ms"}
	w.client = workflowclient.New(c.b, w.bus)
	w.start(t)
	return w
}

func (w *wfd) start(t *testing.T) {
	t.Helper()
	p := &proc{cmd: exec.Command(filepath.Join(binDir, "workflowd"), w.args...), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
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
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("workflowd on node %d output:\n%s", w.node, p.stderr.String())
		}
	})
	w.p = p
	eventually.NoError(t, 30*time.Second, "workflowd ready", func() error { return readyz(w.admin) })
}

func (w *wfd) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := w.p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if sig == syscall.SIGKILL {
		<-w.p.done
	}
}

// startInstances starts n instances of tensteps through w.
func startInstances(t *testing.T, w *wfd, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		r, err := w.client.Start(t.Context(), &workflowpb.StartRequest{Definition: "tensteps", Data: []byte(`{"log": []}`), IdempotencyKey: fmt.Sprintf("%s-%d", t.Name(), i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.GetInstanceId())
	}
	return ids
}

// waitProgress waits until every instance has completed at least steps
// steps (of 30 document steps).
func waitProgress(t *testing.T, w *wfd, ids []string, steps uint64) {
	t.Helper()
	eventually.NoError(t, 60*time.Second, fmt.Sprintf("every instance past %d steps", steps), func() error {
		for _, id := range ids {
			in, err := w.client.Get(t.Context(), id)
			if err != nil {
				return err
			}
			if in.GetStepsCompleted() < steps {
				return fmt.Errorf("%s: %d steps", id, in.GetStepsCompleted())
			}
		}
		return nil
	})
}

// checkCompleted waits for every instance to complete and checks that
// each logical step ran, was applied exactly once, and that no owner
// made progress after a later owner had started: for each instance, the
// steps executed under an epoch all come before those executed under a
// later epoch (a step may run twice, once per owner, when its owner lost
// it mid-step).
func checkCompleted(t *testing.T, c *wfCluster, w *wfd, ids []string) (epochs map[string][]int) {
	t.Helper()
	eventually.NoError(t, 120*time.Second, "every instance completed", func() error {
		for _, id := range ids {
			in, err := w.client.Get(t.Context(), id)
			if err != nil {
				return err
			}
			if in.GetStatus() != workflowpb.Status_STATUS_COMPLETED {
				return fmt.Errorf("%s: %v after %d steps (%s)", id, in.GetStatus(), in.GetStepsCompleted(), in.GetError())
			}
		}
		return nil
	})
	var want []string
	for i := 1; i <= 10; i++ {
		want = append(want, fmt.Sprintf("s%d", i))
	}
	epochs = map[string][]int{}
	for _, id := range ids {
		in, err := w.client.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		var d struct{ Log []string }
		if err := json.Unmarshal(in.GetData(), &d); err != nil {
			t.Fatal(err)
		}
		if strings.Join(d.Log, " ") != strings.Join(want, " ") {
			t.Errorf("%s: log %v; want each step once, in order", id, d.Log)
		}
		kvs, err := c.kv.Scan(t.Context(), []byte("wfexec/"+id+"/"), []byte("wfexec/"+id+"0"), kvclient.ScanOptions{}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		// step -> epochs that ran it
		ran := map[int][]int{}
		for _, kv := range kvs {
			parts := strings.Split(string(kv.Key), "/")
			step, _ := strconv.Atoi(parts[2])
			ep, _ := strconv.Atoi(parts[3])
			ran[step] = append(ran[step], ep)
		}
		lastStepOf := map[int]int{}
		firstStepOf := map[int]int{}
		for step := 1; step <= 10; step++ {
			if len(ran[step]) == 0 {
				t.Errorf("%s: step %d never ran", id, step)
			}
			for _, ep := range ran[step] {
				if s, ok := firstStepOf[ep]; !ok || step < s {
					firstStepOf[ep] = step
				}
				lastStepOf[ep] = max(lastStepOf[ep], step)
			}
		}
		var eps []int
		for ep := range lastStepOf {
			eps = append(eps, ep)
		}
		sort.Ints(eps)
		for i := 1; i < len(eps); i++ {
			if lastStepOf[eps[i-1]] > firstStepOf[eps[i]] {
				t.Errorf("%s: epoch %d ran step %d after epoch %d had started at step %d (two runners at once)",
					id, eps[i-1], lastStepOf[eps[i-1]], eps[i], firstStepOf[eps[i]])
			}
		}
		epochs[id] = eps
	}
	return epochs
}

// TestWorkflowKill9Resumes: workflowd is killed with SIGKILL while its
// instances are mid-workflow; restarted, it resumes each from its last
// persisted step: none lost, none applied twice. The definition goes in
// and the instances come out through the pleiades CLI.
func TestWorkflowKill9Resumes(t *testing.T) {
	c := startWFCluster(t, 5000)
	w := c.workflowd(t, 1)
	certs := filepath.Join(c.dir, "node1", "certs")
	file := filepath.Join(t.TempDir(), "tensteps.yaml")
	if err := os.WriteFile(file, []byte(tenSteps("300ms")), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) string {
		t.Helper()
		// Flags before arguments (urfave/cli stops at the first argument).
		full := append([]string{"workflows", args[0], "--addr", w.bus, "--certs-dir", certs}, args[1:]...)
		out, err := pleiades(t, full...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if out := cli("define", file); !strings.Contains(out, "defined tensteps v1") {
		t.Fatalf("define: %q", out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("id: bad\nversion: 1\nsteps:\n  - name: x\n    set: {a: '1 +'}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := pleiades(t, "workflows", "define", "--addr", w.bus, "--certs-dir", certs, bad); err == nil || !strings.Contains(err.Error(), "line 5") {
		t.Errorf("define of a malformed document: %q, %v; want an error at line 5", out, err)
	}
	var ids []string
	for range 4 {
		ids = append(ids, strings.TrimSpace(cli("start", "--data", `{"log": []}`, "tensteps")))
	}
	waitProgress(t, w, ids, 7)
	w.signal(t, syscall.SIGKILL)
	t.Logf("SIGKILL workflowd (pid %d) with every instance past 7 steps of 20", w.p.cmd.Process.Pid)
	w.start(t)
	epochs := checkCompleted(t, c, w, ids)
	for id, eps := range epochs {
		if len(eps) < 2 {
			t.Errorf("%s ran under epochs %v; want the restarted workflowd to have taken it", id, eps)
		}
	}
	if out := cli("list", "--status=completed", "--definition=tensteps"); strings.Count(out, "completed") != len(ids) {
		t.Errorf("workflows list:\n%s", out)
	}
	if out := cli("show", ids[0]); !strings.Contains(out, "status:      completed") || !strings.Contains(out, "exec10") {
		t.Errorf("workflows show:\n%s", out)
	}
	if got := metric(t, w.admin, "pleiades_workflowd_lease_takeovers_total"); got < 1 {
		t.Errorf("lease takeovers %v; want the restart's", got)
	}

	// The control commands, on an instance waiting for an event.
	waiter := filepath.Join(t.TempDir(), "waiter.yaml")
	if err := os.WriteFile(waiter, []byte("id: waiter\nversion: 1\nsteps:\n  - wait: {event: '\"go\"', key: 'data.k', output: got}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli("define", waiter)
	a := strings.TrimSpace(cli("start", "--data", `{"k": "a"}`, "waiter"))
	b := strings.TrimSpace(cli("start", "--data", `{"k": "b"}`, "waiter"))
	for _, id := range []string{a, b} {
		eventually.NoError(t, 30*time.Second, "parked on its event", func() error {
			in, err := w.client.Get(t.Context(), id)
			if err != nil || in.GetOwner() != 0 || len(in.GetWaiting()) != 1 {
				return fmt.Errorf("%v, %v", in, err)
			}
			return nil
		})
	}
	if out := cli("suspend", a); !strings.Contains(out, "suspended") {
		t.Errorf("suspend: %q", out)
	}
	if out := cli("event", "--key", "a", "--data", `{"v": 1}`, "go"); !strings.Contains(out, "1 waiting instance(s) woken") {
		t.Errorf("event: %q", out)
	}
	if out := cli("show", a); !strings.Contains(out, "status:      suspended") {
		t.Errorf("show of the suspended instance:\n%s", out)
	}
	cli("resume", a)
	if out := cli("terminate", "--reason", "not needed", b); !strings.Contains(out, "terminated") {
		t.Errorf("terminate: %q", out)
	}
	eventually.NoError(t, 30*time.Second, "resumed instance completed with its event", func() error {
		in, err := w.client.Get(t.Context(), a)
		if err != nil || in.GetStatus() != workflowpb.Status_STATUS_COMPLETED || !strings.Contains(string(in.GetData()), `"v":1`) {
			return fmt.Errorf("%v, %v", in, err)
		}
		return nil
	})
	if _, err := pleiades(t, "workflows", "event", "--addr", w.bus, "--certs-dir", certs, "--instance", b, "--key", "b", "go"); err == nil || !strings.Contains(err.Error(), "finished") {
		t.Errorf("event for the terminated instance: %v; want refused", err)
	}
	if out := cli("list", "--status=terminated"); !strings.Contains(out, b) {
		t.Errorf("list --status terminated:\n%s", out)
	}
}

// TestWorkflowOwnerNodeKilled: two workflowds on two nodes; the owner's
// node (its workflowd and raftd) is killed with SIGKILL; the other
// workflowd takes the instances over once their leases end and finishes
// them, never running one instance in two places at once.
func TestWorkflowOwnerNodeKilled(t *testing.T) {
	c := startWFCluster(t, 5100)
	w1 := c.workflowd(t, 1)
	w2 := c.workflowd(t, 2)
	if _, err := w1.client.Define(t.Context(), []byte(tenSteps("300ms"))); err != nil {
		t.Fatal(err)
	}
	ids := startInstances(t, w1, 4)
	waitProgress(t, w2, ids, 7)
	for _, id := range ids {
		if in, _ := w2.client.Get(t.Context(), id); in.GetOwner() != c.nodes[0].NodeID {
			t.Fatalf("%s owned by %d; want node 1 (%d)", id, in.GetOwner(), c.nodes[0].NodeID)
		}
	}
	raft1, err := (&devCluster{sup: c.sup}).daemon(t, "node1/raftd")
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	w1.signal(t, syscall.SIGKILL)
	if err := syscall.Kill(raft1.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL node 1's workflowd and raftd (pid %d)", raft1.PID)
	checkCompleted(t, c, w2, ids)
	t.Logf("all instances completed %v after the kill", time.Since(killed).Round(time.Millisecond))
	for _, id := range ids {
		in, err := w2.client.Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		last := in.GetHistory()[len(in.GetHistory())-1]
		if last.GetEpoch() < 2 {
			t.Errorf("%s: last step ran under epoch %d; want a takeover", id, last.GetEpoch())
		}
	}
	if got := metric(t, w2.admin, "pleiades_workflowd_lease_takeovers_total"); got < float64(len(ids)) {
		t.Errorf("node 2 took over %v instances; want %d", got, len(ids))
	}
}

// TestWorkflowFrozenOwnerFenced: the owner is frozen with SIGSTOP past
// its lease; another workflowd takes its instances over and finishes
// them; the owner is then resumed with SIGCONT, and its late writes are
// refused (its lost-lease counter grows, the instances stay as the new
// owner left them).
func TestWorkflowFrozenOwnerFenced(t *testing.T) {
	c := startWFCluster(t, 5200)
	w1 := c.workflowd(t, 1)
	w2 := c.workflowd(t, 2)
	if _, err := w1.client.Define(t.Context(), []byte(tenSteps("300ms"))); err != nil {
		t.Fatal(err)
	}
	ids := startInstances(t, w1, 4)
	waitProgress(t, w2, ids, 7)
	w1.signal(t, syscall.SIGSTOP)
	t.Logf("SIGSTOP node 1's workflowd (pid %d)", w1.p.cmd.Process.Pid)
	checkCompleted(t, c, w2, ids)
	revs := map[string]int64{}
	for _, id := range ids {
		in, _ := w2.client.Get(t.Context(), id)
		revs[id] = in.GetUpdatedUnixNano()
	}
	w1.signal(t, syscall.SIGCONT)
	eventually.NoError(t, 30*time.Second, "the resumed owner finds its leases lost", func() error {
		if n := metric(t, w1.admin, "pleiades_workflowd_leases_lost_total"); n < float64(len(ids)) {
			return fmt.Errorf("%v leases lost", n)
		}
		if n := metric(t, w1.admin, "pleiades_workflowd_instances_owned"); n != 0 {
			return fmt.Errorf("%v instances still owned", n)
		}
		return nil
	})
	// Nothing the old owner did after waking changed an instance.
	checkCompleted(t, c, w2, ids)
	for _, id := range ids {
		in, _ := w2.client.Get(t.Context(), id)
		if in.GetUpdatedUnixNano() != revs[id] || in.GetStatus() != workflowpb.Status_STATUS_COMPLETED {
			t.Errorf("%s changed after the frozen owner resumed", id)
		}
	}
}
