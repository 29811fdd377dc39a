package gossipd

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"

	"github.com/pleiades-db/pleiades/gossipd/internal/swim"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

var errNotStarted = bus.Errorf(bus.CodeUnavailable, "gossipd: not started")

// engine returns the running engine, or nil before Start.
func (s *Server) engine() *swim.Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.mu.started || s.mu.stopped {
		return nil
	}
	return s.eng
}

// memberProto converts a member with its last known coordinate.
func (s *Server) memberProto(e *swim.Engine, m swim.Member) *gossippb.Member {
	var coord *gossippb.Coordinate
	if c, ok := e.PeerCoordinate(m.ID); ok {
		coord = swim.CoordinateToProto(c)
	}
	return swim.MemberToProto(m, coord)
}

func (s *Server) members(includeDead bool) (*gossippb.MembersResponse, error) {
	e := s.engine()
	if e == nil {
		return nil, errNotStarted
	}
	resp := &gossippb.MembersResponse{SelfId: s.deps.NodeID}
	for _, m := range e.Members() {
		if !includeDead && (m.State == gossippb.MemberState_MEMBER_STATE_DEAD || m.State == gossippb.MemberState_MEMBER_STATE_LEFT) {
			continue
		}
		resp.Members = append(resp.Members, s.memberProto(e, m))
	}
	return resp, nil
}

// registerHandlers installs the gossip protocol; its authorization is
// rules (authz.go).
func (s *Server) registerHandlers() {
	b, p := s.deps.Bus, wire.ProtoGossip
	b.Authorize(p, rules())
	b.HandleDatagram(p, func(_ bus.Peer, payload []byte) {
		if e := s.engine(); e != nil {
			e.Receive(payload)
		}
	})
	bus.HandleUnary(b, p, gossipclient.MethodPushPull, func(ctx context.Context, r *gossippb.PushPullState) (*gossippb.PushPullState, error) {
		e := s.engine()
		if e == nil {
			return nil, errNotStarted
		}
		resp, err := e.HandlePushPull(r)
		if err != nil {
			return nil, bus.Errorf(bus.CodeFailedPrecondition, "gossipd: %v", err)
		}
		return resp, nil
	})
	bus.HandleUnary(b, p, gossipclient.MethodPing, func(ctx context.Context, r *gossippb.Ping) (*gossippb.Ack, error) {
		e := s.engine()
		if e == nil {
			return nil, errNotStarted
		}
		ack, err := e.HandlePing(r)
		if err != nil {
			return nil, bus.Errorf(bus.CodeFailedPrecondition, "gossipd: %v", err)
		}
		return ack, nil
	})
	bus.HandleUnary(b, p, gossipclient.MethodMembers, func(ctx context.Context, r *gossippb.MembersRequest) (*gossippb.MembersResponse, error) {
		return s.members(r.GetIncludeDead())
	})
	bus.HandleUnary(b, p, gossipclient.MethodMember, func(ctx context.Context, r *gossippb.MemberRequest) (*gossippb.MemberResponse, error) {
		e := s.engine()
		if e == nil {
			return nil, errNotStarted
		}
		id := r.GetNodeId()
		if id == 0 {
			id = s.deps.NodeID
		}
		m, ok := e.Member(id)
		if !ok {
			return nil, bus.Errorf(bus.CodeNotFound, "gossipd: member %d not found", id)
		}
		return &gossippb.MemberResponse{Member: s.memberProto(e, m)}, nil
	})
	bus.HandleUnary(b, p, gossipclient.MethodJoin, func(ctx context.Context, r *gossippb.JoinRequest) (*gossippb.JoinResponse, error) {
		e := s.engine()
		if e == nil {
			return nil, errNotStarted
		}
		res := make(chan int, 1)
		e.Join(r.GetAddrs(), func(n int) { res <- n })
		select {
		case n := <-res:
			if n > 0 {
				s.mu.Lock()
				s.mu.joined = true
				s.mu.Unlock()
			}
			return &gossippb.JoinResponse{Joined: uint32(n)}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	bus.HandleUnary(b, p, gossipclient.MethodLeave, func(ctx context.Context, r *gossippb.LeaveRequest) (*gossippb.LeaveResponse, error) {
		e := s.engine()
		if e == nil {
			return nil, errNotStarted
		}
		e.Leave()
		return &gossippb.LeaveResponse{}, nil
	})
	bus.HandleUnary(b, p, gossipclient.MethodSetMetadata, func(ctx context.Context, r *gossippb.SetMetadataRequest) (*gossippb.SetMetadataResponse, error) {
		e := s.engine()
		if e == nil {
			return nil, errNotStarted
		}
		md := mergeMetadata(e.Self().Metadata, r.GetMetadata(), r.GetReplace())
		if err := e.SetMetadata(md); err != nil {
			if errors.Is(err, swim.ErrMetadataTooLarge) {
				return nil, bus.Errorf(bus.CodeInvalidArgument, "gossipd: %v", err)
			}
			return nil, err
		}
		return &gossippb.SetMetadataResponse{Metadata: md}, nil
	})
	bus.HandleUnary(b, p, gossipclient.MethodCoordinate, func(ctx context.Context, r *gossippb.CoordinateRequest) (*gossippb.CoordinateResponse, error) {
		e := s.engine()
		if e == nil {
			return nil, errNotStarted
		}
		id := r.GetNodeId()
		if id == 0 {
			id = s.deps.NodeID
		}
		c, ok := e.PeerCoordinate(id)
		if !ok {
			return nil, bus.Errorf(bus.CodeNotFound, "gossipd: no coordinate for member %d", id)
		}
		return &gossippb.CoordinateResponse{Coordinate: swim.CoordinateToProto(c)}, nil
	})
	bus.HandleUnary(b, p, gossipclient.MethodEstimateRTT, func(ctx context.Context, r *gossippb.EstimateRTTRequest) (*gossippb.EstimateRTTResponse, error) {
		e := s.engine()
		if e == nil {
			return nil, errNotStarted
		}
		ids := [2]uint64{r.GetA(), r.GetB()}
		var cs [2]*gossippb.Coordinate
		for i, id := range ids {
			if id == 0 {
				id = s.deps.NodeID
			}
			c, ok := e.PeerCoordinate(id)
			if !ok {
				return nil, bus.Errorf(bus.CodeNotFound, "gossipd: no coordinate for member %d", id)
			}
			cs[i] = swim.CoordinateToProto(c)
		}
		d := swim.CoordinateFromProto(cs[0]).DistanceTo(swim.CoordinateFromProto(cs[1]))
		return &gossippb.EstimateRTTResponse{RttNanos: int64(d)}, nil
	})
	bus.HandleUnary(b, p, gossipclient.MethodBroadcast, func(ctx context.Context, r *gossippb.BroadcastRequest) (*gossippb.BroadcastResponse, error) {
		e := s.engine()
		if e == nil {
			return nil, errNotStarted
		}
		return &gossippb.BroadcastResponse{Id: e.Broadcast(r.GetName(), r.GetPayload())}, nil
	})
	bus.HandleStream(b, p, gossipclient.MethodSubscribe, func(ctx context.Context, r *gossippb.SubscribeRequest, send func(*gossippb.Event) error) error {
		e := s.engine()
		if e == nil {
			return errNotStarted
		}
		c := make(chan *gossippb.Event, 256)
		s.mu.Lock()
		s.mu.subs[c] = struct{}{}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.mu.subs, c)
			s.mu.Unlock()
		}()
		if r.GetSnapshot() {
			for _, m := range e.Members() {
				if m.State == gossippb.MemberState_MEMBER_STATE_ALIVE || m.State == gossippb.MemberState_MEMBER_STATE_SUSPECT {
					if err := send(&gossippb.Event{Type: gossippb.EventType_EVENT_TYPE_JOIN, Member: s.memberProto(e, m)}); err != nil {
						return err
					}
				}
			}
		}
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.ctx.Done():
				return nil
			case ev := <-c:
				if err := send(ev); err != nil {
					return err
				}
			}
		}
	})
}

// mergeMetadata applies a SetMetadata request to cur.
func mergeMetadata(cur, upd *gossippb.Metadata, replace bool) *gossippb.Metadata {
	if replace || cur == nil {
		cur = &gossippb.Metadata{}
	}
	out := &gossippb.Metadata{Addresses: maps.Clone(cur.GetAddresses()), Labels: maps.Clone(cur.GetLabels()), Capacity: maps.Clone(cur.GetCapacity())}
	if out.Addresses == nil {
		out.Addresses = map[string]string{}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if out.Capacity == nil {
		out.Capacity = map[string]float64{}
	}
	for k, v := range upd.GetAddresses() {
		if v == "" {
			delete(out.Addresses, k)
		} else {
			out.Addresses[k] = v
		}
	}
	for k, v := range upd.GetLabels() {
		if v == "" {
			delete(out.Labels, k)
		} else {
			out.Labels[k] = v
		}
	}
	maps.Copy(out.Capacity, upd.GetCapacity())
	return out
}

// memberView is one member in /v1/members.
type memberView struct {
	NodeID      uint64               `json:"node_id,string"`
	Addr        string               `json:"addr"`
	State       string               `json:"state"`
	Incarnation uint64               `json:"incarnation"`
	Addresses   map[string]string    `json:"addresses,omitempty"`
	Labels      map[string]string    `json:"labels,omitempty"`
	Capacity    map[string]float64   `json:"capacity,omitempty"`
	Coordinate  *gossippb.Coordinate `json:"coordinate,omitempty"`
	RTTMillis   *float64             `json:"estimated_rtt_ms,omitempty"`
}

// StateName returns the lower-case name of a member state ("alive",
// "suspect", "dead", "left").
func StateName(st gossippb.MemberState) string {
	switch st {
	case gossippb.MemberState_MEMBER_STATE_ALIVE:
		return "alive"
	case gossippb.MemberState_MEMBER_STATE_SUSPECT:
		return "suspect"
	case gossippb.MemberState_MEMBER_STATE_DEAD:
		return "dead"
	case gossippb.MemberState_MEMBER_STATE_LEFT:
		return "left"
	}
	return "unknown"
}

// serveMembers is GET /v1/members: every known member as JSON.
func (s *Server) serveMembers(w http.ResponseWriter, r *http.Request) {
	e := s.engine()
	if e == nil {
		http.Error(w, "gossipd: not started", http.StatusServiceUnavailable)
		return
	}
	self, _ := e.PeerCoordinate(s.deps.NodeID)
	var out []memberView
	for _, m := range e.Members() {
		v := memberView{NodeID: m.ID, Addr: m.Addr, State: StateName(m.State), Incarnation: m.Incarnation,
			Addresses: m.Metadata.GetAddresses(), Labels: m.Metadata.GetLabels(), Capacity: m.Metadata.GetCapacity()}
		if c, ok := e.PeerCoordinate(m.ID); ok {
			v.Coordinate = swim.CoordinateToProto(c)
			ms := float64(self.DistanceTo(c).Microseconds()) / 1000
			v.RTTMillis = &ms
		}
		out = append(out, v)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"self_id": s.deps.NodeID, "members": out})
}
