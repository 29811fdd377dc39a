package events_test

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/events"
)

func sample() events.Event {
	return events.Event{V: events.Version, ID: "member.dead.7.3", Type: events.MemberDead, Time: time.Unix(1700000000, 5).UTC(), Reporter: 2, NodeID: 7,
		Member: &events.Member{State: "dead", Incarnation: 3, Addr: "127.0.0.1:7403", Addresses: map[string]string{"msgd-route": "127.0.0.1:6222"}}}
}

func TestSubjectAndRoundTrip(t *testing.T) {
	tests := []struct {
		ev   events.Event
		want string
	}{
		{sample(), "pleiades.events.member.dead.7"},
		{events.Event{V: events.Version, ID: "c", Type: events.ClockHealth, Time: time.Now(), Reporter: 2, NodeID: 2, Clock: &events.Clock{Healthy: true}}, "pleiades.events.clock.health.2"},
		{events.Event{V: events.Version, ID: "r", Type: events.RangeLeader, Time: time.Now(), Reporter: 2, NodeID: 2, Range: &events.Range{RangeID: 12, LeaderNodeID: 2}}, "pleiades.events.range.leader.12"},
		{events.Event{V: events.Version, ID: "w", Type: events.WorkflowStepFailed, Time: time.Now(), Reporter: 3, NodeID: 3,
			Workflow: &events.Workflow{InstanceID: "i1", Definition: "billing.v2 monthly", Version: 2, Step: "charge", Attempt: 2, Error: "declined"}}, "pleiades.events.workflow.step_failed.billing_v2_monthly"},
		{events.Event{V: events.Version, ID: "d", Type: events.DiskSpace, Time: time.Now(), Reporter: 3, NodeID: 3, Disk: &events.Disk{Full: true, Reason: "disk full on node 3"}}, "pleiades.events.disk.space.3"},
	}
	for _, tt := range tests {
		if got := tt.ev.Subject(); got != tt.want {
			t.Errorf("Subject(%s) = %q; want %q", tt.ev.Type, got, tt.want)
		}
		b, err := json.Marshal(&tt.ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := events.Decode(b)
		if err != nil {
			t.Fatalf("Decode(%s) = %v", b, err)
		}
		if got.Subject() != tt.want || got.ID != tt.ev.ID || !got.Time.Equal(tt.ev.Time) {
			t.Errorf("Decode(%s) = %+v", b, got)
		}
	}
}

// TestIDsAreStrings: every id is a JSON string, so a 64-bit node id reaches
// jq and JavaScript (whose numbers hold 53 bits) with all its digits.
func TestIDsAreStrings(t *testing.T) {
	const big = uint64(1)<<63 + 12345
	ev := events.Event{V: events.Version, ID: "c", Type: events.RangeConf, Time: time.Now(), Reporter: big, NodeID: big,
		Range: &events.Range{RangeID: 9, LeaderNodeID: big, PreviousLeaderNodeID: big - 1, Voters: events.IDs{1, big}, Learners: events.IDs{3},
			Replicas: []events.Replica{{NodeID: big, ReplicaID: 4}}}}
	b, err := json.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	r := generic["range"].(map[string]any)
	for name, v := range map[string]any{"reporter": generic["reporter"], "node_id": generic["node_id"], "range_id": r["range_id"],
		"leader_node_id": r["leader_node_id"], "previous_leader_node_id": r["previous_leader_node_id"],
		"voters[1]": r["voters"].([]any)[1], "learners[0]": r["learners"].([]any)[0],
		"replicas[0].node_id": r["replicas"].([]any)[0].(map[string]any)["node_id"], "replicas[0].replica_id": r["replicas"].([]any)[0].(map[string]any)["replica_id"]} {
		if _, ok := v.(string); !ok {
			t.Errorf("%s is %T (%v) in %s; want a string", name, v, v, b)
		}
	}
	got, err := events.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Range, ev.Range) || got.NodeID != big || got.Reporter != big {
		t.Errorf("round trip %+v; want %+v", got.Range, ev.Range)
	}
	if _, err := events.Decode([]byte(`{"v":2,"id":"r","type":"range.conf","time":"2024-01-01T00:00:00Z","reporter":"1","node_id":"1","range":{"range_id":"1","voters":["x"]}}`)); err == nil {
		t.Error("Decode accepted a voter id that is not a number")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*events.Event)
	}{
		{"version", func(e *events.Event) { e.V = events.Version - 1 }},
		{"type", func(e *events.Event) { e.Type = "member.exploded" }},
		{"no id", func(e *events.Event) { e.ID = "" }},
		{"no reporter", func(e *events.Event) { e.Reporter = 0 }},
		{"no details", func(e *events.Event) { e.Member = nil }},
		{"wrong details", func(e *events.Event) { e.Member, e.Clock = nil, &events.Clock{} }},
		{"two details", func(e *events.Event) { e.Clock = &events.Clock{} }},
		{"disk details on a member event", func(e *events.Event) { e.Member, e.Disk = nil, &events.Disk{} }},
		{"workflow details on a member event", func(e *events.Event) { e.Member, e.Workflow = nil, &events.Workflow{} }},
	}
	ok := sample()
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(sample) = %v", err)
	}
	for _, tt := range tests {
		e := sample()
		tt.mod(&e)
		if err := e.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil; want an error", tt.name)
		}
	}
	if _, err := events.Decode([]byte(`{"v":2,`)); err == nil {
		t.Error("Decode(truncated) = nil error")
	}
}

// TestSchemaMatchesTypes: schema.json names exactly the JSON fields of the
// Go types, and lists exactly Types.
func TestSchemaMatchesTypes(t *testing.T) {
	b, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	type object struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	var s struct {
		object
		Defs map[string]object `json:"$defs"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	check := func(name string, typ reflect.Type, props map[string]json.RawMessage) {
		var fields, keys []string
		for f := range typ.Fields() {
			fields = append(fields, strings.Split(f.Tag.Get("json"), ",")[0])
		}
		for k := range props {
			keys = append(keys, k)
		}
		slices.Sort(fields)
		slices.Sort(keys)
		if !slices.Equal(fields, keys) {
			t.Errorf("%s: Go fields %v; schema properties %v", name, fields, keys)
		}
	}
	check("event", reflect.TypeFor[events.Event](), s.Properties)
	check("member", reflect.TypeFor[events.Member](), s.Defs["member"].Properties)
	check("clock", reflect.TypeFor[events.Clock](), s.Defs["clock"].Properties)
	check("range", reflect.TypeFor[events.Range](), s.Defs["range"].Properties)
	check("replica", reflect.TypeFor[events.Replica](), s.Defs["replica"].Properties)
	check("disk", reflect.TypeFor[events.Disk](), s.Defs["disk"].Properties)
	check("workflow", reflect.TypeFor[events.Workflow](), s.Defs["workflow"].Properties)
	var typ struct {
		Enum []string `json:"enum"`
	}
	if err := json.Unmarshal(s.Properties["type"], &typ); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(typ.Enum, events.Types) {
		t.Errorf("schema types %v; Types %v", typ.Enum, events.Types)
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := json.Marshal(sample())
	f.Add(b)
	f.Add([]byte(`{"v":2,"id":"x","type":"clock.health","time":"2024-01-01T00:00:00Z","reporter":"1","node_id":"1","clock":{"healthy":false}}`))
	f.Add([]byte(`{"v":2,"id":"d","type":"disk.space","time":"2024-01-01T00:00:00Z","reporter":"3","node_id":"3","disk":{"full":true,"reason":"disk full on node 3"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := events.Decode(b)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("Decode accepted an invalid event: %v", err)
		}
		if !strings.HasPrefix(e.Subject(), events.Prefix+"."+e.Type+".") {
			t.Fatalf("Subject %q", e.Subject())
		}
	})
}
