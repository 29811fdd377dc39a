package msgd_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/services/msgd"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/clockclient"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/events"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/clockpb"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
	"github.com/pleiades-db/pleiades/shared/proto/hlcpb"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/storeclient"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
)

// fakeStream serves one server-stream method that sends what the test
// puts on its channel.
func fakeStream[Req any, Ev proto.Message, PReq interface {
	*Req
	proto.Message
}](t *testing.T, p wire.Protocol, method string) (string, chan Ev) {
	t.Helper()
	ch := make(chan Ev, 16)
	rt := daemontest.NewUnstartedRuntime(t, "fake", daemontest.CA(t), common(t))
	bus.HandleStream(rt.Bus, p, method, func(ctx context.Context, _ PReq, send func(Ev) error) error {
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
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
	return rt.Bus.Addr().String(), ch
}

// nextEvent returns the next event on sub of the given type.
func nextEvent(t *testing.T, sub *nats.Subscription, typ string) (*events.Event, string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("event on %s does not decode: %v: %s", m.Subject, err, m.Data)
		}
		if m.Subject != e.Subject() {
			t.Errorf("event %s published on %s", e.Subject(), m.Subject)
		}
		if e.Type == typ {
			return e, m.Subject
		}
	}
	t.Fatalf("no %s event", typ)
	return nil, ""
}

// TestEventBridge: membership, clock health, range, disk and workflow events from the
// node's daemons arrive on their subjects under pleiades.events.>, as
// valid JSON; membership is reported once, by the msgd with the lowest
// node id.
func TestEventBridge(t *testing.T) {
	m := newMembership()
	clockAddr, clockCh := fakeStream[clockpb.WatchHealthRequest, *clockpb.Health](t, wire.ProtoClock, clockclient.MethodWatchHealth)
	raftAddr, raftCh := fakeStream[kvpb.WatchRangesRequest, *kvpb.RangeEvent](t, wire.ProtoKV, kvclient.MethodWatchRanges)
	storeAddr, diskCh := fakeStream[storepb.WatchDiskRequest, *storepb.DiskStatus](t, wire.ProtoStore, storeclient.MethodWatchDisk)
	workflowAddr, wfCh := fakeStream[workflowpb.SubscribeRequest, *workflowpb.LifecycleEvent](t, wire.ProtoWorkflow, workflowclient.MethodSubscribe)
	var nodes []*node
	for i := range 2 {
		c := common(t)
		c.NodeID = uint64(201 + i)
		cfg := testConfig()
		cfg.GossipAddr = m.gossipd(t, c.NodeID)
		if i == 1 {
			cfg.ClockAddr, cfg.RaftAddr, cfg.StoreAddr, cfg.WorkflowAddr = clockAddr, raftAddr, storeAddr, workflowAddr
		}
		nodes = append(nodes, startNode(t, c, cfg))
	}
	eventually(t, 20*time.Second, "both ready and routed", func() error {
		for _, n := range nodes {
			if err := ready(n); err != nil {
				return err
			}
		}
		if len(routedTo(t, nodes[0])) == 0 {
			return fmt.Errorf("not routed")
		}
		return nil
	})
	nc := connect(t, nodes[1])
	sub, err := nc.SubscribeSync(events.SubjectAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Wait until node 0 (the reporter) knows the subscription: its own
	// join events for node 203 must reach us.
	var join *events.Event
	eventually(t, 20*time.Second, "a join event through the reporter", func() error {
		m.join(203)
		for {
			msg, err := sub.NextMsg(300 * time.Millisecond)
			if err != nil {
				return err
			}
			if e, _ := events.Decode(msg.Data); e != nil && e.Type == events.MemberJoin && e.NodeID == 203 {
				join = e
				return nil
			}
		}
	})
	if join.Reporter != 201 || join.Member.State != "alive" || join.ID == "" {
		t.Errorf("join = %+v; want reported by 201, alive", join)
	}
	m.setState(203, gossippb.MemberState_MEMBER_STATE_DEAD)
	dead, subj := nextEvent(t, sub, events.MemberDead)
	if dead.NodeID != 203 || dead.Reporter != 201 || subj != "pleiades.events.member.dead.203" {
		t.Errorf("dead = %+v on %s", dead, subj)
	}

	clockCh <- &clockpb.Health{Healthy: false, Reason: "far from 2 of 2 peers", PeersReachable: 2, PeersFar: 2, At: &hlcpb.Timestamp{WallTime: 1_700_000_000_000_000_000}}
	ch, subj := nextEvent(t, sub, events.ClockHealth)
	if ch.Clock.Healthy || ch.Clock.PeersFar != 2 || ch.NodeID != 202 || subj != "pleiades.events.clock.health.202" {
		t.Errorf("clock event %+v on %s", ch.Clock, subj)
	}
	raftCh <- &kvpb.RangeEvent{Type: kvpb.RangeEventType_RANGE_EVENT_TYPE_LEADER, RangeId: 7, NodeId: 202, Term: 9, LeaderNodeId: 202, PreviousLeaderNodeId: 201,
		Descriptor_: &kvpb.RangeDescriptor{RangeId: 7, StartKey: []byte("a"), Generation: 1, Replicas: []*kvpb.ReplicaDescriptor{{NodeId: 201, ReplicaId: 1}, {NodeId: 202, ReplicaId: 2}}}}
	le, subj := nextEvent(t, sub, events.RangeLeader)
	if le.Range.RangeID != 7 || le.Range.LeaderNodeID != 202 || le.Range.PreviousLeaderNodeID != 201 || len(le.Range.Replicas) != 2 ||
		subj != "pleiades.events.range.leader.7" || le.ID != "range.leader.7.9" {
		t.Errorf("leader event %+v on %s", le.Range, subj)
	}
	diskCh <- &storepb.DiskStatus{NodeId: 202, Full: true, FreeBytes: 30 << 20, TotalBytes: 1 << 30, FloorBytes: 64 << 20, BallastBytes: 8 << 20, SinceUnixNano: 1_700_000_000_000_000_000}
	de, subj := nextEvent(t, sub, events.DiskSpace)
	if !de.Disk.Full || de.Disk.FreeBytes != 30<<20 || de.NodeID != 202 || subj != "pleiades.events.disk.space.202" ||
		!strings.HasPrefix(de.Disk.Reason, "disk full on node 202 (free 30.0 MiB of 1.0 GiB") || !de.Time.Equal(time.Unix(0, 1_700_000_000_000_000_000)) {
		t.Errorf("disk event %+v at %v on %s", de.Disk, de.Time, subj)
	}
	wfCh <- &workflowpb.LifecycleEvent{Type: "whatever"} // unknown types are left out
	wfCh <- &workflowpb.LifecycleEvent{Type: "step_failed", InstanceId: "18ab", Definition: "billing.monthly", Version: 3, Step: "charge", Pointer: 4,
		Attempt: 2, Error: "card declined", TimeUnixNano: 1_700_000_000_000_000_001, Node: 202, Epoch: 5}
	we, subj := nextEvent(t, sub, events.WorkflowStepFailed)
	if w := we.Workflow; w.InstanceID != "18ab" || w.Definition != "billing.monthly" || w.Version != 3 || w.Step != "charge" || w.Attempt != 2 ||
		w.Error != "card declined" || w.Epoch != 5 || we.NodeID != 202 || subj != "pleiades.events.workflow.step_failed.billing_monthly" {
		t.Errorf("workflow event %+v on %s", w, subj)
	}
}

// TestEventsStream: msgd keeps the events in the JetStream stream
// events.Stream (with an auth file or client certificates too: the
// bridge may keep it), one copy per occurrence however often it is
// published, readable by a consumer that came later.
func TestEventsStream(t *testing.T) {
	for _, auth := range []string{"none", "file", "certificates"} {
		t.Run("auth="+auth, func(t *testing.T) {
			storeAddr, diskCh := fakeStream[storepb.WatchDiskRequest, *storepb.DiskStatus](t, wire.ProtoStore, storeclient.MethodWatchDisk)
			cfg := testConfig()
			cfg.NoCluster, cfg.StoreAddr, cfg.RefreshInterval = true, storeAddr, 100*time.Millisecond
			var opts []nats.Option
			switch auth {
			case "file":
				auth := filepath.Join(t.TempDir(), "auth.conf")
				if err := os.WriteFile(auth, []byte(`authorization { users = [ {user: app, password: s3cret} ] }`), 0o600); err != nil {
					t.Fatal(err)
				}
				cfg.AuthFile = auth
				opts = append(opts, nats.UserInfo("app", "s3cret"))
			case "certificates":
				cfg.ClientTLS = msgd.ClientTLSVerify
				opts = append(opts, nats.Secure(issue(t, "app", tlsutil.ClientRole())))
			}
			n := startNode(t, common(t), cfg)
			js, err := jetstream.New(connect(t, n, opts...))
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			var st jetstream.Stream
			eventually(t, 20*time.Second, "the events stream", func() (err error) {
				st, err = js.Stream(ctx, events.Stream)
				return err
			})
			if c := st.CachedInfo().Config; c.Replicas != 1 || c.MaxAge != 24*time.Hour || len(c.Subjects) != 1 || c.Subjects[0] != events.SubjectAll {
				t.Errorf("stream config: replicas %d, max age %v, subjects %v", c.Replicas, c.MaxAge, c.Subjects)
			}
			full := &storepb.DiskStatus{NodeId: 7, Full: true, FreeBytes: 1, TotalBytes: 2, SinceUnixNano: 1_700_000_000_000_000_000}
			diskCh <- full
			diskCh <- proto.Clone(full).(*storepb.DiskStatus) // the same occurrence again
			diskCh <- &storepb.DiskStatus{NodeId: 7, FreeBytes: 2, TotalBytes: 2, SinceUnixNano: 1_700_000_000_000_000_001}
			var msgs uint64
			eventually(t, 20*time.Second, "two events stored", func() error {
				info, err := st.Info(ctx)
				if err != nil {
					return err
				}
				if msgs = info.State.Msgs; msgs < 2 {
					return fmt.Errorf("%d messages", msgs)
				}
				return nil
			})
			time.Sleep(200 * time.Millisecond) // a duplicate would have landed by now
			cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			batch, err := cons.FetchNoWait(10)
			if err != nil {
				t.Fatal(err)
			}
			var full2 []bool
			for m := range batch.Messages() {
				e, err := events.Decode(m.Data())
				if err != nil {
					t.Fatal(err)
				}
				if m.Headers().Get(nats.MsgIdHdr) != e.ID {
					t.Errorf("message id %q; want the event's %q", m.Headers().Get(nats.MsgIdHdr), e.ID)
				}
				full2 = append(full2, e.Disk.Full)
			}
			if fmt.Sprint(full2) != "[true false]" {
				t.Errorf("stored events full=%v; want [true false] (one copy of the repeated one)", full2)
			}
		})
	}
}
