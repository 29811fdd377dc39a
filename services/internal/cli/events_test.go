package cli

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/pleiades-db/pleiades/shared/events"
)

// TestEventsCommand: `pleiades events` prints the events published on the
// subjects it follows, and refuses a subject outside pleiades.events.
func TestEventsCommand(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	pub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	evs := []events.Event{
		{V: events.Version, ID: "a", Type: events.MemberDead, Time: time.Now().UTC(), Reporter: 1, NodeID: 3, Member: &events.Member{State: "dead", Addr: "x"}},
		{V: events.Version, ID: "b", Type: events.RangeLeader, Time: time.Now().UTC(), Reporter: 2, NodeID: 2, Range: &events.Range{RangeID: 5, LeaderNodeID: 2, Term: 7}},
		{V: events.Version, ID: "c", Type: events.MemberJoin, Time: time.Now().UTC(), Reporter: 1, NodeID: 4, Member: &events.Member{State: "alive", Addr: "y"}},
	}
	var (
		wg           sync.WaitGroup
		code         int
		stdout, serr string
	)
	wg.Go(func() {
		code, stdout, serr = run(t, "events", "--nats-url", ns.ClientURL(), "--subject", "pleiades.events.member.>",
			"--count", "2", "--timeout", "20s", "--output", "json")
	})
	// Publish until the command has subscribed and printed both member
	// events (the range event is not followed).
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for published := false; !published; {
		for _, e := range evs {
			b, _ := json.Marshal(e)
			_ = pub.Publish(e.Subject(), b)
		}
		select {
		case <-done:
			published = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	if code != 0 {
		t.Fatalf("events exit %d: %s", code, serr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("printed %d lines; want 2: %s", len(lines), stdout)
	}
	for _, l := range lines {
		e, err := events.Decode([]byte(l))
		if err != nil || e.Source() != "member" {
			t.Errorf("line %q: %v, %v", l, e, err)
		}
	}
	if code, _, _ := run(t, "events", "--nats-url", ns.ClientURL(), "--subject", "orders.>"); code != ExitUsage {
		t.Errorf("--subject orders.> exit %d; want %d", code, ExitUsage)
	}
	if code, _, _ := run(t, "events", "--nats-url", "nats://127.0.0.1:1", "--count", "1"); code != ExitFailed {
		t.Errorf("unreachable msgd exit %d; want %d", code, ExitFailed)
	}
}

// TestEventsRefused: a connection NATS does not allow to subscribe to
// the events (a client certificate limited to key prefixes, here a user
// with permissions) fails at once with NATS's refusal, instead of
// waiting for events that never come.
func TestEventsRefused(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoSigs: true, NoLog: true,
		Users: []*natsserver.User{{Username: "app", Password: "pw", Permissions: &natsserver.Permissions{
			Subscribe: &natsserver.SubjectPermission{Allow: []string{"app.>"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	code, _, serr := run(t, "events", "--nats-url", ns.ClientURL(), "--nats-user", "app", "--nats-password", "pw", "--timeout", "30s")
	if code != ExitFailed || !strings.Contains(serr, "Permissions Violation for Subscription") {
		t.Errorf("events without permission: exit %d, %q; want %d and NATS's refusal", code, serr, ExitFailed)
	}
}

func TestEventDetails(t *testing.T) {
	for _, tt := range []struct {
		ev   events.Event
		want string
	}{
		{events.Event{Type: events.DiskSpace, NodeID: 3, Disk: &events.Disk{Full: true, Reason: "disk full on node 3 (free 30.0 MiB of 320.0 MiB, floor 48.0 MiB)"}},
			"WRITES REFUSED: disk full on node 3 (free 30.0 MiB of 320.0 MiB, floor 48.0 MiB)"},
		{events.Event{Type: events.DiskSpace, NodeID: 3, Disk: &events.Disk{FreeBytes: 300 << 20, TotalBytes: 320 << 20, FloorBytes: 48 << 20}},
			"room: 300.0 MiB free of 320.0 MiB, floor 48.0 MiB"},
		{events.Event{Type: events.ClockHealth, NodeID: 2, Clock: &events.Clock{Healthy: true, PeersReachable: 2}}, "healthy (2 peers reachable, 0 far)"},
		{events.Event{Type: events.WorkflowStepFailed, NodeID: 2, Workflow: &events.Workflow{InstanceID: "18ab", Definition: "billing", Version: 3, Step: "charge", Attempt: 2, Error: "declined"}},
			"18ab (billing v3) step charge attempt 2: declined"},
		{events.Event{Type: events.WorkflowCompleted, NodeID: 2, Workflow: &events.Workflow{InstanceID: "18ab", Definition: "billing", Version: 3}}, "18ab (billing v3)"},
	} {
		if got := eventDetails(&tt.ev); got != tt.want {
			t.Errorf("eventDetails(%s) = %q; want %q", tt.ev.Type, got, tt.want)
		}
	}
}
