package gossipd_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/gossipd"
	"github.com/pleiades-db/pleiades/gossipd/internal/swim"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

type node struct {
	rt  *daemon.Runtime
	srv *gossipd.Server
}

func startNode(t *testing.T, join []string) node {
	t.Helper()
	return startNodeWith(t, join, swim.DefaultLocalConfig())
}

func startNodeWith(t *testing.T, join []string, p swim.Config) node {
	t.Helper()
	rt := daemontest.NewUnstartedRuntime(t, gossipd.Name, daemontest.CA(t), daemontest.Common(t))
	cfg := gossipd.DefaultConfig()
	cfg.Protocol = p
	cfg.Join = join
	cfg.JoinRetry = 200 * time.Millisecond
	srv, err := gossipd.New(cfg, gossipd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return node{rt: rt, srv: srv}
}

// TestThreeNodesOverBus joins three gossipds over real QUIC buses and
// exercises the local API through gossipclient.
func TestThreeNodesOverBus(t *testing.T) {
	a := startNode(t, nil)
	seed := a.rt.Bus.Addr().String()
	b := startNode(t, []string{seed})
	c := startNode(t, []string{seed})
	nodes := []node{a, b, c}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	clients := make([]*gossipclient.Client, len(nodes))
	for i, n := range nodes {
		clients[i] = gossipclient.New(n.rt.Bus, n.rt.Bus.Addr().String())
	}
	eventually.True(t, 15*time.Second, "all see 3 alive members", func() bool {
		for _, cl := range clients {
			ms, _, err := cl.Members(ctx, false)
			if err != nil || len(ms) != 3 {
				return false
			}
			for _, m := range ms {
				if m.GetState() != gossippb.MemberState_MEMBER_STATE_ALIVE {
					return false
				}
			}
		}
		return true
	})
	if ok, failed := b.rt.Admin.Ready(ctx); !ok {
		t.Fatalf("joined node not ready: %v", failed)
	}

	sub, err := clients[0].Subscribe(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()

	if _, err := clients[1].SetMetadata(ctx, &gossippb.Metadata{Labels: map[string]string{"zone": "z1"}, Addresses: map[string]string{"raftd": "127.0.0.1:7402"}}, false); err != nil {
		t.Fatal(err)
	}
	ev, err := sub.Next()
	if err != nil || ev.GetType() != gossippb.EventType_EVENT_TYPE_UPDATE || ev.GetMember().GetMetadata().GetLabels()["zone"] != "z1" {
		t.Fatalf("subscription event %v, %v; want UPDATE with zone z1", ev, err)
	}
	big := &gossippb.Metadata{Labels: map[string]string{"x": string(make([]byte, 1000))}}
	if _, err := clients[1].SetMetadata(ctx, big, false); !errors.Is(err, bus.ErrInvalidArgument) {
		t.Fatalf("oversized metadata err = %v; want ErrInvalidArgument", err)
	}

	eventually.True(t, 15*time.Second, "coordinates learned", func() bool {
		_, err := clients[0].EstimateRTT(ctx, 0, b.rt.NodeID)
		return err == nil
	})

	resp, err := http.Get("http://" + a.rt.Admin.Addr().String() + "/v1/members")
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		Members []struct {
			NodeID uint64 `json:"node_id,string"`
			State  string `json:"state"`
		} `json:"members"`
	}
	err = json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if err != nil || len(view.Members) != 3 || view.Members[0].State != "alive" {
		t.Fatalf("/v1/members = %+v, %v", view, err)
	}

	if err := clients[2].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "leave seen as left", func() bool {
		m, err := clients[0].Member(ctx, c.rt.NodeID)
		return err == nil && m.GetState() == gossippb.MemberState_MEMBER_STATE_LEFT
	})
}

// TestCrashOverBus: a member whose process goes away (server and bus
// stopped without a leave) is declared dead by the others over real QUIC
// buses; their datagrams to it fail to dial without holding up the rest.
func TestCrashOverBus(t *testing.T) {
	a := startNode(t, nil)
	seed := a.rt.Bus.Addr().String()
	nodes := []node{a}
	for range 3 {
		nodes = append(nodes, startNode(t, []string{seed}))
	}
	eventually.True(t, 30*time.Second, "all see 4 alive members", func() bool {
		for _, nd := range nodes {
			if alive(t, nd) != 4 {
				return false
			}
		}
		return true
	})
	victim := nodes[3]
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := victim.srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := victim.rt.Bus.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 60*time.Second, "crashed member dead everywhere", func() bool {
		for _, nd := range nodes[:3] {
			found := false
			for _, m := range nd.srv.Members() {
				if m.ID == victim.rt.NodeID {
					found = m.State == gossippb.MemberState_MEMBER_STATE_DEAD
				}
			}
			if !found {
				return false
			}
		}
		return true
	})
	for _, nd := range nodes[:3] {
		if got := alive(t, nd); got != 3 {
			t.Errorf("node %d sees %d alive; want the 3 live members", nd.rt.NodeID, got)
		}
	}
}
