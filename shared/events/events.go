package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Version is the schema version of Event this package writes.
const Version = 2

// Prefix is the subject prefix of every event; SubjectAll matches them
// all.
const (
	Prefix     = "pleiades.events"
	SubjectAll = Prefix + ".>"
)

// Stream is the JetStream stream in which msgd keeps the events (when
// JetStream runs), so a consumer can read those of a past window; a
// message's Nats-Msg-Id header is its event's ID, so the stream keeps one
// copy of an occurrence published twice.
const Stream = "PLEIADES_EVENTS"

// Event types (Event.Type), "<source>.<kind>".
const (
	MemberJoin    = "member.join"
	MemberUpdate  = "member.update"
	MemberSuspect = "member.suspect"
	MemberDead    = "member.dead"
	MemberLeave   = "member.leave"
	ClockHealth   = "clock.health"
	RangeLeader   = "range.leader"
	RangeReplica  = "range.replica"
	RangeConf     = "range.conf"
	DiskSpace     = "disk.space"

	WorkflowStarted       = "workflow.started"
	WorkflowStepStarted   = "workflow.step_started"
	WorkflowStepCompleted = "workflow.step_completed"
	WorkflowStepFailed    = "workflow.step_failed"
	WorkflowSuspended     = "workflow.suspended"
	WorkflowResumed       = "workflow.resumed"
	WorkflowCompleted     = "workflow.completed"
	WorkflowTerminated    = "workflow.terminated"
	WorkflowFailed        = "workflow.failed"
	WorkflowCompensated   = "workflow.compensated"
)

// Types lists every event type of this version.
var Types = []string{MemberJoin, MemberUpdate, MemberSuspect, MemberDead, MemberLeave, ClockHealth, RangeLeader, RangeReplica, RangeConf, DiskSpace,
	WorkflowStarted, WorkflowStepStarted, WorkflowStepCompleted, WorkflowStepFailed, WorkflowSuspended, WorkflowResumed,
	WorkflowCompleted, WorkflowTerminated, WorkflowFailed, WorkflowCompensated}

// Event is one cluster event as published (JSON).
type Event struct {
	// V is the schema version (Version).
	V int `json:"v"`
	// ID identifies the occurrence: two publications of the same
	// occurrence carry the same id.
	ID string `json:"id"`
	// Type is "<source>.<kind>", one of Types.
	Type string `json:"type"`
	// Time is when the source daemon observed the change (UTC).
	Time time.Time `json:"time"`
	// Reporter is the node id of the msgd that published the event.
	Reporter uint64 `json:"reporter,string"`
	// NodeID is the node the event is about: the member (member.*), the
	// node whose clock it judges (clock.*), the node whose replica it
	// concerns (range.*), whose disk (disk.*), whose workflowd runs the
	// instance (workflow.*).
	NodeID uint64 `json:"node_id,string"`
	// Member details member.* events.
	Member *Member `json:"member,omitempty"`
	// Clock details clock.* events.
	Clock *Clock `json:"clock,omitempty"`
	// Range details range.* events.
	Range *Range `json:"range,omitempty"`
	// Disk details disk.* events.
	Disk *Disk `json:"disk,omitempty"`
	// Workflow details workflow.* events.
	Workflow *Workflow `json:"workflow,omitempty"`
}

// Workflow is a workflow instance's lifecycle event, as the workflowd
// running it emitted it.
type Workflow struct {
	// InstanceID is the instance.
	InstanceID string `json:"instance_id"`
	// Definition and Version name the definition it runs.
	Definition string `json:"definition"`
	Version    uint32 `json:"version"`
	// Step is the step's name (step_* events); Pointer the execution
	// pointer (thread) it ran on; Attempt its attempt (from 1).
	Step    string `json:"step,omitempty"`
	Pointer uint32 `json:"pointer,omitempty"`
	Attempt uint32 `json:"attempt,omitempty"`
	// Error is the failure (step_failed, failed, terminated's reason).
	Error string `json:"error,omitempty"`
	// Epoch is the instance's ownership epoch at the event.
	Epoch uint64 `json:"epoch,omitempty"`
}

// Disk is stored's verdict on its node's disk space (disk.space): sent
// when writes start or stop being refused, when the reserve runs out or
// returns, when the ballast goes or comes back.
type Disk struct {
	// Full is true while the node refuses writes for want of space
	// (reads are served).
	Full bool `json:"full"`
	// ReserveFull is true while even the small writes raft needs for
	// safety are refused (a follower then answers nothing).
	ReserveFull bool `json:"reserve_full"`
	// Reason explains a full disk: "disk full on node 3 (free ...)".
	Reason string `json:"reason,omitempty"`
	// FreeBytes and TotalBytes are the filesystem's free space (available
	// to stored) and size; FloorBytes the free-space floor.
	FreeBytes  uint64 `json:"free_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
	FloorBytes uint64 `json:"floor_bytes"`
	// BallastBytes is the ballast file's size (0: none); BallastPresent
	// whether it is on disk (released on a full disk).
	BallastBytes   uint64 `json:"ballast_bytes"`
	BallastPresent bool   `json:"ballast_present"`
}

// Member is a member as gossipd saw it at the event.
type Member struct {
	// State is alive, suspect, dead or left.
	State string `json:"state"`
	// Incarnation is the member's SWIM incarnation number.
	Incarnation uint64 `json:"incarnation"`
	// Addr is the member's gossipd bus address.
	Addr string `json:"addr"`
	// Addresses maps daemon names to the addresses the member publishes
	// (bus addresses; "msgd-route" and "msgd-client" for NATS).
	Addresses map[string]string `json:"addresses,omitempty"`
	// Labels are the member's operator labels.
	Labels map[string]string `json:"labels,omitempty"`
}

// Clock is a clock health verdict of clockd's remote clock monitor.
type Clock struct {
	// Healthy is false when a majority of the peers reached are further
	// than the allowed offset.
	Healthy bool `json:"healthy"`
	// Reason explains an unhealthy verdict.
	Reason string `json:"reason,omitempty"`
	// PeersReachable and PeersFar count the peers probed recently and
	// those beyond the offset bound.
	PeersReachable int `json:"peers_reachable"`
	PeersFar       int `json:"peers_far"`
}

// Range describes a range event.
type Range struct {
	// RangeID is the range.
	RangeID uint64 `json:"range_id,string"`
	// StartKey and EndKey are the range's span (base64 in JSON; an empty
	// EndKey is the end of the keyspace).
	StartKey []byte `json:"start_key"`
	EndKey   []byte `json:"end_key"`
	// Generation is the descriptor's generation.
	Generation uint64 `json:"generation"`
	// Term is the raft term of the reporting replica.
	Term uint64 `json:"term,omitempty"`
	// LeaderNodeID is the leader's node (range.leader, range.conf).
	LeaderNodeID uint64 `json:"leader_node_id,omitempty,string"`
	// PreviousLeaderNodeID is the leader before (range.leader; 0 if
	// none was known).
	PreviousLeaderNodeID uint64 `json:"previous_leader_node_id,omitempty,string"`
	// Replicas are the range's replicas per its descriptor.
	Replicas []Replica `json:"replicas"`
	// Voters and Learners are the replica ids of the new configuration
	// (range.conf).
	Voters   IDs `json:"voters,omitempty"`
	Learners IDs `json:"learners,omitempty"`
}

// IDs is a list of ids, written in JSON as decimal strings (as every id
// of an event is: node ids are 64-bit and would lose their low digits in
// JavaScript and jq as numbers).
type IDs []uint64

// MarshalJSON writes the ids as strings.
func (ids IDs) MarshalJSON() ([]byte, error) {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return json.Marshal(s)
}

// UnmarshalJSON reads ids written as strings.
func (ids *IDs) UnmarshalJSON(b []byte) error {
	var s []string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	out := make(IDs, len(s))
	for i, v := range s {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("id %q: %w", v, err)
		}
		out[i] = id
	}
	*ids = out
	return nil
}

// Replica is one replica of a range.
type Replica struct {
	NodeID    uint64 `json:"node_id,string"`
	ReplicaID uint64 `json:"replica_id,string"`
	// Learner is true for a non-voting replica.
	Learner bool `json:"learner,omitempty"`
}

// Source returns the part of the type before the dot ("member").
func (e *Event) Source() string {
	s, _, _ := strings.Cut(e.Type, ".")
	return s
}

// subjectID is the last token of the event's subject.
func (e *Event) subjectID() uint64 {
	if e.Range != nil {
		return e.Range.RangeID
	}
	return e.NodeID
}

// Subject is the NATS subject the event is published on: the node or
// range id last, or for workflow events the definition id (characters a
// NATS token may not hold, '.', '*', '>' and white space, as '_').
func (e *Event) Subject() string {
	if e.Workflow != nil {
		return Prefix + "." + e.Type + "." + Token(e.Workflow.Definition)
	}
	return Prefix + "." + e.Type + "." + strconv.FormatUint(e.subjectID(), 10)
}

// Token makes s one NATS subject token: '.', '*', '>' and white space
// become '_'; "" becomes "_".
func Token(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || unicode.IsSpace(r):
			return '_'
		}
		return r
	}, s)
}

// Validate reports the first way e breaks the schema.
func (e *Event) Validate() error {
	if e.V != Version {
		return fmt.Errorf("events: version %d; want %d", e.V, Version)
	}
	known := false
	for _, t := range Types {
		known = known || t == e.Type
	}
	if !known {
		return fmt.Errorf("events: unknown type %q", e.Type)
	}
	if e.ID == "" || e.Time.IsZero() || e.Reporter == 0 || e.NodeID == 0 {
		return errors.New("events: id, time, reporter and node_id are required")
	}
	details := 0
	for _, set := range []bool{e.Member != nil, e.Clock != nil, e.Range != nil, e.Disk != nil, e.Workflow != nil} {
		if set {
			details++
		}
	}
	want := map[string]bool{"member": e.Member != nil, "clock": e.Clock != nil, "range": e.Range != nil, "disk": e.Disk != nil, "workflow": e.Workflow != nil}
	if details != 1 || !want[e.Source()] {
		return fmt.Errorf("events: a %s event carries exactly its %q details", e.Type, e.Source())
	}
	return nil
}

// Decode parses and validates one published event.
func Decode(b []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("events: decode: %w", err)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}
