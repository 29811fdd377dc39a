package clockd

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pleiades-db/pleiades/clockd/internal/monitor"
	"github.com/pleiades-db/pleiades/shared/clockclient"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// monitorLoop probes every peer each ProbeInterval and re-judges health.
func (s *Server) monitorLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		s.probeAll(ctx)
		if ctx.Err() != nil {
			return
		}
		s.judge()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeAll probes the peers concurrently and waits for all of them.
func (s *Server) probeAll(ctx context.Context) {
	var wg sync.WaitGroup
	s.mu.Lock()
	addrs := s.mu.peerAddrs
	s.mu.Unlock()
	for _, addr := range addrs {
		s.mu.Lock()
		p := s.mu.peers[addr]
		if p == nil {
			p = &peerState{}
			s.mu.peers[addr] = p
		}
		self := p.self
		s.mu.Unlock()
		if self {
			continue
		}
		wg.Go(func() { s.probe(ctx, addr) })
	}
	wg.Wait()
}

// probe runs one four-timestamp exchange with addr and records it.
func (s *Server) probe(ctx context.Context, addr string) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
	defer cancel()
	var resp clockpb.ProbeResponse
	t1 := s.physical()
	err := s.bus.Call(ctx, addr, wire.ProtoClock, clockclient.MethodProbe, &clockpb.ProbeRequest{SentNs: t1}, &resp)
	t4 := s.physical()
	var est monitor.Estimate
	if err == nil && resp.GetSentNs() != t1 {
		err = fmt.Errorf("probe answer echoes %d, sent %d", resp.GetSentNs(), t1)
	}
	if err == nil {
		est, err = monitor.EstimateOf(monitor.Sample{T1: t1, T2: resp.GetReceivedNs(), T3: resp.GetRepliedNs(), T4: t4}, s.cfg.ReadError)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.mu.peers[addr]
	if p == nil {
		return // dropped by SetPeers while the probe ran
	}
	p.lastProbe = t4
	if err != nil {
		if ctx.Err() == nil || p.ok {
			s.log.Debug("clock probe failed", slog.String("peer", addr), slog.Any("err", err))
		}
		p.ok, p.err = false, err.Error()
		s.met.probeErrors.Inc()
		return
	}
	if s.nodeID != 0 && resp.GetNodeId() == s.nodeID {
		p.self = true
		return
	}
	p.ok, p.err, p.est, p.lastOK, p.nodeID = true, "", est, t4, resp.GetNodeId()
	s.met.offset.WithLabelValues(addr).Set(est.Offset.Seconds())
	s.met.rtt.WithLabelValues(addr).Set(est.RTT.Seconds())
}

// SetPeers replaces the addresses of the peer clockds the monitor probes
// (from gossip membership, or tests that learn addresses after start).
// Estimates of peers no longer listed are dropped.
func (s *Server) SetPeers(addrs []string) error {
	for _, a := range addrs {
		if err := config.ValidateAddr(a); err != nil {
			return fmt.Errorf("clockd: peer %q: %w", a, err)
		}
	}
	keep := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		keep[a] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.peerAddrs = slices.Clone(addrs)
	for a := range s.mu.peers {
		if !keep[a] {
			delete(s.mu.peers, a)
			s.met.offset.DeleteLabelValues(a)
			s.met.rtt.DeleteLabelValues(a)
		}
	}
	return nil
}

// threshold is the offset beyond which a peer counts as far.
func (s *Server) threshold() time.Duration {
	return time.Duration(s.cfg.OffsetFraction * float64(s.cfg.MaxOffset))
}

// judge recomputes the verdict over the fresh estimates and announces a
// change.
func (s *Server) judge() {
	now := s.physical()
	stale := int64(3 * s.cfg.ProbeInterval)
	s.mu.Lock()
	var fresh []monitor.Estimate
	for _, p := range s.mu.peers {
		if p.ok && !p.self && now-p.lastOK <= stale {
			fresh = append(fresh, p.est)
		}
	}
	v := monitor.Judge(fresh, s.threshold())
	changed := v != s.mu.verdict
	healthChanged := v.Healthy != s.mu.verdict.Healthy
	s.mu.verdict = v
	if !changed {
		s.mu.Unlock()
		return
	}
	s.mu.verdictAt = s.clock.Peek()
	h := s.healthLocked()
	for ch := range s.mu.subs {
		select {
		case ch <- h:
		default: // a slow watcher misses intermediate verdicts
		}
	}
	s.mu.Unlock()
	if v.Healthy {
		s.met.healthy.Set(1)
	} else {
		s.met.healthy.Set(0)
	}
	if !healthChanged {
		return
	}
	if v.Healthy {
		s.log.Info("clock healthy again", slog.Int("peers_reachable", v.Reachable), slog.Int("peers_far", v.Far))
		return
	}
	s.log.Error("clock unhealthy", slog.String("reason", v.Reason))
	if s.cfg.FatalOnUnhealthy {
		s.fail(fmt.Errorf("clockd: %s", v.Reason))
	}
}
