package bench

import (
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/gossipd/internal/swim"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// coordinateBytes is the encoded size of the Vivaldi coordinate in a
// gossipd ack (8 dimensions plus error, adjustment and height).
func coordinateBytes() int {
	return proto.Size(&gossippb.Ack{Coordinate: &gossippb.Coordinate{
		Vec: make([]float64, 8), Error: 1.5, Adjustment: 1e-3, Height: 1e-5}})
}

// swimCluster runs gossipd's engines over the in-memory network.
type swimCluster struct {
	cfg   swim.Config
	net   *network
	obs   *observer
	seed  uint64
	mu    sync.Mutex
	nodes []*swimNode
	byAdr map[string]*swimNode
	wg    sync.WaitGroup
	done  chan struct{}
}

type swimNode struct {
	c    *swimCluster
	idx  int
	addr string
	ep   *endpoint
	e    *swim.Engine
}

func newSwimCluster(cfg swim.Config, net *network, obs *observer, seed uint64) *swimCluster {
	return &swimCluster{cfg: cfg, net: net, obs: obs, seed: seed, byAdr: map[string]*swimNode{}, done: make(chan struct{})}
}

func (c *swimCluster) name() string { return "gossipd" }

func (c *swimCluster) start(n int) error {
	for i := range n {
		nd := &swimNode{c: c, idx: i, addr: fmt.Sprintf("127.1.%d.%d:7403", i/250, i%250+1)}
		e, err := swim.NewEngine(c.cfg, "bench", uint64(i+1), nd.addr, &gossippb.Metadata{}, swim.EngineDeps{
			Clock: swim.WallClock{}, Transport: nd, Seed: c.seed + uint64(i),
			OnEvent: func(ev swim.Event) { nd.onEvent(ev) },
		})
		if err != nil {
			return err
		}
		nd.e = e
		nd.ep = c.net.attach(nd.addr, func(_ string, b []byte) { e.Receive(b) })
		c.mu.Lock()
		c.nodes = append(c.nodes, nd)
		c.byAdr[nd.addr] = nd
		c.mu.Unlock()
		e.Start()
	}
	for _, nd := range c.nodes[1:] {
		nd.e.Join([]string{c.nodes[0].addr}, nil)
	}
	return nil
}

func (nd *swimNode) onEvent(ev swim.Event) {
	subj := int(ev.Member.ID) - 1
	switch ev.Type {
	case gossippb.EventType_EVENT_TYPE_SUSPECT:
		nd.c.obs.record(nd.idx, subj, evSuspect, ev.Member.Incarnation, "")
	case gossippb.EventType_EVENT_TYPE_DEAD:
		nd.c.obs.record(nd.idx, subj, evDead, ev.Member.Incarnation, "")
	case gossippb.EventType_EVENT_TYPE_UPDATE:
		nd.c.obs.record(nd.idx, subj, evUpdate, ev.Member.Incarnation, ev.Member.Metadata.GetLabels()["v"])
	}
}

func (c *swimCluster) node(i int) *swimNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *swimCluster) endpoint(i int) *endpoint { return c.node(i).ep }

func (c *swimCluster) aliveSeen(i int) int {
	n := 0
	for _, m := range c.node(i).e.Members() {
		if m.State == gossippb.MemberState_MEMBER_STATE_ALIVE {
			n++
		}
	}
	return n
}

func (c *swimCluster) setMeta(i int, v string) error {
	return c.node(i).e.SetMetadata(&gossippb.Metadata{Labels: map[string]string{"v": v}})
}

func (c *swimCluster) kill(i int) { c.node(i).ep.crashed.Store(true) }

func (c *swimCluster) remove(i int) {
	nd := c.node(i)
	nd.ep.crashed.Store(true)
	nd.e.Stop()
}

func (c *swimCluster) close() {
	for _, nd := range c.nodes {
		nd.e.Stop()
	}
	close(c.done)
	c.wg.Wait()
}

// SendPacket implements swim.Transport.
func (nd *swimNode) SendPacket(addr string, b []byte) { nd.ep.send(addr, b) }

// async runs f on a goroutine the cluster waits for on close.
func (c *swimCluster) async(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

// sleep waits d or until the cluster closes; false if it closed.
func (c *swimCluster) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
		return false
	case <-t.C:
		return true
	}
}

// PushPull implements swim.Transport: a reliable exchange (no loss),
// held while either side is stalled, failing after 1 s to a crashed peer.
func (nd *swimNode) PushPull(addr string, req *gossippb.PushPullState, done func(*gossippb.PushPullState, error)) {
	c := nd.c
	c.async(func() {
		dst, ok := nd.ep.reachable(addr)
		if !ok {
			if c.sleep(time.Second) {
				done(nil, errUnreachable)
			}
			return
		}
		peer := c.byAddr(addr)
		if !nd.ep.waitAwake() || !dst.waitAwake() || peer == nil {
			return
		}
		nd.ep.sentBytes.Add(int64(proto.Size(req)))
		resp, err := peer.e.HandlePushPull(req)
		if err == nil {
			dst.sentBytes.Add(int64(proto.Size(resp)))
		}
		done(resp, err)
	})
}

func (c *swimCluster) byAddr(a string) *swimNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byAdr[a]
}

// PingStream implements swim.Transport: the stream fallback probe,
// reliable, failing at timeout when the peer is crashed or stalled past
// it.
func (nd *swimNode) PingStream(addr string, ping *gossippb.Ping, timeout time.Duration, done func(*gossippb.Ack, error)) {
	c := nd.c
	deadline := time.Now().Add(timeout)
	c.async(func() {
		dst, ok := nd.ep.reachable(addr)
		peer := c.byAddr(addr)
		if !ok || peer == nil || dst.pausedPast(deadline) {
			if c.sleep(time.Until(deadline)) {
				done(nil, errUnreachable)
			}
			return
		}
		if !dst.waitAwake() {
			return
		}
		nd.ep.sentBytes.Add(int64(proto.Size(ping)))
		ack, err := peer.e.HandlePing(ping)
		if err == nil {
			dst.sentBytes.Add(int64(proto.Size(ack)))
		}
		done(ack, err)
	})
}
