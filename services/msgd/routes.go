package msgd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// Keys of msgd's entries in its node's gossip metadata
// (gossippb.Metadata.Addresses).
const (
	// MetadataKey holds msgd's bus address.
	MetadataKey = Name
	// MetadataRoute holds the host:port other msgd open routes to.
	MetadataRoute = "msgd-route"
	// MetadataClient holds the host:port NATS clients connect to.
	MetadataClient = "msgd-client"
)

// gossipLoop follows gossipd's membership until ctx ends: it publishes
// msgd's addresses in the node's metadata, subscribes to membership
// events and, on each (and every RefreshInterval), sets the routes to the
// msgd route addresses of the alive and suspect members. When gossipd is
// unreachable or its stream breaks it retries with backoff; the routes
// last learned stay meanwhile.
func (s *Server) gossipLoop(ctx context.Context) {
	gc := gossipclient.New(s.d.Bus, s.cfg.GossipAddr)
	retry := 100 * time.Millisecond
	warned := false
	for {
		answered, err := s.followGossip(ctx, gc)
		if ctx.Err() != nil {
			return
		}
		if answered {
			retry, warned = 100*time.Millisecond, false
		}
		if !warned {
			s.log.Warn("following gossipd's membership failed; retrying", slog.String("gossip_addr", s.cfg.GossipAddr), slog.Any("err", err))
			warned = true
		} else {
			s.log.Debug("following gossipd's membership failed; retrying", slog.Any("err", err))
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		retry = min(2*retry, 5*time.Second)
	}
}

// advertised returns msgd's metadata entries: its bus address and the
// route and client addresses other hosts can dial (none when the host is
// a wildcard and no AdvertiseHost is set).
func (s *Server) advertised() map[string]string {
	md := map[string]string{}
	if a := s.d.Bus.Addr(); a != nil {
		md[MetadataKey] = a.String()
	}
	host := s.cfg.AdvertiseHost
	if host == "" {
		if ip := net.ParseIP(s.cfg.NATSHost); ip == nil || ip.IsUnspecified() {
			return md
		}
		host = s.cfg.NATSHost
	}
	ns := s.nats()
	if ns == nil {
		return md
	}
	if ca := ns.ClusterAddr(); ca != nil {
		md[MetadataRoute] = net.JoinHostPort(host, strconv.Itoa(ca.Port))
	}
	if a, ok := ns.Addr().(*net.TCPAddr); ok {
		md[MetadataClient] = net.JoinHostPort(host, strconv.Itoa(a.Port))
	}
	return md
}

// followGossip publishes the addresses, subscribes and keeps the routes in
// step with the membership until the stream breaks or ctx ends. It
// reports whether gossipd answered at all.
func (s *Server) followGossip(ctx context.Context, gc *gossipclient.Client) (answered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	md := s.advertised()
	if _, err := gc.SetMetadata(ctx, &gossippb.Metadata{Addresses: md}, false); err != nil {
		return false, fmt.Errorf("publish msgd's addresses: %w", err)
	}
	if md[MetadataRoute] == "" {
		s.log.Warn("not publishing a route address in gossip: NATS listens on a wildcard address; set --nats-advertise-host")
	}
	sub, err := gc.Subscribe(ctx, false)
	if err != nil {
		return true, err
	}
	kick := make(chan struct{}, 1)
	ended := make(chan error, 1)
	done := make(chan struct{})
	// The reader exits when the stream ends: gossipd closes it, it
	// breaks, or the deferred cancel and Close end it.
	go func() {
		defer close(done)
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
	}()
	defer func() {
		cancel()
		_ = sub.Close()
		<-done
	}()
	if err := s.refreshMembers(ctx, gc); err != nil {
		return true, err
	}
	s.log.Info("following gossipd's membership", slog.String("gossip_addr", s.cfg.GossipAddr), slog.String("route_addr", md[MetadataRoute]))
	t := time.NewTicker(s.cfg.RefreshInterval)
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

// peer is another msgd as gossip lists it.
type peer struct {
	nodeID uint64
	route  string
}

// peersOf returns, sorted by route address and without duplicates, the
// msgd of the alive and suspect members other than this node (by node id
// or by route address); members without a valid route address are
// skipped.
func peersOf(members []*gossippb.Member, gossipSelf, nodeID uint64, selfRoute string) []peer {
	var out []peer
	for _, m := range members {
		switch m.GetState() {
		case gossippb.MemberState_MEMBER_STATE_ALIVE, gossippb.MemberState_MEMBER_STATE_SUSPECT:
		default:
			continue
		}
		id := m.GetNodeId()
		if id == gossipSelf || id == nodeID {
			continue
		}
		a := m.GetMetadata().GetAddresses()[MetadataRoute]
		if a == "" || a == selfRoute || config.ValidateAddr(a) != nil {
			continue
		}
		out = append(out, peer{nodeID: id, route: a})
	}
	slices.SortFunc(out, func(a, b peer) int {
		if a.route != b.route {
			if a.route < b.route {
				return -1
			}
			return 1
		}
		return 0
	})
	return slices.CompactFunc(out, func(a, b peer) bool { return a.route == b.route })
}

// refreshMembers reads the members and applies the routes they imply.
func (s *Server) refreshMembers(ctx context.Context, gc *gossipclient.Client) error {
	members, selfID, err := gc.Members(ctx, false)
	if err != nil {
		return err
	}
	ps := peersOf(members, selfID, s.d.NodeID, s.advertised()[MetadataRoute])
	routes := make([]string, 0, len(ps))
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		routes = append(routes, p.route)
		names = append(names, ServerName(p.nodeID))
	}
	s.mu.Lock()
	changed := !s.mu.fromGossip || !slices.Equal(routes, s.mu.gossipRoutes)
	s.mu.gossipRoutes, s.mu.peers, s.mu.fromGossip = routes, names, true
	s.mu.Unlock()
	if changed {
		s.log.Info("msgd peers from gossip membership", slog.Any("routes", routes), slog.Any("peers", names))
	}
	s.applyRoutes()
	return nil
}

// routes returns the routes NATS should have, sorted, without
// duplicates: the static ones, those learned from gossip, and this msgd's
// own route address (NATS recognises and skips a route to itself; as in
// NATS's usual configuration, the same list serves every server, and
// JetStream's clustering wants at least one route from the start).
func (s *Server) routes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append(slices.Clone(s.cfg.Routes), s.mu.gossipRoutes...)
	out = append(out, s.selfRoute())
	slices.Sort(out)
	return slices.Compact(out)
}

// selfRoute is this msgd's own route address.
func (s *Server) selfRoute() string {
	host := s.cfg.AdvertiseHost
	if host == "" {
		host = s.cfg.NATSHost
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(s.cfg.NATSClusterPort))
}

// applyRoutes gives NATS the current routes through its configuration
// reload (ReloadOptions: routes added are dialled, routes removed are
// closed and not redialled). Callers are serialized by reloadMu.
func (s *Server) applyRoutes() {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	ns := s.nats()
	if ns == nil {
		return
	}
	routes := s.routes()
	s.mu.Lock()
	same := slices.Equal(routes, s.mu.applied)
	s.mu.Unlock()
	if same {
		return
	}
	o, err := s.options(routes)
	if err == nil {
		s.metrics.reloads.Inc()
		err = ns.ReloadOptions(o)
	}
	if err != nil {
		s.metrics.reloadErrors.Inc()
		s.log.Warn("reloading NATS routes failed", slog.Any("err", err))
		return
	}
	s.mu.Lock()
	s.mu.applied = routes
	s.mu.Unlock()
	s.metrics.routes.Set(float64(len(routes)))
	s.log.Info("NATS routes set", slog.Any("routes", routes))
}

// withdraw removes msgd's addresses from the node's gossip metadata, so
// that the other msgd drop their routes to it and do not wait for it.
// Best effort, bounded by ctx and one second.
func (s *Server) withdraw(ctx context.Context) {
	if s.cfg.GossipAddr == "" || s.cfg.NoCluster {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	md := &gossippb.Metadata{Addresses: map[string]string{MetadataKey: "", MetadataRoute: "", MetadataClient: ""}}
	if _, err := gossipclient.New(s.d.Bus, s.cfg.GossipAddr).SetMetadata(ctx, md, false); err != nil {
		s.log.Debug("withdrawing msgd's addresses from gossip failed", slog.Any("err", err))
	}
}

// readyCheck passes when NATS accepts clients and is routed to every msgd
// gossip lists as alive or suspect.
func (s *Server) readyCheck(context.Context) error {
	s.mu.Lock()
	stopped, ns, peers := s.mu.stopped, s.mu.ns, s.mu.peers
	s.mu.Unlock()
	switch {
	case stopped:
		return errors.New("stopped")
	case ns == nil:
		return errors.New("not started")
	case !ns.Running() || ns.Addr() == nil:
		return errors.New("NATS not accepting clients")
	}
	if len(peers) == 0 {
		return nil
	}
	rz, err := ns.Routez(nil)
	if err != nil {
		return fmt.Errorf("routez: %w", err)
	}
	routed := map[string]bool{}
	for _, r := range rz.Routes {
		routed[r.RemoteName] = true
	}
	var missing []string
	for _, p := range peers {
		if !routed[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not routed to %v", missing)
	}
	return nil
}
