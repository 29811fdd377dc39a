package msgd

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/clockclient"
	"github.com/pleiades-db/pleiades/shared/events"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/wire"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
)

// source is one daemon stream msgd bridges to NATS. Adding a source is one
// entry in Server.sources: a name, the daemon's address and a follow
// function, usually streamOf with a conversion to events.
type source struct {
	// name is the events' source (the first token after the prefix) and
	// the metric label.
	name string
	// addr is the daemon's bus address; "" leaves the source out.
	addr string
	// follow streams the daemon's events to emit until the stream breaks
	// or ctx ends; the bridge reopens it with backoff.
	follow func(ctx context.Context, addr string, emit func(*events.Event)) error
}

// sources lists the bridged streams.
func (s *Server) sources() []source {
	return []source{
		{"member", s.cfg.GossipAddr, s.followMembers},
		{"clock", s.cfg.ClockAddr, streamOf(s, wire.ProtoClock, clockclient.MethodWatchHealth, &clockpb.WatchHealthRequest{}, s.clockEvents)},
		{"range", s.cfg.RaftAddr, streamOf(s, wire.ProtoKV, kvclient.MethodWatchRanges, &kvpb.WatchRangesRequest{}, s.rangeEvents)},
		{"disk", s.cfg.StoreAddr, streamOf(s, wire.ProtoStore, storeclient.MethodWatchDisk, &storepb.WatchDiskRequest{}, s.diskEvents)},
		{"workflow", s.cfg.WorkflowAddr, streamOf(s, wire.ProtoWorkflow, workflowclient.MethodSubscribe, &workflowpb.SubscribeRequest{}, s.workflowEvents)},
	}
}

// streamOf follows a server stream of Ev messages, converting each into
// zero or more events.
func streamOf[Ev any, PEv interface {
	*Ev
	proto.Message
}](s *Server, p wire.Protocol, method string, req proto.Message, convert func(PEv) []*events.Event) func(context.Context, string, func(*events.Event)) error {
	return func(ctx context.Context, addr string, emit func(*events.Event)) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := s.d.Bus.Stream(ctx, addr, p, method, req)
		if err != nil {
			return err
		}
		defer func() {
			cancel() // unblocks a Recv before Close takes the stream
			_ = st.Close()
		}()
		for {
			ev := PEv(new(Ev))
			if err := st.Recv(ev); err != nil {
				return err
			}
			for _, e := range convert(ev) {
				emit(e)
			}
		}
	}
}

// startBridge connects the bridge to the NATS server in process and starts
// one goroutine per source; they stop with ctx.
func (s *Server) startBridge(ctx context.Context, ns *natsserver.Server) error {
	opts := []nats.Option{nats.InProcessServer(ns), nats.Name("msgd-events"), nats.MaxReconnects(-1)}
	if s.bridge != nil {
		opts = append(opts, nats.Nkey(s.bridge.pub, s.bridge.key.Sign))
	}
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return fmt.Errorf("msgd: connect the event bridge: %w", err)
	}
	s.wg.Go(func() {
		<-ctx.Done()
		nc.Close()
	})
	for _, src := range s.sources() {
		if src.addr == "" {
			continue
		}
		s.wg.Go(func() { s.bridgeLoop(ctx, nc, src) })
	}
	if s.cfg.JetStream && s.cfg.EventsMaxAge > 0 {
		s.wg.Go(func() { s.eventsStreamLoop(ctx, nc) })
	}
	return nil
}

// bridgeLoop follows one source until ctx ends, reopening its stream with
// backoff (100ms doubling to 5s) when it breaks or is refused.
func (s *Server) bridgeLoop(ctx context.Context, nc *nats.Conn, src source) {
	log := s.log.With(slog.String("source", src.name))
	published := s.metrics.published.WithLabelValues(src.name)
	emit := func(e *events.Event) {
		e.V, e.Reporter = events.Version, s.d.NodeID
		b, err := json.Marshal(e)
		if err != nil {
			log.Error("event not encodable", slog.Any("err", err))
			return
		}
		m := &nats.Msg{Subject: e.Subject(), Data: b, Header: nats.Header{}}
		// The events stream keeps one copy of an occurrence published
		// twice (the same id), within its duplicate window.
		m.Header.Set(nats.MsgIdHdr, e.ID)
		if err := nc.PublishMsg(m); err != nil {
			log.Debug("event not published", slog.String("subject", e.Subject()), slog.Any("err", err))
			return
		}
		published.Inc()
	}
	retry := 100 * time.Millisecond
	warned := false
	for {
		start := time.Now()
		err := src.follow(ctx, src.addr, emit)
		if ctx.Err() != nil {
			return
		}
		s.metrics.sourceErrors.WithLabelValues(src.name).Inc()
		if time.Since(start) > 10*time.Second {
			retry, warned = 100*time.Millisecond, false
		}
		if !warned {
			log.Warn("event stream broke; reopening", slog.String("addr", src.addr), slog.Any("err", err))
			warned = true
		} else {
			log.Debug("event stream broke; reopening", slog.Any("err", err))
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

// memberKinds maps gossip event types to event types.
var memberKinds = map[gossippb.EventType]string{
	gossippb.EventType_EVENT_TYPE_JOIN:    events.MemberJoin,
	gossippb.EventType_EVENT_TYPE_UPDATE:  events.MemberUpdate,
	gossippb.EventType_EVENT_TYPE_SUSPECT: events.MemberSuspect,
	gossippb.EventType_EVENT_TYPE_DEAD:    events.MemberDead,
	gossippb.EventType_EVENT_TYPE_LEAVE:   events.MemberLeave,
}

// followMembers bridges gossipd's membership events. Every gossipd sees
// them, so only the reporter publishes: the alive member with the lowest
// node id that advertises a msgd route, other than the member concerned
// (the view is read afresh for each event).
func (s *Server) followMembers(ctx context.Context, addr string, emit func(*events.Event)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gc := gossipclient.New(s.d.Bus, addr)
	sub, err := gc.Subscribe(ctx, false)
	if err != nil {
		return err
	}
	defer func() {
		cancel()
		_ = sub.Close()
	}()
	for {
		ev, err := sub.Next()
		if err != nil {
			return err
		}
		e := memberEvent(ev)
		if e == nil {
			continue
		}
		members, selfID, err := gc.Members(ctx, false)
		if err != nil {
			return err
		}
		if reporter(members, selfID, e.NodeID) {
			emit(e)
		}
	}
}

// reporter reports whether this node reports a membership event about
// node about: it is the alive member with the lowest node id among those
// advertising a msgd route, leaving out the member concerned (a node does
// not see its own death or return).
func reporter(members []*gossippb.Member, selfID, about uint64) bool {
	for _, m := range members { // ordered by node id
		if m.GetNodeId() == about || m.GetState() != gossippb.MemberState_MEMBER_STATE_ALIVE || m.GetMetadata().GetAddresses()[MetadataRoute] == "" {
			continue
		}
		return m.GetNodeId() == selfID
	}
	return false
}

// memberEvent converts a gossip event; nil for user events.
func memberEvent(ev *gossippb.Event) *events.Event {
	typ, ok := memberKinds[ev.GetType()]
	if !ok || ev.GetMember() == nil {
		return nil
	}
	m := ev.GetMember()
	at := time.Now()
	if ns := m.GetStateChangeUnixNano(); ns > 0 {
		at = time.Unix(0, ns)
	}
	return &events.Event{
		ID:     fmt.Sprintf("%s.%d.%d", typ, m.GetNodeId(), m.GetIncarnation()),
		Type:   typ,
		Time:   at.UTC(),
		NodeID: m.GetNodeId(),
		Member: &events.Member{
			State:       strings.ToLower(strings.TrimPrefix(m.GetState().String(), "MEMBER_STATE_")),
			Incarnation: m.GetIncarnation(),
			Addr:        m.GetAddr(),
			Addresses:   m.GetMetadata().GetAddresses(),
			Labels:      m.GetMetadata().GetLabels(),
		},
	}
}

// clockEvents converts one of clockd's health verdicts (the current one
// first, then each change).
func (s *Server) clockEvents(h *clockpb.Health) []*events.Event {
	at := time.Unix(0, h.GetAt().GetWallTime())
	if h.GetAt().GetWallTime() == 0 {
		at = time.Now()
	}
	return []*events.Event{{
		ID:     fmt.Sprintf("%s.%d.%d.%d", events.ClockHealth, s.d.NodeID, h.GetAt().GetWallTime(), h.GetAt().GetLogical()),
		Type:   events.ClockHealth,
		Time:   at.UTC(),
		NodeID: s.d.NodeID,
		Clock: &events.Clock{
			Healthy: h.GetHealthy(), Reason: h.GetReason(),
			PeersReachable: int(h.GetPeersReachable()), PeersFar: int(h.GetPeersFar()),
		},
	}}
}

// diskEvents converts one of stored's disk statuses (the current one
// first, then each change).
func (s *Server) diskEvents(d *storepb.DiskStatus) []*events.Event {
	at := time.Unix(0, d.GetSinceUnixNano())
	if d.GetSinceUnixNano() == 0 {
		at = time.Now()
	}
	node := d.GetNodeId()
	if node == 0 {
		node = s.d.NodeID
	}
	e := &events.Disk{
		Full: d.GetFull(), ReserveFull: d.GetReserveFull(), FreeBytes: d.GetFreeBytes(), TotalBytes: d.GetTotalBytes(),
		FloorBytes: d.GetFloorBytes(), BallastBytes: d.GetBallastBytes(), BallastPresent: d.GetBallastPresent(),
	}
	if d.GetFull() {
		e.Reason = d.Describe()
		if d.GetReason() != "" {
			e.Reason += "; " + d.GetReason()
		}
	}
	return []*events.Event{{
		// One id per state: a status published again (msgd reconnecting)
		// repeats its id.
		ID:   fmt.Sprintf("%s.%d.%d.%t.%t.%t", events.DiskSpace, node, d.GetSinceUnixNano(), d.GetFull(), d.GetReserveFull(), d.GetBallastPresent()),
		Type: events.DiskSpace, Time: at.UTC(), NodeID: node, Disk: e,
	}}
}

// rangeEvents converts one of raftd's range events.
func (s *Server) rangeEvents(ev *kvpb.RangeEvent) []*events.Event {
	d := ev.GetDescriptor_()
	r := &events.Range{
		RangeID: ev.GetRangeId(), StartKey: d.GetStartKey(), EndKey: d.GetEndKey(), Generation: d.GetGeneration(),
		Term: ev.GetTerm(), LeaderNodeID: ev.GetLeaderNodeId(), PreviousLeaderNodeID: ev.GetPreviousLeaderNodeId(),
		Voters: ev.GetVoters(), Learners: ev.GetLearners(), Replicas: []events.Replica{},
	}
	for _, rd := range d.GetReplicas() {
		r.Replicas = append(r.Replicas, events.Replica{NodeID: rd.GetNodeId(), ReplicaID: rd.GetReplicaId(), Learner: rd.GetType() == kvpb.ReplicaType_REPLICA_TYPE_LEARNER})
	}
	var typ, id string
	switch ev.GetType() {
	case kvpb.RangeEventType_RANGE_EVENT_TYPE_LEADER:
		typ, id = events.RangeLeader, fmt.Sprintf("%s.%d.%d", events.RangeLeader, r.RangeID, r.Term)
	case kvpb.RangeEventType_RANGE_EVENT_TYPE_REPLICA_ADDED:
		typ, id = events.RangeReplica, fmt.Sprintf("%s.%d.%d.%d", events.RangeReplica, r.RangeID, ev.GetNodeId(), r.Generation)
	case kvpb.RangeEventType_RANGE_EVENT_TYPE_CONF_CHANGED:
		typ, id = events.RangeConf, fmt.Sprintf("%s.%d.%d", events.RangeConf, r.RangeID, ev.GetIndex())
	default:
		return nil
	}
	at := time.Unix(0, ev.GetUnixNano())
	if ev.GetUnixNano() == 0 {
		at = time.Now()
	}
	node := ev.GetNodeId()
	if node == 0 {
		node = s.d.NodeID
	}
	return []*events.Event{{ID: id, Type: typ, Time: at.UTC(), NodeID: node, Range: r}}
}

// workflowKinds maps workflowd's lifecycle event types to event types.
var workflowKinds = map[string]string{
	"started": events.WorkflowStarted, "step_started": events.WorkflowStepStarted, "step_completed": events.WorkflowStepCompleted,
	"step_failed": events.WorkflowStepFailed, "suspended": events.WorkflowSuspended, "resumed": events.WorkflowResumed,
	"completed": events.WorkflowCompleted, "terminated": events.WorkflowTerminated, "failed": events.WorkflowFailed,
	"compensated": events.WorkflowCompensated,
}

// workflowEvents converts one lifecycle event of an instance the node's
// workflowd runs; types it does not know are left out.
func (s *Server) workflowEvents(ev *workflowpb.LifecycleEvent) []*events.Event {
	typ, ok := workflowKinds[ev.GetType()]
	if !ok {
		return nil
	}
	at := time.Unix(0, ev.GetTimeUnixNano())
	if ev.GetTimeUnixNano() == 0 {
		at = time.Now()
	}
	node := ev.GetNode()
	if node == 0 {
		node = s.d.NodeID
	}
	return []*events.Event{{
		ID:     fmt.Sprintf("%s.%s.%d.%d.%d.%d", typ, ev.GetInstanceId(), ev.GetEpoch(), ev.GetPointer(), ev.GetAttempt(), ev.GetTimeUnixNano()),
		Type:   typ,
		Time:   at.UTC(),
		NodeID: node,
		Workflow: &events.Workflow{
			InstanceID: ev.GetInstanceId(), Definition: ev.GetDefinition(), Version: ev.GetVersion(), Step: ev.GetStep(),
			Pointer: ev.GetPointer(), Attempt: ev.GetAttempt(), Error: ev.GetError(), Epoch: ev.GetEpoch(),
		},
	}}
}
