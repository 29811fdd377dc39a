package msgd_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pleiades-db/pleiades/services/msgd"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// node is one in-process msgd with its runtime.
type node struct {
	rt  *daemon.Runtime
	srv *msgd.Server
	cfg msgd.Config
}

// common returns a test runtime configuration with quiet logs (NATS's
// debug logs are many).
func common(t *testing.T) config.Common {
	c := daemontest.Common(t)
	c.LogLevel = slog.LevelInfo
	return c
}

// testConfig is msgd's configuration for tests: free ports, no daemons to
// bridge, fast membership refresh.
func testConfig() msgd.Config {
	cfg := msgd.DefaultConfig()
	cfg.NATSPort, cfg.NATSClusterPort = 0, 0
	cfg.GossipAddr, cfg.ClockAddr, cfg.RaftAddr, cfg.StoreAddr = "", "", "", ""
	cfg.RefreshInterval = 200 * time.Millisecond
	return cfg
}

// startNode starts msgd with cfg on a runtime of c (cfg.DataDir defaults
// to the runtime's); it is stopped at cleanup.
func startNode(t *testing.T, c config.Common, cfg msgd.Config) *node {
	t.Helper()
	rt := daemontest.NewUnstartedRuntime(t, msgd.Name, daemontest.CA(t), c)
	if cfg.DataDir == "" {
		cfg.DataDir = rt.DataDir
	}
	srv, err := msgd.New(cfg, msgd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, TLS: rt.TLS, NodeID: rt.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	n := &node{rt: rt, srv: srv, cfg: cfg}
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *node) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.srv.Stop(ctx); err != nil {
		t.Errorf("msgd stop: %v", err)
	}
}

// url is the node's NATS client URL, read from its status.
func (n *node) url(t *testing.T) string {
	t.Helper()
	return "nats://" + n.address(t, "nats")
}

// address returns the address n's status lists under key.
func (n *node) address(t *testing.T, key string) string {
	t.Helper()
	st, err := n.rt.Admin.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a := st.GetAddresses()[key]
	if a == "" {
		t.Fatalf("no %s address in %v", key, st.GetAddresses())
	}
	return a
}

// connect opens a nats.go connection to n, closed at cleanup.
func connect(t *testing.T, n *node, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(n.url(t), append([]nats.Option{nats.Timeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("connect to %s: %v", n.url(t), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// eventually polls cond every 20ms until it returns nil, failing the test
// after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ready(n *node) error {
	ok, failed := n.rt.Admin.Ready(context.Background())
	if !ok {
		return fmt.Errorf("not ready: %v", failed)
	}
	return nil
}

// membership is a gossip cluster the test edits: every node's fake
// gossipd serves the same members (Members, SetMetadata, Subscribe) and
// broadcasts each change to every subscriber, as gossipd would.
type membership struct {
	mu      sync.Mutex
	members map[uint64]*gossippb.Member
	subs    map[chan *gossippb.Event]struct{}
}

func newMembership() *membership {
	return &membership{members: map[uint64]*gossippb.Member{}, subs: map[chan *gossippb.Event]struct{}{}}
}

// broadcastLocked sends ev to every subscriber (dropping for a full one:
// the periodic refresh catches up, as with gossipd).
func (m *membership) broadcastLocked(typ gossippb.EventType, mem *gossippb.Member) {
	ev := &gossippb.Event{Type: typ, Member: cloneMember(mem)}
	for ch := range m.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func cloneMember(m *gossippb.Member) *gossippb.Member {
	c := &gossippb.Member{NodeId: m.GetNodeId(), Addr: m.GetAddr(), State: m.GetState(), Incarnation: m.GetIncarnation(),
		Metadata: &gossippb.Metadata{Addresses: maps.Clone(m.GetMetadata().GetAddresses())}, StateChangeUnixNano: m.GetStateChangeUnixNano()}
	return c
}

// setState changes a member's state (and incarnation) and broadcasts it.
func (m *membership) setState(id uint64, st gossippb.MemberState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem := m.members[id]
	mem.State = st
	mem.Incarnation++
	mem.StateChangeUnixNano = time.Now().UnixNano()
	typ := map[gossippb.MemberState]gossippb.EventType{
		gossippb.MemberState_MEMBER_STATE_ALIVE: gossippb.EventType_EVENT_TYPE_JOIN,
		gossippb.MemberState_MEMBER_STATE_DEAD:  gossippb.EventType_EVENT_TYPE_DEAD,
		gossippb.MemberState_MEMBER_STATE_LEFT:  gossippb.EventType_EVENT_TYPE_LEAVE,
	}[st]
	m.broadcastLocked(typ, mem)
}

// join adds node id as an alive member (without a gossipd of its own).
func (m *membership) join(id uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members[id] = &gossippb.Member{NodeId: id, Addr: fmt.Sprintf("gossip-%d", id), State: gossippb.MemberState_MEMBER_STATE_ALIVE,
		Incarnation: 1, Metadata: &gossippb.Metadata{Addresses: map[string]string{}}}
	m.broadcastLocked(gossippb.EventType_EVENT_TYPE_JOIN, m.members[id])
}

// gossipd starts node id's fake gossipd (alive) and returns its bus
// address.
func (m *membership) gossipd(t *testing.T, id uint64) string {
	t.Helper()
	m.join(id)
	rt := daemontest.NewUnstartedRuntime(t, "gossipd", daemontest.CA(t), common(t))
	p := wire.ProtoGossip
	bus.HandleUnary(rt.Bus, p, gossipclient.MethodMembers, func(_ context.Context, r *gossippb.MembersRequest) (*gossippb.MembersResponse, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		resp := &gossippb.MembersResponse{SelfId: id}
		for _, k := range slices.Sorted(maps.Keys(m.members)) {
			mem := m.members[k]
			if !r.GetIncludeDead() && (mem.GetState() == gossippb.MemberState_MEMBER_STATE_DEAD || mem.GetState() == gossippb.MemberState_MEMBER_STATE_LEFT) {
				continue
			}
			resp.Members = append(resp.Members, cloneMember(mem))
		}
		return resp, nil
	})
	bus.HandleUnary(rt.Bus, p, gossipclient.MethodSetMetadata, func(_ context.Context, r *gossippb.SetMetadataRequest) (*gossippb.SetMetadataResponse, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		self := m.members[id]
		for k, v := range r.GetMetadata().GetAddresses() {
			if v == "" {
				delete(self.Metadata.Addresses, k)
			} else {
				self.Metadata.Addresses[k] = v
			}
		}
		self.Incarnation++
		m.broadcastLocked(gossippb.EventType_EVENT_TYPE_UPDATE, self)
		return &gossippb.SetMetadataResponse{Metadata: cloneMember(self).GetMetadata()}, nil
	})
	bus.HandleStream(rt.Bus, p, gossipclient.MethodSubscribe, func(ctx context.Context, _ *gossippb.SubscribeRequest, send func(*gossippb.Event) error) error {
		ch := make(chan *gossippb.Event, 64)
		m.mu.Lock()
		m.subs[ch] = struct{}{}
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			delete(m.subs, ch)
			m.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case ev := <-ch:
				if err := send(ev); err != nil {
					return err
				}
			}
		}
	})
	if err := rt.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return rt.Bus.Addr().String()
}
