package clockd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/shared/backoff"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// MetadataKey is the key of clockd's bus address in a member's gossip
// metadata (gossippb.Metadata.Addresses, keyed by daemon name).
const MetadataKey = Name

// membershipRefresh is how many probe intervals pass between full
// re-reads of the membership, in case gossipd dropped an event for a slow
// subscriber.
const membershipRefresh = 10

// gossipLoop follows gossipd's membership until ctx ends: it publishes
// this clockd's address in the node's metadata, subscribes to membership
// events and, on each event, re-reads the members and probes the clockd
// address each alive or suspect member publishes. When gossipd is
// unreachable or its stream breaks, it retries with backoff; the peers
// last learned stay in use meanwhile, and before gossipd first answers
// the monitor probes Config.Peers.
func (s *Server) gossipLoop(ctx context.Context) {
	gc := gossipclient.New(s.bus, s.cfg.GossipAddr)
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	warned := false
	for {
		answered, err := s.followGossip(ctx, gc)
		if ctx.Err() != nil {
			return
		}
		if answered {
			warned = false
			retry.Reset()
		}
		if !warned {
			s.log.Warn("following gossipd's membership failed; retrying", slog.String("gossip_addr", s.cfg.GossipAddr), slog.Any("err", err))
			warned = true
		} else {
			s.log.Debug("following gossipd's membership failed; retrying", slog.Any("err", err))
		}
		if !retry.Wait(ctx) {
			return
		}
	}
}

// followGossip publishes the address, subscribes and keeps the peer list
// in step with the membership until the stream breaks or ctx ends. It
// reports whether gossipd answered at all.
func (s *Server) followGossip(ctx context.Context, gc *gossipclient.Client) (answered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	adv := s.advertiseAddr()
	if adv != "" {
		md := &gossippb.Metadata{Addresses: map[string]string{MetadataKey: adv}}
		if _, err := gc.SetMetadata(ctx, md, false); err != nil {
			cancel()
			return false, fmt.Errorf("publish the clockd address: %w", err)
		}
	}
	sub, err := gc.Subscribe(ctx, false)
	if err != nil {
		cancel()
		return adv != "", err
	}
	kick := make(chan struct{}, 1)
	ended := make(chan error, 1)
	var wg sync.WaitGroup
	// The reader exits when the stream ends: gossipd closes it, it
	// breaks, or the cleanup below cancels ctx and closes it.
	wg.Go(func() {
		for {
			ev, err := sub.Next()
			if err != nil {
				ended <- err
				return
			}
			if ev.GetType() == gossippb.EventType_EVENT_TYPE_USER {
				continue
			}
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	})
	defer func() {
		cancel()
		_ = sub.Close()
		wg.Wait()
	}()
	if err := s.refreshMembers(ctx, gc); err != nil {
		return true, err
	}
	if adv == "" {
		s.log.Warn("not publishing this clockd's address in gossip: the bus listens on a wildcard address; set --advertise-addr",
			slog.Any("bus_addr", s.bus.Addr()))
	}
	s.log.Info("following gossipd's membership", slog.String("gossip_addr", s.cfg.GossipAddr), slog.String("advertise_addr", adv))
	t := time.NewTicker(membershipRefresh * s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case err := <-ended:
			if err == nil {
				err = errors.New("membership stream ended")
			}
			return true, err
		case <-kick:
		case <-t.C:
		}
		if err := s.refreshMembers(ctx, gc); err != nil {
			return true, err
		}
	}
}

// refreshMembers reads the members and sets the peers to the clockd
// addresses they publish.
func (s *Server) refreshMembers(ctx context.Context, gc *gossipclient.Client) error {
	members, selfID, err := gc.Members(ctx, false)
	if err != nil {
		return err
	}
	addrs := peersOf(members, selfID, s.nodeID, s.advertiseAddr())
	s.mu.Lock()
	same := s.mu.fromGossip && slices.Equal(addrs, s.mu.peerAddrs)
	s.mu.Unlock()
	if same {
		return nil
	}
	if err := s.SetPeers(addrs); err != nil {
		return err
	}
	s.mu.Lock()
	s.mu.fromGossip = true
	s.mu.Unlock()
	s.log.Info("clock peers from gossip membership", slog.Any("peers", addrs))
	return nil
}

// peersOf returns, sorted and without duplicates, the clockd addresses
// published by the alive and suspect members other than this node (by
// node id or by address); members without a valid clockd address are
// skipped.
func peersOf(members []*gossippb.Member, gossipSelf, nodeID uint64, selfAddr string) []string {
	var out []string
	for _, m := range members {
		switch m.GetState() {
		case gossippb.MemberState_MEMBER_STATE_ALIVE, gossippb.MemberState_MEMBER_STATE_SUSPECT:
		default:
			continue
		}
		id := m.GetNodeId()
		if id == gossipSelf || (nodeID != 0 && id == nodeID) {
			continue
		}
		a := m.GetMetadata().GetAddresses()[MetadataKey]
		if a == "" || a == selfAddr || config.ValidateAddr(a) != nil {
			continue
		}
		out = append(out, a)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// advertiseAddr is the address this clockd publishes in gossip metadata:
// AdvertiseAddr, else the bus's bound address unless that is a wildcard
// (0.0.0.0, ::), which other nodes cannot dial; "" publishes nothing.
func (s *Server) advertiseAddr() string {
	if s.cfg.AdvertiseAddr != "" {
		return s.cfg.AdvertiseAddr
	}
	a, ok := s.bus.Addr().(*net.UDPAddr)
	if !ok || a == nil || a.IP.IsUnspecified() {
		return ""
	}
	return a.String()
}
