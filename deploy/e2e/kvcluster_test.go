package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// devNode is one node of a `pleiades dev` cluster, from cluster.json.
type devNode struct {
	Index    int
	NodeID   uint64
	RaftAddr string
}

// devCluster is a running `pleiades dev --nodes N` with its data dir.
type devCluster struct {
	dir    string
	offset int
	count  int
	sup    string
	proc   *proc
	nodes  []devNode
}

// startDev starts `pleiades dev` over dir and waits until every daemon
// of every node is ready.
func startDev(t *testing.T, dir string, nodes, offset int) *devCluster {
	t.Helper()
	c := &devCluster{dir: dir, offset: offset, count: nodes, sup: fmt.Sprintf("127.0.0.1:%d", 7500+offset)}
	c.start(t)
	return c
}

// start (re)starts the supervisor over the cluster's data dir and waits
// for readiness.
func (c *devCluster) start(t *testing.T) {
	t.Helper()
	c.proc = start(t, "dev", "--nodes", strconv.Itoa(c.count), "--data-dir", c.dir,
		"--port-offset", strconv.Itoa(c.offset), "--bin-dir", binDir)
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
		return allReady(v, c.count*len(daemons))
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
		t.Fatalf("cluster.json: %v", err)
	}
	c.nodes = c.nodes[:0]
	for _, n := range cl.Nodes {
		c.nodes = append(c.nodes, devNode{Index: n.Node, NodeID: n.NodeID, RaftAddr: n.Daemons["raftd"].Bus})
	}
	if len(c.nodes) != c.count {
		t.Fatalf("cluster.json lists %d nodes; want %d", len(c.nodes), c.count)
	}
}

// stop sends SIGTERM to the supervisor and checks that it and every
// daemon exited.
func (c *devCluster) stop(t *testing.T) {
	t.Helper()
	v, err := status(t, c.sup)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, c.proc, 90*time.Second)
	if c.proc.err != nil {
		t.Errorf("pleiades dev exit after SIGTERM: %v", c.proc.err)
	}
	for _, d := range v.Daemons {
		if alive(d.PID) {
			t.Errorf("%s (pid %d) alive after the supervisor stopped", d.Name, d.PID)
		}
	}
}

// daemon returns the supervisor's view of one daemon ("node2/raftd").
func (c *devCluster) daemon(t *testing.T, name string) (daemonStatus, error) {
	t.Helper()
	v, err := status(t, c.sup)
	if err != nil {
		return daemonStatus{}, err
	}
	for _, d := range v.Daemons {
		if d.Name == name {
			return d, nil
		}
	}
	return daemonStatus{}, fmt.Errorf("supervisor lists no %s", name)
}

// mustInit initializes the cluster cl reaches, or fails the test.
func mustInit(t *testing.T, ctx context.Context, cl *kvclient.Client, opts kvclient.InitOptions) {
	t.Helper()
	if _, err := cl.Init(ctx, opts); err != nil {
		t.Fatalf("init: %v", err)
	}
}

// waitRestarted waits until the supervisor has restarted the daemon that
// had pid old and the new process is ready.
func (c *devCluster) waitRestarted(t *testing.T, name string, old int) daemonStatus {
	t.Helper()
	var d daemonStatus
	eventually.NoError(t, 60*time.Second, name+" restarted by the supervisor", func() (err error) {
		if d, err = c.daemon(t, name); err != nil {
			return err
		}
		if d.Restarts < 1 || !d.Ready || d.PID == 0 || d.PID == old {
			return fmt.Errorf("%s: %+v", name, d)
		}
		return nil
	})
	return d
}

// nodeOf returns the index (1..N) of the node with the given id, 0 when
// unknown.
func (c *devCluster) nodeOf(id uint64) int {
	for _, n := range c.nodes {
		if n.NodeID == id {
			return n.Index
		}
	}
	return 0
}

func (c *devCluster) raftAddrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.RaftAddr)
	}
	return out
}

// client opens a Go client on addrs (default: every node's raftd) with
// node 1's certificate.
func (c *devCluster) client(t *testing.T, attempt time.Duration, addrs ...string) *kvclient.Client {
	t.Helper()
	if len(addrs) == 0 {
		addrs = c.raftAddrs()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := kvclient.New(ctx, kvclient.Config{
		Addrs:          addrs,
		CertsDir:       filepath.Join(c.dir, "node1", "certs"),
		AttemptTimeout: attempt,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := cl.Close(ctx); err != nil {
			t.Errorf("client close: %v", err)
		}
	})
	return cl
}

// replicas lists every node's local replicas; nodes that do not answer
// within the timeout are missing from the map.
func (c *devCluster) replicas(cl *kvclient.Client, timeout time.Duration) (map[int][]*kvpb.ReplicaStatus, error) {
	out := map[int][]*kvpb.ReplicaStatus{}
	var errs []error
	for _, n := range c.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		resp, err := cl.Ranges(ctx, n.RaftAddr)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", n.Index, err))
			continue
		}
		out[n.Index] = resp.GetReplicas()
	}
	return out, errors.Join(errs...)
}

// spanHas reports whether the replica's range holds key.
func spanHas(r *kvpb.ReplicaStatus, key []byte) bool {
	d := r.GetDescriptor_()
	return bytes.Compare(key, d.GetStartKey()) >= 0 && (len(d.GetEndKey()) == 0 || bytes.Compare(key, d.GetEndKey()) < 0)
}

// leaderOf finds the node whose replica of key's range says it leads,
// with the highest term, and that range's id.
func (c *devCluster) leaderOf(cl *kvclient.Client, key []byte) (node int, rangeID uint64, err error) {
	reps, rerr := c.replicas(cl, 5*time.Second)
	var term uint64
	for idx, rs := range reps {
		for _, r := range rs {
			if spanHas(r, key) && r.GetRaftState() == "leader" && r.GetTerm() >= term {
				node, rangeID, term = idx, r.GetDescriptor_().GetRangeId(), r.GetTerm()
			}
		}
	}
	if node == 0 {
		return 0, 0, fmt.Errorf("no leader of the range of %q found (%v)", key, rerr)
	}
	return node, rangeID, nil
}

// waitCaughtUp waits until node's replicas of every range have applied
// at least the commit index their leader reports.
func (c *devCluster) waitCaughtUp(t *testing.T, cl *kvclient.Client, node int) {
	t.Helper()
	eventually.NoError(t, 60*time.Second, fmt.Sprintf("node %d caught up", node), func() error {
		reps, err := c.replicas(cl, 5*time.Second)
		if err != nil {
			return err
		}
		commit := map[uint64]uint64{}
		for _, rs := range reps {
			for _, r := range rs {
				if r.GetRaftState() == "leader" {
					commit[r.GetDescriptor_().GetRangeId()] = max(commit[r.GetDescriptor_().GetRangeId()], r.GetCommitIndex())
				}
			}
		}
		if len(reps[node]) == 0 {
			return fmt.Errorf("node %d lists no replicas", node)
		}
		for _, r := range reps[node] {
			id := r.GetDescriptor_().GetRangeId()
			want, ok := commit[id]
			if !ok {
				return fmt.Errorf("range %d has no leader", id)
			}
			if r.GetAppliedIndex() < want {
				return fmt.Errorf("range %d: node %d applied %d < leader commit %d", id, node, r.GetAppliedIndex(), want)
			}
		}
		return nil
	})
}

// writeLog records the writes of concurrent writers: every acknowledged
// value per key, and the keys whose outcome is unknown.
type writeLog struct {
	mu      sync.Mutex
	acked   map[string]string
	unknown map[string]string
	acks    []ack
	errs    int
	lastErr error
}

// ack is one acknowledged write: when its call started and returned.
type ack struct{ start, end time.Time }

func newWriteLog() *writeLog {
	return &writeLog{acked: map[string]string{}, unknown: map[string]string{}}
}

func (w *writeLog) record(key, value string, start time.Time, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.unknown[key] = value
		w.errs++
		w.lastErr = err
		return
	}
	w.acked[key] = value
	w.acks = append(w.acks, ack{start: start, end: time.Now()})
}

// firstAckStartedAfter returns the first acknowledgement of a write
// whose call started at or after t.
func (w *writeLog) firstAckStartedAfter(t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for _, a := range w.acks {
		if !a.start.Before(t) && (first.IsZero() || a.end.Before(first)) {
			first = a.end
		}
	}
	return first, !first.IsZero()
}

// longestGap returns the longest time without an acknowledgement between
// from and to.
func (w *writeLog) longestGap(from, to time.Time) time.Duration {
	w.mu.Lock()
	ends := make([]time.Time, 0, len(w.acks))
	for _, a := range w.acks {
		if a.end.After(from) && a.end.Before(to) {
			ends = append(ends, a.end)
		}
	}
	w.mu.Unlock()
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	prev, gap := from, time.Duration(0)
	for _, e := range append(ends, to) {
		gap = max(gap, e.Sub(prev))
		prev = e
	}
	return gap
}

func (w *writeLog) counts() (acked, errs int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked), w.errs
}

// writers runs n goroutines that put fresh keys under prefix until stop
// is closed; each put may take up to opTimeout (retries included).
type writers struct {
	log  *writeLog
	stop chan struct{}
	wg   sync.WaitGroup
}

func startWriters(cl *kvclient.Client, n int, prefix string, opTimeout time.Duration) *writers {
	ws := &writers{log: newWriteLog(), stop: make(chan struct{})}
	runCtx, cancel := context.WithCancel(context.Background())
	go func() {
		<-ws.stop
		cancel()
	}()
	for i := range n {
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-ws.stop:
					return
				default:
				}
				key := fmt.Sprintf("%s/w%02d/%06d", prefix, i, seq)
				value := fmt.Sprintf("value-%d-%d-%d", i, seq, time.Now().UnixNano())
				ctx, cancelOp := context.WithTimeout(runCtx, opTimeout)
				start := time.Now()
				_, err := cl.Put(ctx, []byte(key), []byte(value))
				cancelOp()
				ws.log.record(key, value, start, err)
				if err != nil {
					// Do not spin on a persistent error.
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	return ws
}

// halt stops the writers and waits for them.
func (ws *writers) halt() {
	close(ws.stop)
	ws.wg.Wait()
}

// verify checks that every acknowledged write reads back with its value
// (linearizable Gets, in parallel), that a linearizable Scan of prefix
// finds every acknowledged key with its value and no key that was never
// written, and that keys in deleted read as absent.
func verify(t *testing.T, cl *kvclient.Client, prefix string, acked, unknown map[string]string, deleted map[string]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	keys := make([]string, 0, len(acked)+len(deleted))
	for k := range acked {
		keys = append(keys, k)
	}
	for k := range deleted {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var (
		mu  sync.Mutex
		bad []string
	)
	fail := func(s string) {
		mu.Lock()
		bad = append(bad, s)
		mu.Unlock()
	}
	inParallel(8, len(keys), func(i int) {
		k := keys[i]
		v, found, err := cl.Get(ctx, []byte(k))
		switch {
		case err != nil:
			fail(fmt.Sprintf("get %q: %v", k, err))
		case deleted[k] && found:
			fail(fmt.Sprintf("get %q: deleted key found with %q", k, v.Value))
		case deleted[k]:
		case !found:
			fail(fmt.Sprintf("get %q: acknowledged write lost (want %q)", k, acked[k]))
		case string(v.Value) != acked[k]:
			fail(fmt.Sprintf("get %q = %q; want %q", k, v.Value, acked[k]))
		}
	})
	if len(bad) > 0 {
		t.Errorf("%d of %d keys wrong; first: %s", len(bad), len(keys), strings.Join(bad[:min(len(bad), 10)], "; "))
	}
	t.Logf("%d acknowledged writes and %d deletions read back with linearizable gets", len(acked), len(deleted))

	kvs, err := cl.Scan(ctx, []byte(prefix+"/"), []byte(prefix+"0"), kvclient.ScanOptions{PageSize: 500}).Collect()
	if err != nil {
		t.Fatalf("scan %s: %v", prefix, err)
	}
	got := map[string]string{}
	for _, kv := range kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	missing, extra := 0, 0
	for k, v := range acked {
		if got[k] != v {
			missing++
			if missing <= 5 {
				t.Errorf("scan: %q = %q; want %q", k, got[k], v)
			}
		}
	}
	for k, v := range got {
		if _, ok := acked[k]; ok {
			continue
		}
		if uv, ok := unknown[k]; !ok || uv != v || deleted[k] {
			extra++
			if extra <= 5 {
				t.Errorf("scan: %q = %q was never written (or was deleted)", k, v)
			}
		}
	}
	t.Logf("scan of %s: %d keys (%d acknowledged, %d of unknown outcome), %d wrong, %d unexpected", prefix, len(got), len(acked), len(unknown), missing, extra)
}

// procSample is a process's CPU time and resident memory.
type procSample struct {
	at       time.Time
	cpuTicks uint64 // utime + stime, in USER_HZ (100/s on Linux)
	rssKiB   uint64
}

const userHZ = 100

// sampleProc reads /proc/<pid>/stat and /proc/<pid>/status.
func sampleProc(pid int) (procSample, error) {
	s := procSample{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name (which may hold spaces) in ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return s, fmt.Errorf("pid %d: short stat", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return s, fmt.Errorf("pid %d stat: %w", pid, err)
	}
	s.cpuTicks = ut + st
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb := strings.Fields(rest)
			if len(kb) > 0 {
				s.rssKiB, err = strconv.ParseUint(kb[0], 10, 64)
			}
			return s, err
		}
	}
	return s, fmt.Errorf("pid %d: no VmRSS", pid)
}

// cpuShare is the share of one core used between two samples.
func cpuShare(a, b procSample) float64 {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(b.cpuTicks-a.cpuTicks) / userHZ / secs
}

// latencies summarizes durations: median, 99th percentile and maximum.
func latencies(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return fmt.Sprintf("p50 %v, p99 %v, max %v", at(0.5).Round(time.Millisecond), at(0.99).Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}
