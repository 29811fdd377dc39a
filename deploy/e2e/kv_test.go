package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/kvclient"
)

// raftd's default raft timing (raftd.Config): 100ms ticks, 10 ticks to an
// election.
const electionTimeout = time.Second

// TestKVLeaderFailover: writers put keys through the Go client on a
// three-node `pleiades dev` cluster; the raftd leading their range gets
// SIGKILL; writes resume, the supervisor restarts the raftd, it catches
// up, and every acknowledged write reads back with its value.
func TestKVLeaderFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e tests run real processes; skipped under -short")
	}
	c := startDev(t, t.TempDir(), 3, 3100)
	// A short attempt timeout lets the client give up on the dead leader
	// soon; a retried Put writes the same value again.
	cl := c.client(t, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mustInit(t, ctx, cl, kvclient.InitOptions{})

	const prefix = "failover"
	ws := startWriters(cl, 8, prefix, 30*time.Second)
	halted := false
	defer func() {
		if !halted {
			ws.halt()
		}
	}()
	eventually.NoError(t, 30*time.Second, "first writes acknowledged", func() error {
		if n, _ := ws.log.counts(); n < 50 {
			return fmt.Errorf("%d writes acknowledged", n)
		}
		return nil
	})
	time.Sleep(time.Second)

	var node int
	var rangeID uint64
	eventually.NoError(t, 30*time.Second, "leader of the writers' range", func() (err error) {
		node, rangeID, err = c.leaderOf(cl, []byte(prefix+"/"))
		return err
	})
	name := fmt.Sprintf("node%d/raftd", node)
	victim, err := c.daemon(t, name)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := ws.log.counts()
	killed := time.Now()
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL %s (pid %d), leader of range %d, after %d acknowledged writes", name, victim.PID, rangeID, before)

	var resumed time.Time
	eventually.NoError(t, 30*time.Second, "writes resume after the leader's SIGKILL", func() error {
		var ok bool
		if resumed, ok = ws.log.firstAckStartedAfter(killed); !ok {
			return fmt.Errorf("no write started after the kill was acknowledged")
		}
		return nil
	})
	took := resumed.Sub(killed)
	t.Logf("writes resumed %v after the SIGKILL (two election timeouts: %v; the client's attempt timeout: %v)", took.Round(time.Millisecond), 2*electionTimeout, time.Second)

	restarted := c.waitRestarted(t, name, victim.PID)
	t.Logf("supervisor restarted %s as pid %d", name, restarted.PID)
	newLeader := 0
	eventually.NoError(t, 30*time.Second, "a leader after the restart", func() (err error) {
		newLeader, _, err = c.leaderOf(cl, []byte(prefix+"/"))
		return err
	})
	// Keep writing a moment with the restarted raftd in the group.
	time.Sleep(time.Second)
	ws.halt()
	halted = true
	t.Logf("longest time without an acknowledged write around the kill: %v; range %d now led by node %d",
		ws.log.longestGap(killed.Add(-time.Second), resumed.Add(time.Second)).Round(time.Millisecond), rangeID, newLeader)

	acked, errs := ws.log.counts()
	t.Logf("%d writes acknowledged, %d failed or timed out (last error: %v)", acked, errs, ws.log.lastErr)
	c.waitCaughtUp(t, cl, node)
	verify(t, cl, prefix, ws.log.acked, ws.log.unknown, nil)
}

// TestKVClusterRestart: data written to a three-node cluster survives
// SIGTERM of the whole `pleiades dev` and a start over the same data dir,
// then SIGKILL of one node's stored and raftd together. The killed node's
// own replicas, read with stale reads served by that node alone, hold
// everything once caught up.
func TestKVClusterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e tests run real processes; skipped under -short")
	}
	dir := t.TempDir()
	c := startDev(t, dir, 3, 3200)
	const prefix = "restart"
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cl := c.client(t, 5*time.Second)
	// Four user ranges, each round of writes spread over two of them.
	split := [][]byte{[]byte(prefix + "/a/w04"), []byte(prefix + "/b"), []byte(prefix + "/b/w04")}
	mustInit(t, ctx, cl, kvclient.InitOptions{SplitPoints: split})
	acked, unknown := map[string]string{}, map[string]string{}
	// write puts fresh keys under prefix/<round> until n are acknowledged.
	write := func(round string, n int) {
		t.Helper()
		ws := startWriters(cl, 8, prefix+"/"+round, 60*time.Second)
		halted := false
		defer func() {
			if !halted {
				ws.halt()
			}
		}()
		eventually.NoError(t, 60*time.Second, round+" writes", func() error {
			if a, _ := ws.log.counts(); a < n {
				return fmt.Errorf("%d of %d writes acknowledged", a, n)
			}
			return nil
		})
		ws.halt()
		halted = true
		a, errs := ws.log.counts()
		t.Logf("round %s: %d writes acknowledged, %d failed", round, a, errs)
		for k, v := range ws.log.acked {
			acked[k] = v
		}
		for k, v := range ws.log.unknown {
			unknown[k] = v
		}
	}
	write("a", 400)

	// Delete every tenth acknowledged key.
	deleted := map[string]bool{}
	keys := make([]string, 0, len(acked))
	for k := range acked {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i%10 != 0 {
			continue
		}
		if _, err := cl.Delete(ctx, []byte(k)); err != nil {
			t.Fatalf("delete %q: %v", k, err)
		}
		deleted[k] = true
		delete(acked, k)
	}

	start := time.Now()
	c.stop(t)
	t.Logf("whole cluster stopped with SIGTERM in %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	c.start(t)
	t.Logf("cluster restarted over the same data dir, ready in %v", time.Since(start).Round(time.Millisecond))
	verify(t, cl, prefix, acked, unknown, deleted)

	// The CLI reads what the Go client wrote.
	certs := "--certs-dir=" + filepath.Join(dir, "node1", "certs")
	k := keys[1] // keys[0] was deleted
	out, err := pleiades(t, "kv", "get", certs, "--addr="+strings.Join(c.raftAddrs(), ","), k)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, acked[k]) {
		t.Errorf("pleiades kv get %s printed %q; want the value %q", k, out, acked[k])
	}

	// SIGKILL stored and raftd of the node leading the first range, found
	// with `pleiades ranges --output json` on each node.
	node := 0
	eventually.NoError(t, 30*time.Second, "leader of the first range", func() error {
		var term uint64
		for _, n := range c.nodes {
			out, err := pleiades(t, "ranges", certs, "--addr="+n.RaftAddr, "--output=json")
			if err != nil {
				return err
			}
			var v struct {
				Replicas []struct {
					StartKey  string `json:"start_key"`
					EndKey    string `json:"end_key"`
					RaftState string `json:"raft_state"`
					Term      uint64 `json:"term"`
				} `json:"replicas"`
			}
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				return fmt.Errorf("pleiades ranges: %w: %s", err, out)
			}
			key := prefix + "/a/w00"
			for _, r := range v.Replicas {
				if key >= r.StartKey && (r.EndKey == "" || key < r.EndKey) && r.RaftState == "leader" && r.Term >= term {
					node, term = n.Index, r.Term
				}
			}
		}
		if node == 0 {
			return fmt.Errorf("no node leads the range of %s/a/w00", prefix)
		}
		return nil
	})
	var victims []daemonStatus
	for _, d := range []string{"raftd", "stored"} {
		v, err := c.daemon(t, fmt.Sprintf("node%d/%s", node, d))
		if err != nil {
			t.Fatal(err)
		}
		victims = append(victims, v)
	}
	for _, v := range victims {
		if err := syscall.Kill(v.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("SIGKILL node %d raftd (pid %d) and stored (pid %d)", node, victims[0].PID, victims[1].PID)
	// Write while the node is down and restarting.
	write("b", 400)
	for _, v := range victims {
		c.waitRestarted(t, v.Name, v.PID)
	}
	verify(t, cl, prefix, acked, unknown, deleted)

	// The restarted node's own replicas hold every write once caught up.
	c.waitCaughtUp(t, cl, node)
	local := c.client(t, 5*time.Second, c.nodes[node-1].RaftAddr)
	eventually.NoError(t, 30*time.Second, fmt.Sprintf("node %d serves every key from its own replicas", node), func() error {
		kvs, err := local.Scan(ctx, []byte(prefix+"/"), []byte(prefix+"0"), kvclient.ScanOptions{Consistency: kvclient.Stale}).Collect()
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, kv := range kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		var wrong []string
		for k, v := range acked {
			if got[k] != v {
				wrong = append(wrong, k)
			}
		}
		for k := range deleted {
			if _, ok := got[k]; ok {
				wrong = append(wrong, k+" (deleted)")
			}
		}
		if len(wrong) > 0 {
			sort.Strings(wrong)
			return fmt.Errorf("%d keys wrong on node %d, e.g. %s", len(wrong), node, strings.Join(wrong[:min(5, len(wrong))], ", "))
		}
		return nil
	})
}

// TestKVThousandRanges: a three-node cluster initialized with 1,000 user
// ranges (PLEIADES_E2E_RANGES overrides it, e.g. 10000 to measure a node
// with 10,000 replicas) elects a leader in each and serves a put and a get
// in each; once quiesced, raftd's CPU and resident memory per node are
// logged.
func TestKVThousandRanges(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e tests run real processes; skipped under -short")
	}
	userRanges := 1000
	if v := os.Getenv("PLEIADES_E2E_RANGES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 || n > 99999 {
			t.Fatalf("PLEIADES_E2E_RANGES=%q: want 2..99999", v)
		}
		userRanges = n
	}
	scale := time.Duration(max(1, userRanges/1000))
	c := startDev(t, t.TempDir(), 3, 3300)
	// Generous attempts: bootstrapping 1,000 ranges takes seconds on a
	// loaded machine, and a retried Init reports the cluster as existing.
	cl := c.client(t, scale*60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), scale*150*time.Second)
	defer cancel()

	// The empty node's cost, for comparison: 5 s before init.
	raftPIDs := map[int]int{}
	emptyStart, idleBefore := map[int]procSample{}, map[int]procSample{}
	for _, n := range c.nodes {
		d, err := c.daemon(t, fmt.Sprintf("node%d/raftd", n.Index))
		if err != nil {
			t.Fatal(err)
		}
		raftPIDs[n.Index] = d.PID
		if emptyStart[n.Index], err = sampleProc(d.PID); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Second)
	for idx, pid := range raftPIDs {
		var err error
		if idleBefore[idx], err = sampleProc(pid); err != nil {
			t.Fatal(err)
		}
	}

	// Split points r00001..r00999 after the first user range [0x01, r00001).
	var split [][]byte
	keys := []string{"a/x"}
	for i := 1; i < userRanges; i++ {
		split = append(split, fmt.Appendf(nil, "r%05d", i))
		keys = append(keys, fmt.Sprintf("r%05d/x", i))
	}
	start := time.Now()
	res, err := cl.Init(ctx, kvclient.InitOptions{SplitPoints: split})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	if res.AlreadyInitialized {
		t.Errorf("init of a new cluster says it was initialized already")
	}
	if len(res.Descriptors) != userRanges+1 {
		t.Fatalf("init made %d ranges; want %d user ranges and the meta range", len(res.Descriptors), userRanges)
	}
	t.Logf("init of %d ranges took %v", len(res.Descriptors), time.Since(start).Round(time.Millisecond))

	start = time.Now()
	commitAtElection := map[uint64]uint64{}
	eventually.NoError(t, scale*90*time.Second, "every range has a leader that every replica knows", func() error {
		reps, err := c.replicas(cl, 20*time.Second)
		if err != nil {
			return err
		}
		leaders := map[uint64]uint64{}
		for idx, rs := range reps {
			if len(rs) != userRanges+1 {
				return fmt.Errorf("node %d lists %d replicas", idx, len(rs))
			}
			for _, r := range rs {
				id := r.GetDescriptor_().GetRangeId()
				if r.GetLeaderNodeId() == 0 {
					return fmt.Errorf("range %d: node %d knows no leader (%s)", id, idx, r.GetRaftState())
				}
				if r.GetRaftState() == "leader" {
					leaders[id] = r.GetCommitIndex()
				}
			}
		}
		if len(leaders) != userRanges+1 {
			return fmt.Errorf("%d of %d ranges have a leader", len(leaders), userRanges+1)
		}
		commitAtElection = leaders
		return nil
	})
	t.Logf("all %d ranges led after %v", userRanges+1, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	var (
		mu         sync.Mutex
		bad        []string
		puts, gets []time.Duration
	)
	inParallel(16, len(keys), func(i int) {
		k, want := []byte(keys[i]), fmt.Appendf(nil, "value of range %d", i)
		err := func() error {
			t0 := time.Now()
			if _, err := cl.Put(ctx, k, want); err != nil {
				return fmt.Errorf("put %s: %w", k, err)
			}
			t1 := time.Now()
			v, found, err := cl.Get(ctx, k)
			mu.Lock()
			puts, gets = append(puts, t1.Sub(t0)), append(gets, time.Since(t1))
			mu.Unlock()
			switch {
			case err != nil:
				return fmt.Errorf("get %s: %w", k, err)
			case !found || string(v.Value) != string(want):
				return fmt.Errorf("get %s = %q, %v; want %q", k, v.Value, found, want)
			}
			return nil
		}()
		if err != nil {
			mu.Lock()
			bad = append(bad, err.Error())
			mu.Unlock()
		}
	})
	if len(bad) > 0 {
		t.Fatalf("%d of %d ranges failed a put and get; first: %s", len(bad), len(keys), strings.Join(bad[:min(5, len(bad))], "; "))
	}
	t.Logf("put and get in each of %d ranges took %v (16 at a time); put latency %s; get latency %s",
		len(keys), time.Since(start).Round(time.Millisecond), latencies(puts), latencies(gets))

	// Each user range committed the put: its commit index moved.
	reps, err := c.replicas(cl, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	commitNow := map[uint64]uint64{}
	for _, rs := range reps {
		for _, r := range rs {
			id := r.GetDescriptor_().GetRangeId()
			commitNow[id] = max(commitNow[id], r.GetCommitIndex())
		}
	}
	moved := 0
	for id, c0 := range commitAtElection {
		if commitNow[id] > c0 {
			moved++
		}
	}
	// Every user range took a write; the meta range may or may not.
	if moved < userRanges {
		t.Errorf("%d ranges committed a write; want every one of the %d user ranges", moved, userRanges)
	}

	start = time.Now()
	eventually.NoError(t, 90*time.Second, "every replica quiesced", func() error {
		reps, err := c.replicas(cl, 20*time.Second)
		if err != nil {
			return err
		}
		for idx, rs := range reps {
			n := 0
			for _, r := range rs {
				if !r.GetQuiesced() {
					n++
				}
			}
			if n > 0 {
				return fmt.Errorf("node %d: %d of %d replicas not quiesced", idx, n, len(rs))
			}
		}
		return nil
	})
	t.Logf("all replicas quiesced %v after the last put", time.Since(start).Round(time.Millisecond))

	// Idle cost: CPU over a 10 s window and resident memory per raftd.
	const window = 10 * time.Second
	first := map[int]procSample{}
	for idx, pid := range raftPIDs {
		if first[idx], err = sampleProc(pid); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(window)
	for _, n := range c.nodes {
		idx := n.Index
		last, err := sampleProc(raftPIDs[idx])
		if err != nil {
			t.Fatal(err)
		}
		perRange := (float64(last.rssKiB) - float64(idleBefore[idx].rssKiB)) / float64(userRanges+1)
		t.Logf("node %d raftd idle with %d replicas: CPU %.2f%% of one core over %v (%.2f%% before init); RSS %.1f MiB (%.1f MiB before init), %.1f KiB per replica above the empty node",
			idx, userRanges+1, 100*cpuShare(first[idx], last), window, 100*cpuShare(emptyStart[idx], idleBefore[idx]),
			float64(last.rssKiB)/1024, float64(idleBefore[idx].rssKiB)/1024, perRange)
	}
	reps, err = c.replicas(cl, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for idx, rs := range reps {
		n := 0
		for _, r := range rs {
			if !r.GetQuiesced() {
				n++
			}
		}
		t.Logf("node %d: %d of %d replicas awake after the idle window", idx, n, len(rs))
	}
}

// TestKVSnapshotCatchUp: a follower's raftd is frozen (SIGSTOP) while
// writes to its range go on until the leader truncates its log past the
// follower; thawed, the follower can only catch up by a snapshot, which
// real processes build with stored's StreamRange and install with its
// IngestRange. The follower then holds exactly the leader's data.
func TestKVSnapshotCatchUp(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e tests run real processes; skipped under -short")
	}
	c := startDev(t, t.TempDir(), 3, 3500)
	cl := c.client(t, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	mustInit(t, ctx, cl, kvclient.InitOptions{})
	const prefix = "snap"
	acked, unknown := map[string]string{}, map[string]string{}
	write := func(cl *kvclient.Client, round string, until func(acks int) error) {
		t.Helper()
		ws := startWriters(cl, 8, prefix+"/"+round, 30*time.Second)
		defer func() {
			ws.halt()
			maps.Copy(acked, ws.log.acked)
			maps.Copy(unknown, ws.log.unknown)
		}()
		eventually.NoError(t, 90*time.Second, round+" writes", func() error {
			a, _ := ws.log.counts()
			return until(a)
		})
	}
	write(cl, "a", func(a int) error {
		if a < 100 {
			return fmt.Errorf("%d of 100 writes acknowledged", a)
		}
		return nil
	})

	var leader, follower int
	// frozenAt is the follower's last log index: no writes run now, so
	// its log does not grow before the freeze.
	var rangeID, frozenAt, followerReplica uint64
	eventually.NoError(t, 30*time.Second, "a follower of the user range", func() (err error) {
		if leader, rangeID, err = c.leaderOf(cl, []byte(prefix+"/a")); err != nil {
			return err
		}
		reps, err := c.replicas(cl, 5*time.Second)
		if err != nil {
			return err
		}
		for idx, rs := range reps {
			for _, r := range rs {
				if idx != leader && r.GetDescriptor_().GetRangeId() == rangeID {
					follower, frozenAt, followerReplica = idx, r.GetLastIndex(), r.GetReplicaId()
				}
			}
		}
		if follower == 0 {
			return fmt.Errorf("no follower of range %d listed", rangeID)
		}
		return nil
	})
	d, err := c.daemon(t, fmt.Sprintf("node%d/raftd", follower))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(d.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if err := syscall.Kill(d.PID, syscall.SIGCONT); err != nil {
				t.Error(err)
			}
		}
	}
	defer thaw()
	t.Logf("node %d raftd (pid %d) frozen with log index %d of range %d (leader: node %d)", follower, d.PID, frozenAt, rangeID, leader)

	// Write through the other nodes until the leader's log starts past
	// the follower's last entry (raftd truncates past LogTruncateEntries,
	// default 1,000, ignoring followers on nodes it no longer hears).
	var others []string
	for _, n := range c.nodes {
		if n.Index != follower {
			others = append(others, n.RaftAddr)
		}
	}
	live := c.client(t, 5*time.Second, others...)
	leaderAddr := c.nodes[leader-1].RaftAddr
	write(live, "b", func(int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := live.Ranges(ctx, leaderAddr)
		if err != nil {
			return err
		}
		for _, r := range resp.GetReplicas() {
			if r.GetDescriptor_().GetRangeId() != rangeID {
				continue
			}
			if r.GetFirstIndex() <= frozenAt+1 {
				return fmt.Errorf("leader's log starts at %d; the follower's ends at %d", r.GetFirstIndex(), frozenAt)
			}
			// Appends the leader sent before it stopped hearing from the
			// follower wait in the follower's buffers and land when it is
			// thawed: the leader's log must start past all of them too
			// (everything below its next index for the follower).
			for _, f := range r.GetFollowers() {
				if f.GetReplicaId() == followerReplica && r.GetFirstIndex() <= f.GetNext() {
					return fmt.Errorf("leader's log starts at %d; it has sent the follower up to %d", r.GetFirstIndex(), f.GetNext()-1)
				}
			}
			return nil
		}
		return fmt.Errorf("node %d lists no replica of range %d", leader, rangeID)
	})
	thaw()
	c.waitCaughtUp(t, cl, follower)
	if n := metric(t, d.AdminAddr, "pleiades_raftd_snapshots_applied_total"); n < 1 {
		t.Errorf("node %d installed %v snapshots; want at least 1 (it was behind the leader's log)", follower, n)
	}
	verify(t, cl, prefix, acked, unknown, nil)

	// The follower's own replica holds exactly what the leader's does.
	local := func(addr string) (map[string]string, error) {
		kvs, err := c.client(t, 5*time.Second, addr).Scan(ctx, []byte(prefix+"/"), []byte(prefix+"0"), kvclient.ScanOptions{Consistency: kvclient.Stale}).Collect()
		out := map[string]string{}
		for _, kv := range kvs {
			out[string(kv.Key)] = string(kv.Value)
		}
		return out, err
	}
	want, err := local(leaderAddr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := local(c.nodes[follower-1].RaftAddr)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("node %d holds %d keys, its leader %d; they differ", follower, len(got), len(want))
	}
	t.Logf("node %d caught up by snapshot: %d keys, %d writes acknowledged", follower, len(got), len(acked))
}

// metric reads one unlabelled metric from a daemon's admin /metrics.
func metric(t *testing.T, adminAddr, name string) float64 {
	t.Helper()
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			return f
		}
	}
	t.Fatalf("%s/metrics has no %s", adminAddr, name)
	return 0
}

// TestKVLargeValuesAtOnce: many large values written at once make rounds
// whose writes exceed one bus frame and whose appends exceed one raft
// frame (once a crash loop of every raftd: stored refused the round's
// write), over several ranges. Every put succeeds, every node serves every
// value, a scan of them all comes in pages, one DeleteRange removes them,
// and each raftd is still the process it was.
func TestKVLargeValuesAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e tests run real processes; skipped under -short")
	}
	c := startDev(t, t.TempDir(), 3, 3600)
	cl := c.client(t, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// Four ranges of three values each: a node's round may carry several
	// ranges' worth.
	split := [][]byte{[]byte("big/03"), []byte("big/06"), []byte("big/09")}
	mustInit(t, ctx, cl, kvclient.InitOptions{SplitPoints: split})
	pids := map[string]int{}
	for _, n := range c.nodes {
		d, err := c.daemon(t, fmt.Sprintf("node%d/raftd", n.Index))
		if err != nil {
			t.Fatal(err)
		}
		pids[d.Name] = d.PID
	}
	const writers, size = 12, 3 << 20 // 36 MiB at once
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, size) }
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = cl.Put(ctx, fmt.Appendf(nil, "big/%02d", i), value(i))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("large puts: %v", err)
	}
	for _, n := range c.nodes {
		local := c.client(t, 5*time.Second, n.RaftAddr)
		eventually.NoError(t, 30*time.Second, fmt.Sprintf("node %d holds every value", n.Index), func() error {
			for i := range writers {
				v, found, err := local.Get(ctx, fmt.Appendf(nil, "big/%02d", i), kvclient.WithConsistency(kvclient.Stale))
				if err != nil {
					return err
				}
				if !found || !bytes.Equal(v.Value, value(i)) {
					return fmt.Errorf("big/%02d: found %v, %d bytes", i, found, len(v.Value))
				}
			}
			return nil
		})
	}
	// A scan of them all (36 MiB, over a frame) comes in pages, both ways.
	for _, reverse := range []bool{false, true} {
		kvs, err := cl.Scan(ctx, []byte("big/"), []byte("big0"), kvclient.ScanOptions{Reverse: reverse}).Collect()
		if err != nil {
			t.Fatalf("scan (reverse %v): %v", reverse, err)
		}
		if len(kvs) != writers {
			t.Fatalf("scan (reverse %v): %d entries; want %d", reverse, len(kvs), writers)
		}
		for j, kv := range kvs {
			i := j
			if reverse {
				i = writers - 1 - j
			}
			if string(kv.Key) != fmt.Sprintf("big/%02d", i) || !bytes.Equal(kv.Value, value(i)) {
				t.Errorf("scan (reverse %v) entry %d: %q, %d bytes", reverse, j, kv.Key, len(kv.Value))
			}
		}
	}
	// And one DeleteRange removes them all, range by range; the last
	// range's span is open-ended.
	n, err := cl.DeleteRange(ctx, []byte("big/"), nil)
	if err != nil || n != writers {
		t.Fatalf("DeleteRange = %d, %v; want %d", n, err, writers)
	}
	if kvs, err := cl.Scan(ctx, []byte("big/"), nil, kvclient.ScanOptions{KeysOnly: true}).Collect(); err != nil || len(kvs) != 0 {
		t.Fatalf("after DeleteRange: %d keys, %v; want none", len(kvs), err)
	}
	for name, pid := range pids {
		d, err := c.daemon(t, name)
		if err != nil {
			t.Fatal(err)
		}
		if d.PID != pid {
			t.Errorf("%s restarted (pid %d, was %d)", name, d.PID, pid)
		}
	}
}
