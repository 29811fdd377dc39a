package clockd

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/clockclient"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// register installs the clock protocol on the bus; its authorization is
// rules (authz.go).
func (s *Server) register() {
	s.bus.Authorize(wire.ProtoClock, rules())
	bus.HandleUnary(s.bus, wire.ProtoClock, clockclient.MethodNow, func(ctx context.Context, _ *clockpb.NowRequest) (*clockpb.NowResponse, error) {
		ts, err := s.Now(ctx)
		if err != nil {
			return nil, err
		}
		return &clockpb.NowResponse{Now: ts.Proto()}, nil
	})
	bus.HandleUnary(s.bus, wire.ProtoClock, clockclient.MethodUpdate, func(ctx context.Context, req *clockpb.UpdateRequest) (*clockpb.UpdateResponse, error) {
		if req.GetObserved() == nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "clockd: update without a timestamp")
		}
		obs, err := hlc.FromProto(req.GetObserved())
		if err != nil {
			return nil, bus.Errorf(bus.CodeInvalidArgument, "clockd: %v", err)
		}
		ts, err := s.Update(ctx, obs)
		if err != nil {
			return nil, err
		}
		return &clockpb.UpdateResponse{Now: ts.Proto()}, nil
	})
	bus.HandleUnary(s.bus, wire.ProtoClock, clockclient.MethodStatus, func(ctx context.Context, _ *clockpb.StatusRequest) (*clockpb.StatusResponse, error) {
		return s.status(ctx), nil
	})
	bus.HandleUnary(s.bus, wire.ProtoClock, clockclient.MethodProbe, func(_ context.Context, req *clockpb.ProbeRequest) (*clockpb.ProbeResponse, error) {
		t2 := s.physical()
		return &clockpb.ProbeResponse{SentNs: req.GetSentNs(), ReceivedNs: t2, NodeId: s.nodeID, RepliedNs: s.physical()}, nil
	})
	bus.HandleUnary(s.bus, wire.ProtoClock, clockclient.MethodOffsets, func(context.Context, *clockpb.OffsetsRequest) (*clockpb.OffsetsResponse, error) {
		return &clockpb.OffsetsResponse{Peers: s.Offsets()}, nil
	})
	bus.HandleStream(s.bus, wire.ProtoClock, clockclient.MethodWatchHealth, func(ctx context.Context, _ *clockpb.WatchHealthRequest, send func(*clockpb.Health) error) error {
		return s.watchHealth(ctx, send)
	})
}

// status builds the Status answer.
func (s *Server) status(ctx context.Context) *clockpb.StatusResponse {
	serving := s.serving.Load()
	now := s.clock.Peek()
	if serving {
		if ts, err := s.Now(ctx); err == nil {
			now = ts
		}
	}
	return &clockpb.StatusResponse{
		Now:              now.Proto(),
		MaxOffsetNs:      int64(s.cfg.MaxOffset),
		PersistedBoundNs: s.bound.Load(),
		Serving:          serving,
		Health:           s.Health(),
		ForwardJumps:     s.clock.ForwardJumps(),
	}
}

// Health returns the monitor's current verdict.
func (s *Server) Health() *clockpb.Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthLocked()
}

func (s *Server) healthLocked() *clockpb.Health {
	v := s.mu.verdict
	return &clockpb.Health{
		Healthy: v.Healthy, Reason: v.Reason,
		PeersReachable: int32(v.Reachable), PeersFar: int32(v.Far),
		At: s.mu.verdictAt.Proto(),
	}
}

// watchHealth sends the current health, then every change, until ctx
// ends or the server stops.
func (s *Server) watchHealth(ctx context.Context, send func(*clockpb.Health) error) error {
	ch := make(chan *clockpb.Health, 8)
	s.mu.Lock()
	if s.mu.stopped {
		s.mu.Unlock()
		return bus.Errorf(bus.CodeUnavailable, "clockd: stopped")
	}
	first := s.healthLocked()
	s.mu.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.subs, ch)
		s.mu.Unlock()
	}()
	if err := send(first); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return nil
		case h := <-ch:
			if err := send(h); err != nil {
				return err
			}
		}
	}
}

// Offsets returns the per-peer estimates, sorted by address; the node's
// own address, if listed, is left out.
func (s *Server) Offsets() []*clockpb.PeerOffset {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*clockpb.PeerOffset, 0, len(s.mu.peers))
	for addr, p := range s.mu.peers {
		if p.self {
			continue
		}
		out = append(out, &clockpb.PeerOffset{
			Peer: addr, OffsetNs: int64(p.est.Offset), RttNs: int64(p.est.RTT),
			UncertaintyNs: int64(p.est.Uncertainty), LastProbeNs: p.lastOK, Error: p.err, NodeId: p.nodeID,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetPeer() < out[j].GetPeer() })
	return out
}

// offsetJSON is one row of /v1/offsets.
type offsetJSON struct {
	Peer          string `json:"peer"`
	NodeID        uint64 `json:"node_id,omitempty,string"`
	OffsetNs      int64  `json:"offset_ns"`
	RTTNs         int64  `json:"rtt_ns"`
	UncertaintyNs int64  `json:"uncertainty_ns"`
	LastProbe     string `json:"last_probe,omitempty"`
	Error         string `json:"error,omitempty"`
}

// offsetsView is the body of /v1/offsets.
type offsetsView struct {
	Healthy bool         `json:"healthy"`
	Reason  string       `json:"reason,omitempty"`
	Peers   []offsetJSON `json:"peers"`
}

func (s *Server) offsetsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := s.Health()
		v := offsetsView{Healthy: h.GetHealthy(), Reason: h.GetReason(), Peers: []offsetJSON{}}
		for _, p := range s.Offsets() {
			row := offsetJSON{Peer: p.GetPeer(), NodeID: p.GetNodeId(), OffsetNs: p.GetOffsetNs(), RTTNs: p.GetRttNs(),
				UncertaintyNs: p.GetUncertaintyNs(), Error: p.GetError()}
			if p.GetLastProbeNs() > 0 {
				row.LastProbe = time.Unix(0, p.GetLastProbeNs()).UTC().Format(time.RFC3339Nano)
			}
			v.Peers = append(v.Peers, row)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	})
}
