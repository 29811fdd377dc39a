package clockd_test

import (
	"context"
	"maps"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/clockd"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// baseCfg is the default configuration without gossip: tests that want
// membership point GossipAddr at a fakeGossip.
func baseCfg() clockd.Config {
	cfg := clockd.DefaultConfig()
	cfg.GossipAddr = ""
	return cfg
}

// fakeGossip serves the part of gossipd's local bus API clockd uses
// (Members, SetMetadata, Subscribe) over a membership the test edits.
// While down it answers Unavailable, as a gossipd that has not started.
type fakeGossip struct {
	addr string

	mu      sync.Mutex
	up      bool
	selfID  uint64
	members map[uint64]*gossippb.Member
	subs    map[chan *gossippb.Event]struct{}
	kill    chan struct{} // closed to end every open stream
	setMD   []*gossippb.Metadata
	calls   int // calls answered Unavailable while down
}

func newFakeGossip(t *testing.T, selfID uint64) *fakeGossip {
	t.Helper()
	f := &fakeGossip{selfID: selfID, members: map[uint64]*gossippb.Member{}, subs: map[chan *gossippb.Event]struct{}{}, kill: make(chan struct{})}
	f.members[selfID] = &gossippb.Member{NodeId: selfID, Addr: "self", State: gossippb.MemberState_MEMBER_STATE_ALIVE, Metadata: &gossippb.Metadata{}}
	rt := daemontest.NewUnstartedRuntime(t, "gossipd", daemontest.CA(t), daemontest.Common(t))
	p := wire.ProtoGossip
	bus.HandleUnary(rt.Bus, p, gossipclient.MethodMembers, func(_ context.Context, r *gossippb.MembersRequest) (*gossippb.MembersResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.downLocked(); err != nil {
			return nil, err
		}
		resp := &gossippb.MembersResponse{SelfId: f.selfID}
		for _, id := range slices.Sorted(maps.Keys(f.members)) {
			m := f.members[id]
			if !r.GetIncludeDead() && m.GetState() == gossippb.MemberState_MEMBER_STATE_DEAD {
				continue
			}
			// A copy: the answer is marshalled after the lock is released,
			// while set and setUp may change the member.
			resp.Members = append(resp.Members, proto.Clone(m).(*gossippb.Member))
		}
		return resp, nil
	})
	bus.HandleUnary(rt.Bus, p, gossipclient.MethodSetMetadata, func(_ context.Context, r *gossippb.SetMetadataRequest) (*gossippb.SetMetadataResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.downLocked(); err != nil {
			return nil, err
		}
		f.setMD = append(f.setMD, r.GetMetadata())
		self := f.members[f.selfID]
		md := &gossippb.Metadata{Addresses: maps.Clone(self.GetMetadata().GetAddresses())}
		if md.Addresses == nil {
			md.Addresses = map[string]string{}
		}
		maps.Copy(md.Addresses, r.GetMetadata().GetAddresses())
		self.Metadata = md
		return &gossippb.SetMetadataResponse{Metadata: md}, nil
	})
	bus.HandleStream(rt.Bus, p, gossipclient.MethodSubscribe, func(ctx context.Context, _ *gossippb.SubscribeRequest, send func(*gossippb.Event) error) error {
		ch := make(chan *gossippb.Event, 64)
		f.mu.Lock()
		if err := f.downLocked(); err != nil {
			f.mu.Unlock()
			return err
		}
		f.subs[ch] = struct{}{}
		kill := f.kill
		f.mu.Unlock()
		defer func() {
			f.mu.Lock()
			delete(f.subs, ch)
			f.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-kill:
				return bus.Errorf(bus.CodeUnavailable, "fake gossipd: stopped")
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
	t.Cleanup(func() { f.setUp(false) })
	f.addr = rt.Bus.Addr().String()
	return f
}

func (f *fakeGossip) downLocked() error {
	if f.up {
		return nil
	}
	f.calls++
	return bus.Errorf(bus.CodeUnavailable, "fake gossipd: not started")
}

// setUp starts or stops answering; stopping ends every open stream and
// forgets this node's metadata, as a gossipd restart would.
func (f *fakeGossip) setUp(up bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.up && !up {
		close(f.kill)
		f.kill = make(chan struct{})
		f.members[f.selfID].Metadata = &gossippb.Metadata{}
	}
	f.up = up
}

// set adds or changes a member and announces it.
func (f *fakeGossip) set(id uint64, state gossippb.MemberState, clockdAddr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	md := &gossippb.Metadata{Addresses: map[string]string{"raftd": "127.0.0.1:7402"}}
	if clockdAddr != "" {
		md.Addresses[clockd.MetadataKey] = clockdAddr
	}
	typ := gossippb.EventType_EVENT_TYPE_UPDATE
	if _, ok := f.members[id]; !ok {
		typ = gossippb.EventType_EVENT_TYPE_JOIN
	}
	switch state {
	case gossippb.MemberState_MEMBER_STATE_DEAD:
		typ = gossippb.EventType_EVENT_TYPE_DEAD
	case gossippb.MemberState_MEMBER_STATE_SUSPECT:
		typ = gossippb.EventType_EVENT_TYPE_SUSPECT
	}
	m := &gossippb.Member{NodeId: id, Addr: "gossip", State: state, Metadata: md}
	f.members[id] = m
	for ch := range f.subs {
		ch <- &gossippb.Event{Type: typ, Member: m}
	}
}

// published returns the SetMetadata requests so far and the clockd
// address currently in this node's metadata.
func (f *fakeGossip) published() (int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.setMD), f.members[f.selfID].GetMetadata().GetAddresses()[clockd.MetadataKey]
}

func (f *fakeGossip) downCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// probing reports whether n's monitor has exactly the peers want, each
// probed successfully.
func probing(n *node, want ...string) bool {
	offs := n.srv.Offsets()
	var got []string
	for _, o := range offs {
		if o.GetError() != "" || o.GetLastProbeNs() == 0 {
			return false
		}
		got = append(got, o.GetPeer())
	}
	sort.Strings(want)
	return slices.Equal(got, want)
}

func TestPeersFromGossipMembership(t *testing.T) {
	b := startNode(t, fastCfg(), &memoryBound{}, nil)
	c := startNode(t, fastCfg(), &memoryBound{}, nil)
	d := startNode(t, fastCfg(), &memoryBound{}, nil)
	g := newFakeGossip(t, 1000)
	g.setUp(true)
	alive, suspect, dead := gossippb.MemberState_MEMBER_STATE_ALIVE, gossippb.MemberState_MEMBER_STATE_SUSPECT, gossippb.MemberState_MEMBER_STATE_DEAD
	g.set(2, alive, b.addr)
	g.set(3, suspect, c.addr)
	g.set(4, alive, "")           // no clockd published
	g.set(5, dead, "127.0.0.1:9") // dead: not probed
	g.set(6, alive, "not-an-address")

	cfg := fastCfg()
	cfg.GossipAddr = g.addr
	cfg.Peers = []string{d.addr} // replaced by the membership once gossipd answers
	a := startNode(t, cfg, &memoryBound{}, nil)
	eventually.True(t, 20*time.Second, "peers b and c from membership", func() bool { return probing(a, b.addr, c.addr) })
	if n, addr := g.published(); n == 0 || addr != a.addr {
		t.Errorf("published %d times, clockd address %q; want %q", n, addr, a.addr)
	}

	// A member joins, another dies: the peers follow the events.
	g.set(7, alive, d.addr)
	g.set(2, dead, b.addr)
	eventually.True(t, 20*time.Second, "peers c and d after join and death", func() bool { return probing(a, c.addr, d.addr) })

	// gossipd restarts: it forgets this node's metadata and ends the
	// stream. clockd keeps its peers meanwhile and publishes again.
	n0, _ := g.published()
	g.setUp(false)
	eventually.True(t, 20*time.Second, "a call while gossipd is down", func() bool { return g.downCalls() > 0 })
	if !probing(a, c.addr, d.addr) {
		t.Errorf("peers while gossipd is down = %v; want the last learned", a.srv.Offsets())
	}
	g.setUp(true)
	eventually.True(t, 20*time.Second, "the address published again", func() bool {
		n, addr := g.published()
		return n > n0 && addr == a.addr
	})
	g.set(8, alive, b.addr)
	eventually.True(t, 20*time.Second, "peers after reconnecting", func() bool { return probing(a, b.addr, c.addr, d.addr) })
}

func TestPeersStaticUntilGossipAnswers(t *testing.T) {
	b := startNode(t, fastCfg(), &memoryBound{}, nil)
	c := startNode(t, fastCfg(), &memoryBound{}, nil)
	g := newFakeGossip(t, 1000) // down: answers Unavailable
	cfg := fastCfg()
	cfg.GossipAddr = g.addr
	cfg.Peers = []string{b.addr}
	a := startNode(t, cfg, &memoryBound{}, nil)
	eventually.True(t, 20*time.Second, "static peer b probed", func() bool { return probing(a, b.addr) })
	eventually.True(t, 20*time.Second, "gossipd asked", func() bool { return g.downCalls() > 0 })
	if !probing(a, b.addr) {
		t.Fatalf("peers with gossipd down = %v; want the static list", a.srv.Offsets())
	}
	g.set(3, gossippb.MemberState_MEMBER_STATE_ALIVE, c.addr)
	g.setUp(true)
	eventually.True(t, 20*time.Second, "peer c from membership", func() bool { return probing(a, c.addr) })
}

func TestAdvertiseAddrPublished(t *testing.T) {
	g := newFakeGossip(t, 1000)
	g.setUp(true)
	cfg := fastCfg()
	cfg.GossipAddr = g.addr
	cfg.AdvertiseAddr = "10.1.2.3:7404"
	a := startNode(t, cfg, &memoryBound{}, nil)
	eventually.True(t, 20*time.Second, "the advertised address published", func() bool { _, addr := g.published(); return addr == cfg.AdvertiseAddr })
	if offs := a.srv.Offsets(); len(offs) != 0 {
		t.Errorf("peers of a lone node = %v; want none (itself excluded)", offs)
	}
}

func TestWildcardBusNotPublished(t *testing.T) {
	// A bus bound to 0.0.0.0 has no address other nodes can dial: clockd
	// publishes nothing but still learns its peers.
	b := startNode(t, fastCfg(), &memoryBound{}, nil)
	g := newFakeGossip(t, 1000)
	g.setUp(true)
	g.set(2, gossippb.MemberState_MEMBER_STATE_ALIVE, b.addr)
	cfg := fastCfg()
	cfg.GossipAddr = g.addr
	c := daemontest.Common(t)
	c.BusAddr = "0.0.0.0:0"
	rt := daemontest.NewUnstartedRuntime(t, clockd.Name, daemontest.CA(t), c)
	srv, err := clockd.New(cfg, clockd.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin, Bound: &memoryBound{}, NodeID: rt.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	a := &node{srv: srv, rt: rt}
	eventually.True(t, 20*time.Second, "peer b from membership", func() bool { return probing(a, b.addr) })
	if n, addr := g.published(); n != 0 || addr != "" {
		t.Errorf("published %d times (%q); want nothing for a wildcard bus address", n, addr)
	}
}

func TestGossipConfigValidation(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*clockd.Config)
		ok   bool
	}{
		{"no gossip", func(c *clockd.Config) { c.GossipAddr = "" }, true},
		{"bad gossip addr", func(c *clockd.Config) { c.GossipAddr = "gossipd" }, false},
		{"advertise", func(c *clockd.Config) { c.AdvertiseAddr = "10.0.0.1:7404" }, true},
		{"bad advertise", func(c *clockd.Config) { c.AdvertiseAddr = "10.0.0.1" }, false},
	} {
		cfg := clockd.DefaultConfig()
		tt.edit(&cfg)
		if err := cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate = %v; want ok=%v", tt.name, err, tt.ok)
		}
	}
}
