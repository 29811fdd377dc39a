package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pleiades-db/pleiades/shared/events"
	"github.com/pleiades-db/pleiades/shared/kvclient"

	"github.com/pleiades-db/pleiades/shared/eventually"
)

// msgNode is one node's msgd, from cluster.json.
type msgNode struct {
	index  int
	nodeID uint64
	nats   string // client host:port
	admin  string
}

func msgNodes(t *testing.T, c *devCluster) []msgNode {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cl struct {
		Nodes []struct {
			Node    int    `json:"node"`
			NodeID  uint64 `json:"node_id,string"`
			Daemons map[string]struct {
				Admin string `json:"admin"`
				NATS  string `json:"nats"`
			} `json:"daemons"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(b, &cl); err != nil {
		t.Fatal(err)
	}
	var out []msgNode
	for _, n := range cl.Nodes {
		d := n.Daemons["msgd"]
		if d.NATS == "" {
			t.Fatalf("cluster.json lists no NATS address for node %d's msgd", n.Node)
		}
		out = append(out, msgNode{index: n.Node, nodeID: n.NodeID, nats: d.NATS, admin: d.Admin})
	}
	return out
}

func natsConnect(t *testing.T, n msgNode) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("nats://"+n.nats, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to node %d's msgd: %v", n.index, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// eventLog collects the cluster events one subscriber sees.
type eventLog struct {
	sub *nats.Subscription
	got []*events.Event
}

// wait returns the first event (seen before or arriving within timeout)
// that match accepts.
func (l *eventLog) wait(t *testing.T, timeout time.Duration, what string, match func(*events.Event) bool) *events.Event {
	t.Helper()
	for _, e := range l.got {
		if match(e) {
			return e
		}
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m, err := l.sub.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("event on %s: %v: %s", m.Subject, err, m.Data)
		}
		if m.Subject != e.Subject() {
			t.Errorf("event %s arrived on %s", e.Subject(), m.Subject)
		}
		l.got = append(l.got, e)
		if match(e) {
			return e
		}
	}
	var seen []string
	for _, e := range l.got {
		seen = append(seen, e.Subject())
	}
	t.Fatalf("no event %s within %v; seen %v", what, timeout, seen)
	return nil
}

// routedNames returns the server names a msgd has routes to.
func routedNames(adminAddr string) ([]string, error) {
	var rz struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	if err := getJSON("http://"+adminAddr+"/v1/nats/routez", &rz); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range rz.Routes {
		out = append(out, r.RemoteName)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// meshed checks that every msgd is routed to the two others.
func meshed(ns []msgNode) error {
	for _, n := range ns {
		got, err := routedNames(n.admin)
		if err != nil {
			return err
		}
		for _, o := range ns {
			if o.index != n.index && !slices.Contains(got, fmt.Sprintf("node-%d", o.nodeID)) {
				return fmt.Errorf("node %d's msgd routed to %v, not node %d", n.index, got, o.index)
			}
		}
	}
	return nil
}

// TestMsgCluster: three hosts' msgd in a `pleiades dev` cluster find each
// other through gossip; pub/sub, queue groups and request/reply cross
// them with real nats.go clients; a msgd killed with SIGKILL is restarted
// and routed again, while a stream with 3 replicas keeps every
// acknowledged message; events arrive for range leadership (first
// elections and a change after the leader's raftd is killed), a node's
// death and its return (its gossipd paused and resumed), `pleiades
// events` tails them; bad input gets NATS's errors and msgd stays up.
func TestMsgCluster(t *testing.T) {
	c := startDev(t, t.TempDir(), 3, 6100)
	ns := msgNodes(t, c)
	eventually.NoError(t, 30*time.Second, "msgd meshed through gossip", func() error { return meshed(ns) })
	nc1, nc2, nc3 := natsConnect(t, ns[0]), natsConnect(t, ns[1]), natsConnect(t, ns[2])

	evSub, err := nc1.SubscribeSync(events.SubjectAll)
	if err != nil {
		t.Fatal(err)
	}
	evs := &eventLog{sub: evSub}

	// Pub/sub, queue group and request/reply across hosts.
	sub, _ := nc3.SubscribeSync("orders.new")
	eventually.NoError(t, 10*time.Second, "node 1 -> node 3", func() error {
		if err := nc1.Publish("orders.new", []byte("o1")); err != nil {
			return err
		}
		_, err := sub.NextMsg(100 * time.Millisecond)
		return err
	})
	q2, _ := nc2.QueueSubscribeSync("jobs", "w")
	q3, _ := nc3.QueueSubscribeSync("jobs", "w")
	probe, _ := nc3.SubscribeSync("jobs")
	eventually.NoError(t, 10*time.Second, "queue interest at node 1", func() error {
		if err := nc1.Publish("jobs", nil); err != nil {
			return err
		}
		_, err := probe.NextMsg(100 * time.Millisecond)
		return err
	})
	for _, s := range []*nats.Subscription{q2, q3} {
		for {
			if _, err := s.NextMsg(300 * time.Millisecond); err != nil {
				break
			}
		}
	}
	for i := range 50 {
		_ = nc1.Publish("jobs", []byte{byte(i)})
	}
	count := func(s *nats.Subscription) int {
		n := 0
		for {
			if _, err := s.NextMsg(500 * time.Millisecond); err != nil {
				return n
			}
			n++
		}
	}
	if got := count(q2) + count(q3); got != 50 {
		t.Errorf("queue group received %d of 50", got)
	}
	if _, err := nc2.Subscribe("quote", func(m *nats.Msg) { _ = m.Respond([]byte("ok")) }); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 10*time.Second, "request node 3 -> node 2", func() error {
		_, err := nc3.Request("quote", nil, 500*time.Millisecond)
		return err
	})

	// Range events: first leaders, then a leader change.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cl := c.client(t, time.Second)
	mustInit(t, ctx, cl, kvclient.InitOptions{})
	for _, rid := range []uint64{1, 2} {
		evs.wait(t, 30*time.Second, fmt.Sprintf("range.leader for range %d", rid), func(e *events.Event) bool {
			return e.Type == events.RangeLeader && e.Range.RangeID == rid
		})
	}
	evs.wait(t, 10*time.Second, "range.replica", func(e *events.Event) bool { return e.Type == events.RangeReplica })
	var leader int
	var rangeID uint64
	eventually.NoError(t, 30*time.Second, "leader of the user range", func() (err error) {
		leader, rangeID, err = c.leaderOf(cl, []byte("k"))
		return err
	})
	oldLeader := c.nodes[leader-1].NodeID
	victim, err := c.daemon(t, fmt.Sprintf("node%d/raftd", leader))
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Another node wins the range (previous leader: the killed one), or
	// the restarted raftd wins it back before the others' election
	// timeout: its msgd is told when its stream reconnects.
	change := evs.wait(t, 60*time.Second, "range.leader after the leader's raftd died", func(e *events.Event) bool {
		return e.Type == events.RangeLeader && e.Range.RangeID == rangeID && e.Time.After(killedAt) &&
			(e.NodeID != oldLeader && e.Range.PreviousLeaderNodeID == oldLeader || e.NodeID == oldLeader)
	})
	t.Logf("range %d: leader n%d -> n%d (term %d)", rangeID, oldLeader, change.NodeID, change.Range.Term)
	c.waitRestarted(t, fmt.Sprintf("node%d/raftd", leader), victim.PID)

	// The events are kept in JetStream (one replica per msgd, up to 3): a
	// consumer that comes later replays them.
	eventually.NoError(t, 60*time.Second, "the events stream with 3 replicas", func() error {
		js, err := jetstream.New(nc1)
		if err != nil {
			return err
		}
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		st, err := js.Stream(sctx, events.Stream)
		if err != nil {
			return err
		}
		info := st.CachedInfo()
		if r := info.Config.Replicas; r != 3 {
			return fmt.Errorf("%d replicas", r)
		}
		// Raised from fewer replicas, the stream takes new messages once
		// its group has a leader and both followers caught up.
		if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("stream group %+v", info.Cluster)
		}
		for _, p := range info.Cluster.Replicas {
			if !p.Current {
				return fmt.Errorf("replica %s not current", p.Name)
			}
		}
		return nil
	})

	// Workflow events: an instance run by node 2's workflowd, bridged by
	// node 2's msgd.
	doc := filepath.Join(t.TempDir(), "greet.yaml")
	if err := os.WriteFile(doc, []byte("id: e2e.greet\nversion: 1\nsteps:\n  - name: hello\n    set: {greeting: '\"hi \" + data.who'}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wfAddr, certs := fmt.Sprintf("127.0.0.1:%d", 7405+c.offset+10), filepath.Join(c.dir, "node2", "certs")
	if out, err := pleiades(t, "workflows", "define", "--addr", wfAddr, "--certs-dir", certs, doc); err != nil {
		t.Fatalf("workflows define: %v: %s", err, out)
	}
	out, err := pleiades(t, "workflows", "start", "--addr", wfAddr, "--certs-dir", certs, "--data", `{"who": "e2e"}`, "e2e.greet")
	if err != nil {
		t.Fatalf("workflows start: %v: %s", err, out)
	}
	instance := strings.TrimSpace(out)
	for _, typ := range []string{events.WorkflowStarted, events.WorkflowStepCompleted, events.WorkflowCompleted} {
		e := evs.wait(t, 30*time.Second, typ+" of "+instance, func(e *events.Event) bool {
			return e.Type == typ && e.Workflow.InstanceID == instance
		})
		if e.Workflow.Definition != "e2e.greet" || e.Workflow.Version != 1 || !strings.HasSuffix(e.Subject(), ".e2e_greet") {
			t.Errorf("%s event %+v on %s", typ, e.Workflow, e.Subject())
		}
	}
	replay, err := pleiades(t, "events", "--nats-url", "nats://"+ns[0].nats, "--since", "10m", "--count", "1", "--timeout", "15s",
		"--subject", events.Prefix+"."+events.WorkflowCompleted+".e2e_greet", "-o", "json")
	if err != nil || !strings.Contains(replay, instance) {
		t.Errorf("events --since: %v: %s; want the completed event of %s", err, replay, instance)
	}

	// JetStream R3 through the loss and return of one msgd.
	js1, _ := jetstream.New(nc1)
	var stream jetstream.Stream
	eventually.NoError(t, 60*time.Second, "R3 stream", func() (err error) {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		stream, err = js1.CreateOrUpdateStream(sctx, jetstream.StreamConfig{Name: "E2E", Subjects: []string{"e2e.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		return err
	})
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			eventually.NoError(t, 30*time.Second, fmt.Sprintf("message %d acknowledged", i), func() error {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				defer pcancel()
				_, err := js1.Publish(pctx, fmt.Sprintf("e2e.%d", i), []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint(i)))
				return err
			})
		}
	}
	publish(0, 50)
	m2, err := c.daemon(t, "node2/msgd")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(m2.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	publish(50, 100)
	c.waitRestarted(t, "node2/msgd", m2.PID)
	eventually.NoError(t, 60*time.Second, "routes re-formed after the restart", func() error { return meshed(ns) })
	eventually.NoError(t, 60*time.Second, "every replica current", func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 100 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("msgs %d cluster %+v", info.State.Msgs, info.Cluster)
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("replica %s current=%v offline=%v", r.Name, r.Current, r.Offline)
			}
		}
		return nil
	})
	js2, _ := jetstream.New(natsConnect(t, ns[1]))
	s2, err := js2.Stream(ctx, "E2E")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 100; seq++ {
		m, err := s2.GetMsg(ctx, seq)
		if err != nil || string(m.Data) != fmt.Sprint(seq-1) {
			t.Fatalf("message %d through the restarted msgd: %v, %v", seq, m, err)
		}
	}

	// A node dies (its gossipd paused) and comes back; `pleiades events`
	// sees the death.
	g3, err := c.daemon(t, "node3/gossipd")
	if err != nil {
		t.Fatal(err)
	}
	n3 := ns[2].nodeID
	tail := start(t, "events", "--nats-url", "nats://"+ns[0].nats, "--subject", fmt.Sprintf("pleiades.events.member.dead.%d", n3),
		"--count", "1", "--timeout", "90s", "--output", "json")
	eventually.NoError(t, 20*time.Second, "pleiades events subscribed", func() error {
		var cz struct {
			Conns []struct {
				Name    string `json:"name"`
				NumSubs int    `json:"subscriptions"`
			} `json:"connections"`
		}
		if err := getJSON("http://"+ns[0].admin+"/v1/nats/connz", &cz); err != nil {
			return err
		}
		for _, c := range cz.Conns {
			if c.Name == "pleiades events" && c.NumSubs > 0 {
				return nil
			}
		}
		return fmt.Errorf("connections %+v", cz.Conns)
	})
	if err := syscall.Kill(g3.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = syscall.Kill(g3.PID, syscall.SIGCONT)
		}
	}()
	dead := evs.wait(t, 90*time.Second, "member.dead for node 3", func(e *events.Event) bool {
		return e.Type == events.MemberDead && e.NodeID == n3
	})
	if dead.Reporter == n3 || dead.Member.State != "dead" {
		t.Errorf("death of node 3 reported as %+v by %d", dead.Member, dead.Reporter)
	}
	waitExit(t, tail, 60*time.Second)
	if tail.err != nil {
		t.Fatalf("pleiades events: %v", tail.err)
	}
	if e, err := events.Decode([]byte(strings.TrimSpace(tail.stderr.String()))); err != nil || e.Type != events.MemberDead || e.NodeID != n3 {
		t.Errorf("pleiades events printed %q (%v)", tail.stderr.String(), err)
	}
	if err := syscall.Kill(g3.PID, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	evs.wait(t, 90*time.Second, "node 3 alive again", func(e *events.Event) bool {
		return (e.Type == events.MemberJoin || e.Type == events.MemberUpdate) && e.NodeID == n3 && e.Member.State == "alive" && e.Time.After(dead.Time)
	})

	// Bad input: NATS's own errors, msgd stays up.
	if err := nc1.Publish("big", make([]byte, 2<<20)); err == nil {
		t.Error("a 2 MiB message was accepted over the 1 MiB limit")
	}
	if ans := rawNATS(t, ns[0].nats, "SUB foo..bar 1"); ans != "-ERR 'Invalid Subject'" {
		t.Errorf("SUB foo..bar answered %q", ans)
	}
	if ans := rawNATS(t, ns[0].nats, "PUB big 2000000"); ans != "-ERR 'Maximum Payload Violation'" {
		t.Errorf("PUB of 2 MB answered %q", ans)
	}
	m1, err := c.daemon(t, "node1/msgd")
	if err != nil {
		t.Fatal(err)
	}
	if m1.Restarts != 0 || readyz(m1.AdminAddr) != nil {
		t.Errorf("node 1's msgd after bad input: %+v", m1)
	}
}

func getJSON(url string, v any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// rawNATS connects to a NATS port, sends a CONNECT and line, and returns
// the server's first answer.
func rawNATS(t *testing.T, addr, line string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "CONNECT {\"verbose\":false,\"pedantic\":true}\r\n"+line+"\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(l)
}
