package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"

	"github.com/pleiades-db/pleiades/gossipd/internal/swim"
)

// mlCluster runs hashicorp/memberlist nodes over the same in-memory
// network, through a memberlist.Transport of our own.
type mlCluster struct {
	cfg   swim.Config
	net   *network
	obs   *observer
	mu    sync.Mutex
	nodes []*mlNode
	names map[string]int
}

type mlNode struct {
	c       *mlCluster
	idx     int
	name    string
	addr    string
	ep      *endpoint
	ml      *memberlist.Memberlist
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	stopped bool

	metaMu sync.Mutex
	meta   []byte

	ackPayload []byte
}

func newMLCluster(cfg swim.Config, net *network, obs *observer) *mlCluster {
	return &mlCluster{cfg: cfg, net: net, obs: obs, names: map[string]int{}}
}

func (c *mlCluster) name() string { return "memberlist" }

// mlConfig maps our protocol timers onto memberlist's configuration, so
// both sides run the same protocol period, timeouts and multipliers.
func mlConfig(p swim.Config) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.ProbeInterval = p.ProbeInterval
	mc.ProbeTimeout = p.ProbeTimeout
	mc.IndirectChecks = p.IndirectChecks
	mc.DisableTcpPings = !p.StreamFallback
	mc.SuspicionMult = p.SuspicionMult
	mc.SuspicionMaxTimeoutMult = p.SuspicionMaxTimeoutMult
	mc.AwarenessMaxMultiplier = p.AwarenessMaxMultiplier
	mc.RetransmitMult = p.RetransmitMult
	mc.GossipInterval = p.GossipInterval
	mc.GossipNodes = p.GossipNodes
	mc.GossipToTheDeadTime = p.GossipToTheDead
	mc.PushPullInterval = p.PushPullInterval
	// Uncompressed so that suspicions can be read off the wire; idle
	// probes are too small for LZW to help.
	mc.EnableCompression = false
	mc.LogOutput = io.Discard
	return mc
}

func (c *mlCluster) start(n int) error {
	for i := range n {
		nd := &mlNode{c: c, idx: i, name: fmt.Sprintf("n%d", i), addr: fmt.Sprintf("127.2.%d.%d:7946", i/250, i%250+1),
			packets: make(chan *memberlist.Packet, 1024), streams: make(chan net.Conn, 64), done: make(chan struct{})}
		nd.ep = c.net.attach(nd.addr, nd.deliver)
		mc := mlConfig(c.cfg)
		mc.Name = nd.name
		mc.Transport = nd
		mc.Events = nd
		mc.Delegate = nd
		mc.Ping = nd
		nd.ackPayload = make([]byte, coordinateBytes())
		c.mu.Lock()
		c.nodes = append(c.nodes, nd)
		c.names[nd.name] = i
		c.mu.Unlock()
		ml, err := memberlist.Create(mc)
		if err != nil {
			return fmt.Errorf("memberlist node %d: %w", i, err)
		}
		nd.ml = ml
	}
	for _, nd := range c.nodes[1:] {
		if _, err := nd.ml.Join([]string{c.nodes[0].addr}); err != nil {
			return fmt.Errorf("memberlist join: %w", err)
		}
	}
	return nil
}

func (c *mlCluster) node(i int) *mlNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *mlCluster) index(name string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.names[name]
	return i, ok
}

func (c *mlCluster) endpoint(i int) *endpoint { return c.node(i).ep }

func (c *mlCluster) aliveSeen(i int) int {
	n := 0
	for _, m := range c.node(i).ml.Members() {
		if m.State == memberlist.StateAlive {
			n++
		}
	}
	return n
}

func (c *mlCluster) setMeta(i int, v string) error {
	nd := c.node(i)
	nd.metaMu.Lock()
	nd.meta = []byte(v)
	nd.metaMu.Unlock()
	go func() { _ = nd.ml.UpdateNode(5 * time.Second) }()
	return nil
}

func (c *mlCluster) kill(i int) { c.node(i).ep.crashed.Store(true) }

func (c *mlCluster) remove(i int) {
	nd := c.node(i)
	nd.ep.crashed.Store(true)
	nd.shutdown()
}

func (nd *mlNode) shutdown() {
	nd.c.mu.Lock()
	if nd.stopped {
		nd.c.mu.Unlock()
		return
	}
	nd.stopped = true
	nd.c.mu.Unlock()
	_ = nd.ml.Shutdown()
}

func (c *mlCluster) close() {
	for _, nd := range c.nodes {
		if nd.ml != nil {
			nd.shutdown()
		}
	}
}

// deliver hands an inbound datagram to memberlist.
func (nd *mlNode) deliver(from string, b []byte) {
	ua, _ := net.ResolveUDPAddr("udp", from)
	select {
	case nd.packets <- &memberlist.Packet{Buf: b, From: ua, Timestamp: time.Now()}:
	case <-nd.done:
	}
}

// FinalAdvertiseAddr implements memberlist.Transport.
func (nd *mlNode) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	host, port, err := net.SplitHostPort(nd.addr)
	if err != nil {
		return nil, 0, err
	}
	p, err := strconv.Atoi(port)
	return net.ParseIP(host), p, err
}

// WriteTo implements memberlist.Transport.
func (nd *mlNode) WriteTo(b []byte, addr string) (time.Time, error) {
	if !nd.ep.crashed.Load() {
		mlSuspects(b, func(node string, inc uint32) {
			if i, ok := nd.c.index(node); ok {
				nd.c.obs.record(nd.idx, i, evSuspect, uint64(inc), "")
			}
		})
	}
	nd.ep.send(addr, b)
	return time.Now(), nil
}

// PacketCh implements memberlist.Transport.
func (nd *mlNode) PacketCh() <-chan *memberlist.Packet { return nd.packets }

// StreamCh implements memberlist.Transport.
func (nd *mlNode) StreamCh() <-chan net.Conn { return nd.streams }

// DialTimeout implements memberlist.Transport: an in-memory pipe; a dial
// to a crashed peer hangs until the timeout, like a blackholed TCP dial.
func (nd *mlNode) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	dst, ok := nd.ep.reachable(addr)
	var peer *mlNode
	if ok {
		for _, p := range nd.c.snapshot() {
			if p.addr == addr {
				peer = p
			}
		}
	}
	if !ok || peer == nil || dst.pausedPast(time.Now().Add(timeout)) {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-t.C:
		case <-nd.done:
		}
		return nil, errUnreachable
	}
	a, b := net.Pipe()
	client := &countConn{Conn: a, ep: nd.ep, local: nd.addr, remote: addr}
	server := &countConn{Conn: b, ep: dst, local: addr, remote: nd.addr}
	go func() {
		if !dst.waitAwake() {
			_ = server.Close()
			return
		}
		select {
		case peer.streams <- server:
		case <-peer.done:
			_ = server.Close()
		}
	}()
	return client, nil
}

func (c *mlCluster) snapshot() []*mlNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*mlNode(nil), c.nodes...)
}

// Shutdown implements memberlist.Transport.
func (nd *mlNode) Shutdown() error {
	select {
	case <-nd.done:
	default:
		close(nd.done)
	}
	return nil
}

// countConn counts the bytes one side of a stream writes.
type countConn struct {
	net.Conn
	ep            *endpoint
	local, remote string
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.ep.sentBytes.Add(int64(n))
	return n, err
}

func (c *countConn) LocalAddr() net.Addr  { a, _ := net.ResolveTCPAddr("tcp", c.local); return a }
func (c *countConn) RemoteAddr() net.Addr { a, _ := net.ResolveTCPAddr("tcp", c.remote); return a }

// NodeMeta implements memberlist.Delegate.
func (nd *mlNode) NodeMeta(int) []byte {
	nd.metaMu.Lock()
	defer nd.metaMu.Unlock()
	return append([]byte(nil), nd.meta...)
}

// NotifyMsg implements memberlist.Delegate.
func (nd *mlNode) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (nd *mlNode) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState implements memberlist.Delegate.
func (nd *mlNode) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (nd *mlNode) MergeRemoteState([]byte, bool) {}

// AckPayload implements memberlist.PingDelegate: every ack carries as many
// bytes as gossipd's acks spend on the Vivaldi coordinate, as Serf's
// coordinate does with memberlist, so that bandwidth compares like with
// like.
func (nd *mlNode) AckPayload() []byte { return nd.ackPayload }

// NotifyPingComplete implements memberlist.PingDelegate.
func (nd *mlNode) NotifyPingComplete(*memberlist.Node, time.Duration, []byte) {}

// NotifyJoin implements memberlist.EventDelegate.
func (nd *mlNode) NotifyJoin(*memberlist.Node) {}

// NotifyLeave implements memberlist.EventDelegate: dead or left (the
// Node it passes does not say which), and the benchmark has no graceful
// leaves, so it is a death.
func (nd *mlNode) NotifyLeave(n *memberlist.Node) {
	if i, ok := nd.c.index(n.Name); ok {
		nd.c.obs.record(nd.idx, i, evDead, 0, "")
	}
}

// NotifyUpdate implements memberlist.EventDelegate.
func (nd *mlNode) NotifyUpdate(n *memberlist.Node) {
	if i, ok := nd.c.index(n.Name); ok {
		nd.c.obs.record(nd.idx, i, evUpdate, 0, string(n.Meta))
	}
}

// memberlist's message type bytes (its net.go) that carry suspicions.
const (
	mlSuspectMsg  = 3
	mlCompoundMsg = 7
	mlHasCrcMsg   = 12
)

// mlSuspects calls f for each suspect message in a memberlist datagram.
func mlSuspects(b []byte, f func(node string, inc uint32)) {
	if len(b) == 0 {
		return
	}
	switch b[0] {
	case mlHasCrcMsg:
		if len(b) >= 5 {
			mlSuspects(b[5:], f)
		}
	case mlCompoundMsg:
		if len(b) < 2 {
			return
		}
		n := int(b[1])
		rest := b[2:]
		if len(rest) < 2*n {
			return
		}
		lens := rest[:2*n]
		rest = rest[2*n:]
		for i := range n {
			l := int(binary.BigEndian.Uint16(lens[2*i:]))
			if len(rest) < l {
				return
			}
			mlSuspects(rest[:l], f)
			rest = rest[l:]
		}
	case mlSuspectMsg:
		var s struct {
			Incarnation uint32
			Node        string
			From        string
		}
		if err := codec.NewDecoder(bytes.NewReader(b[1:]), &codec.MsgpackHandle{}).Decode(&s); err == nil {
			f(s.Node, s.Incarnation)
		}
	}
}
