package raftd

import (
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/multiraft"
	"github.com/pleiades-db/pleiades/shared/backoff"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// MetadataKey is the key of raftd's advertised bus address in a member's
// gossip metadata (gossippb.Metadata.Addresses, keyed by daemon name).
const MetadataKey = Name

// gossipRefresh is the longest time between two full reads of gossipd's
// membership, in case gossipd dropped an event for a slow subscriber.
const gossipRefresh = 10 * time.Second

// gossipPeer is another node's raftd as gossip knows it.
type gossipPeer struct {
	addr string
	// alive: the member is alive (not merely suspect). Only alive
	// members take part in an Init.
	alive bool
}

// advertiseAddr is the address other nodes reach this raftd at:
// Config.AdvertiseAddr, else the bound bus address unless it is a
// wildcard (then "", which Start refuses).
func (s *Server) advertiseAddr() string {
	if s.cfg.AdvertiseAddr != "" {
		return s.cfg.AdvertiseAddr
	}
	a, ok := s.d.Bus.Addr().(*net.UDPAddr)
	if !ok || a == nil || a.IP.IsUnspecified() {
		return ""
	}
	return a.String()
}

// followGossip learns the other nodes' raftd addresses from gossipd until
// Stop: it publishes this raftd's advertised address in the node's gossip
// metadata and, on every membership change, records the raftd address
// each alive or suspect member publishes (peers for hello and Init, and
// the node id → address map the raft transport and forwarding resolve
// through, so a node back at a new address is found again). When gossipd
// is unreachable or its stream breaks it retries with backoff, keeping
// the peers last learned.
func (s *Server) followGossip() {
	gc := gossipclient.New(s.d.Bus, s.cfg.GossipAddr)
	md := &gossippb.Metadata{Addresses: map[string]string{MetadataKey: s.advertiseAddr()}}
	retry, warned := backoff.New(100*time.Millisecond, 5*time.Second), false
	for {
		answered, err := gc.Follow(s.ctx, md, gossipRefresh, s.gossipMembers)
		if s.ctx.Err() != nil {
			return
		}
		if answered {
			retry.Reset()
			warned = false
		}
		if !warned {
			s.log.Warn("following gossipd's membership failed; retrying", slog.String("gossip_addr", s.cfg.GossipAddr), slog.Any("error", err))
			warned = true
		} else {
			s.log.Debug("following gossipd's membership failed; retrying", slog.Any("error", err))
		}
		if !retry.Wait(s.ctx) {
			return
		}
	}
}

// gossipMembers records the raftd addresses the members publish (called
// by Follow, one call at a time).
func (s *Server) gossipMembers(members []*gossippb.Member, _ uint64) {
	peers := peersOf(members, s.d.NodeID, s.advertiseAddr())
	// Under s.mu, so the latest list is the one the store keeps (lock
	// order: s.mu, then the store's).
	s.mu.Lock()
	same := maps.Equal(peers, s.mu.gossipPeers)
	s.mu.gossipPeers = peers
	if s.mu.store != nil {
		setNodeAddrs(s.mu.store, peers)
	}
	s.mu.Unlock()
	if !same {
		s.log.Info("raft peers from gossip membership", slog.Any("peers", peerList(peers)))
	}
}

// setNodeAddrs records the gossip peers' addresses in the store.
func setNodeAddrs(st *multiraft.Store, peers map[uint64]gossipPeer) {
	for id, p := range peers {
		if st.NodeAddr(id) != p.addr {
			st.SetNodeAddr(id, p.addr)
		}
	}
}

// peersOf returns the raftd of every alive or suspect member other than
// this node (by node id or address) that publishes a valid one.
func peersOf(members []*gossippb.Member, self uint64, selfAddr string) map[uint64]gossipPeer {
	out := map[uint64]gossipPeer{}
	for _, m := range members {
		alive := m.GetState() == gossippb.MemberState_MEMBER_STATE_ALIVE
		if !alive && m.GetState() != gossippb.MemberState_MEMBER_STATE_SUSPECT {
			continue
		}
		a := m.GetMetadata().GetAddresses()[MetadataKey]
		if m.GetNodeId() == self || a == "" || a == selfAddr || config.ValidateAdvertiseAddr(a) != nil {
			continue
		}
		out[m.GetNodeId()] = gossipPeer{addr: a, alive: alive}
	}
	return out
}

// peerList is peers as sorted "n<id>=addr" strings, for logs.
func peerList(peers map[uint64]gossipPeer) []string {
	var out []string
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		p := peers[id]
		s := fmt.Sprintf("n%d=%s", id, p.addr)
		if !p.alive {
			s += " (suspect)"
		}
		out = append(out, s)
	}
	return out
}

// peerAddrs returns the raftd addresses of the other nodes: Config.Peers
// and those gossip lists, only alive members' when liveOnly, sorted and
// without this raftd's own.
func (s *Server) peerAddrs(liveOnly bool) []string {
	self := s.advertiseAddr()
	out := slices.Clone(s.cfg.Peers)
	s.mu.Lock()
	for _, p := range s.mu.gossipPeers {
		if p.alive || !liveOnly {
			out = append(out, p.addr)
		}
	}
	s.mu.Unlock()
	out = slices.DeleteFunc(out, func(a string) bool { return a == self })
	slices.Sort(out)
	return slices.Compact(out)
}
