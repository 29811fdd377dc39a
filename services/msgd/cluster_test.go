package msgd_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pleiades-db/pleiades/services/msgd"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// cluster is three in-process msgd, each following its own fake gossipd
// over one shared membership.
type cluster struct {
	m      *membership
	nodes  []*node
	common []config.Common
	cfgs   []msgd.Config
}

func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	c := &cluster{m: newMembership()}
	for i := range n {
		cm := common(t)
		cm.NodeID = uint64(101 + i)
		cfg := testConfig()
		cfg.GossipAddr = c.m.gossipd(t, cm.NodeID)
		c.common, c.cfgs = append(c.common, cm), append(c.cfgs, cfg)
		c.nodes = append(c.nodes, startNode(t, cm, cfg))
	}
	return c
}

// routedTo returns the server names n has routes to.
func routedTo(t *testing.T, n *node) []string {
	var rz struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	getJSON(t, n, "/v1/nats/routez", &rz)
	var out []string
	for _, r := range rz.Routes {
		out = append(out, r.RemoteName)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// waitMesh waits until each listed node is ready and routed to every
// other listed node.
func (c *cluster) waitMesh(t *testing.T, idx ...int) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("nodes %v routed to each other", idx), func() error {
		for _, i := range idx {
			if err := ready(c.nodes[i]); err != nil {
				return fmt.Errorf("node %d: %w", i, err)
			}
			got := routedTo(t, c.nodes[i])
			for _, j := range idx {
				if j != i && !slices.Contains(got, msgd.ServerName(c.common[j].NodeID)) {
					return fmt.Errorf("node %d routed to %v; lacks node %d", i, got, j)
				}
			}
		}
		return nil
	})
}

// restart starts node i again over the same data dir and node id.
func (c *cluster) restart(t *testing.T, i int) {
	t.Helper()
	cm := c.common[i]
	cm.DataDir = filepath.Dir(c.nodes[i].rt.DataDir)
	c.nodes[i] = startNode(t, cm, c.cfgs[i])
}

// receiveEventually publishes on pub until sub gets a message (interest
// travels over the routes asynchronously), and returns it.
func receiveEventually(t *testing.T, pub *nats.Conn, sub *nats.Subscription, subject string, data []byte) *nats.Msg {
	t.Helper()
	var got *nats.Msg
	eventually(t, 10*time.Second, "message across the route", func() error {
		if err := pub.Publish(subject, data); err != nil {
			return err
		}
		m, err := sub.NextMsg(100 * time.Millisecond)
		got = m
		return err
	})
	return got
}

// TestClusterThroughGossip: three msgd that only know each other through
// gossip route to each other; pub/sub, queue groups and request/reply
// work across them; a msgd declared dead is dropped from the routes and
// its peers stay ready; when it comes back it is routed again; and a
// JetStream stream with 3 replicas keeps every acknowledged message
// through the loss and return of one msgd.
func TestClusterThroughGossip(t *testing.T) {
	if testing.Short() {
		t.Skip("three NATS servers with JetStream")
	}
	c := startCluster(t, 3)
	c.waitMesh(t, 0, 1, 2)
	nc0, nc1, nc2 := connect(t, c.nodes[0]), connect(t, c.nodes[1]), connect(t, c.nodes[2])

	// Pub/sub across hosts.
	sub, err := nc2.SubscribeSync("orders.created")
	if err != nil {
		t.Fatal(err)
	}
	if m := receiveEventually(t, nc0, sub, "orders.created", []byte("o-1")); string(m.Data) != "o-1" {
		t.Fatalf("got %q", m.Data)
	}
	// Queue group: members on nodes 1 and 2, publisher on node 0.
	q1, _ := nc1.QueueSubscribeSync("jobs", "workers")
	q2, _ := nc2.QueueSubscribeSync("jobs", "workers")
	// A plain subscriber on node 2, after q2 on the same connection: once
	// it receives, node 0 knows q2's interest (a route keeps order).
	probe, _ := nc2.SubscribeSync("jobs")
	receiveEventually(t, nc0, probe, "jobs", nil)
	drain(q1)
	drain(q2)
	for i := range 30 {
		if err := nc0.Publish("jobs", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := drain(q1) + drain(q2); got != 30 {
		t.Errorf("queue group across nodes received %d of 30 messages; want each exactly once", got)
	}
	// Request/reply: responder on node 1, requester on node 2.
	if _, err := nc1.Subscribe("price", func(m *nats.Msg) { _ = m.Respond([]byte("42")) }); err != nil {
		t.Fatal(err)
	}
	_ = nc1.Flush()
	eventually(t, 10*time.Second, "request across nodes", func() error {
		m, err := nc2.Request("price", nil, 500*time.Millisecond)
		if err == nil && string(m.Data) != "42" {
			return fmt.Errorf("reply %q", m.Data)
		}
		return err
	})

	// JetStream R3.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	js0, _ := jetstream.New(nc0)
	var stream jetstream.Stream
	eventually(t, 30*time.Second, "R3 stream created", func() (err error) {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		stream, err = js0.CreateOrUpdateStream(sctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		return err
	})
	publish := func(js jetstream.JetStream, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			eventually(t, 20*time.Second, fmt.Sprintf("publish %d acknowledged", i), func() error {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				defer pcancel()
				_, err := js.Publish(pctx, fmt.Sprintf("ev.%d", i), []byte(fmt.Sprint(i)), jetstream.WithMsgID(fmt.Sprint(i)))
				return err
			})
		}
	}
	publish(js0, 0, 50)

	// Node 1 dies: gossip says so; the others drop its route and stay ready.
	victim := msgd.ServerName(c.common[1].NodeID)
	c.nodes[1].stop(t)
	c.m.setState(c.common[1].NodeID, gossippb.MemberState_MEMBER_STATE_DEAD)
	eventually(t, 20*time.Second, "route to the dead msgd dropped", func() error {
		for _, i := range []int{0, 2} {
			if err := ready(c.nodes[i]); err != nil {
				return err
			}
			if got := routedTo(t, c.nodes[i]); slices.Contains(got, victim) {
				return fmt.Errorf("node %d still routed to %s", i, victim)
			}
		}
		return nil
	})
	publish(js0, 50, 100)

	// It comes back.
	c.restart(t, 1)
	c.m.setState(c.common[1].NodeID, gossippb.MemberState_MEMBER_STATE_ALIVE)
	c.waitMesh(t, 0, 1, 2)
	nc1b := connect(t, c.nodes[1])
	js1, _ := jetstream.New(nc1b)
	eventually(t, 30*time.Second, "every replica current again", func() error {
		info, err := stream.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 100 {
			return fmt.Errorf("%d messages", info.State.Msgs)
		}
		if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("cluster info %+v", info.Cluster)
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return fmt.Errorf("replica %s current=%v offline=%v", r.Name, r.Current, r.Offline)
			}
		}
		return nil
	})
	// Every acknowledged message reads back through the returned node.
	s1, err := js1.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for seq := uint64(1); seq <= 100; seq++ {
		m, err := s1.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d through the returned node: %v", seq, err)
		}
		seen[string(m.Data)] = true
	}
	for i := range 100 {
		if !seen[fmt.Sprint(i)] {
			t.Errorf("acknowledged message %d missing", i)
		}
	}
}
