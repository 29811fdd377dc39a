package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/output"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

func rangesCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "ranges",
		Usage: "list a raftd's local replicas: span, raft state, term, leader, commit/applied, log size",
		Description: "Calls the raftd at --addr (the first, if several) over the bus. One row per local replica:\n" +
			"range id and span [start, end), the replica's raft state and term, the leader's node\n" +
			"and replica ids, commit and applied indexes, the log's entries and bytes, whether the\n" +
			"range is quiesced and whether this replica holds a valid lease. --output json prints\n" +
			"one object with node_id and \"replicas\", which also give the client sessions each\n" +
			"replica remembers for exactly-once writes (sessions, session_bytes).\n" +
			"With --all it lists every range of the cluster instead, as the meta range records them:\n" +
			"span, generation, replicas, the leader's raftd address as the answering node knows it,\n" +
			"and what the leader reports of the range: its size (SIZE, bytes on disk, the storage\n" +
			"engine's estimate) and load (REQ/S, the key requests it served per second over the last\n" +
			"10 seconds); \"-\" (absent in --output json: size, requests_per_sec) when the leader does\n" +
			"not answer.",
		Flags: append(kvFlags(), &cli.BoolFlag{Name: "all", Usage: "list every range of the cluster from the meta range: span, generation, replicas, leader, size, load"}),
		Action: func(c *cli.Context) error {
			if _, err := posArgs(c, 0, 0, "no arguments"); err != nil {
				return err
			}
			s, err := openKV(e, c)
			if err != nil {
				return err
			}
			defer s.close()
			if c.Bool("all") {
				return printAllRanges(e, s)
			}
			addr := s.cl.Addrs()[0]
			resp, err := s.cl.Ranges(s.ctx, addr)
			if err != nil {
				return s.explain(err)
			}
			view := makeRangesView(addr, resp)
			if s.format == "json" {
				return output.PrintJSON(e.stdout, view)
			}
			return printRanges(e, view)
		},
	}
}

// rangesView is what `ranges` prints.
type rangesView struct {
	Addr     string        `json:"addr"`
	NodeID   uint64        `json:"node_id,string"`
	Replicas []replicaView `json:"replicas"`
}

// replicaView is one local replica.
type replicaView struct {
	RangeID         uint64            `json:"range_id,string"`
	StartKey        string            `json:"start_key"`
	StartEncoding   string            `json:"start_key_encoding,omitempty"`
	EndKey          string            `json:"end_key"`
	EndEncoding     string            `json:"end_key_encoding,omitempty"`
	Generation      uint64            `json:"generation"`
	Replicas        []replicaDescView `json:"replicas"`
	ReplicaID       uint64            `json:"replica_id,string"`
	RaftState       string            `json:"raft_state"`
	Term            uint64            `json:"term"`
	LeaderNodeID    uint64            `json:"leader_node_id,string"`
	LeaderReplicaID uint64            `json:"leader_replica_id,string"`
	CommitIndex     uint64            `json:"commit_index"`
	AppliedIndex    uint64            `json:"applied_index"`
	FirstIndex      uint64            `json:"first_index"`
	LastIndex       uint64            `json:"last_index"`
	LogEntries      uint64            `json:"log_entries"`
	LogBytes        uint64            `json:"log_bytes"`
	Quiesced        bool              `json:"quiesced"`
	LeaseValid      bool              `json:"lease_valid"`
	// Sessions are the client sessions the replica remembers for
	// exactly-once writes; SessionBytes the size of their records.
	Sessions     uint64 `json:"sessions"`
	SessionBytes uint64 `json:"session_bytes"`
	// Followers is, on a leader, its view of each follower's log.
	Followers []followerView `json:"followers,omitempty"`
	// start and end are the span's bounds as stored, for tables.
	start, end []byte
}

// followerView is a leader's view of one follower's log.
type followerView struct {
	ReplicaID    uint64 `json:"replica_id,string"`
	Match        uint64 `json:"match"`
	Next         uint64 `json:"next"`
	State        string `json:"state"`
	RecentActive bool   `json:"recent_active"`
}

// replicaDescView is one replica of a range descriptor.
type replicaDescView struct {
	NodeID    uint64 `json:"node_id,string"`
	ReplicaID uint64 `json:"replica_id,string"`
	Type      string `json:"type"`
}

func replicaDescs(d *kvpb.RangeDescriptor) []replicaDescView {
	out := []replicaDescView{}
	for _, r := range d.GetReplicas() {
		typ := "voter"
		switch r.GetType() {
		case kvpb.ReplicaType_REPLICA_TYPE_LEARNER:
			typ = "learner"
		case kvpb.ReplicaType_REPLICA_TYPE_VOTER_INCOMING:
			typ = "voter-incoming"
		case kvpb.ReplicaType_REPLICA_TYPE_VOTER_OUTGOING:
			typ = "voter-outgoing"
		}
		out = append(out, replicaDescView{NodeID: r.GetNodeId(), ReplicaID: r.GetReplicaId(), Type: typ})
	}
	return out
}

func makeRangesView(addr string, resp *kvpb.RangesResponse) rangesView {
	v := rangesView{Addr: addr, NodeID: resp.GetNodeId(), Replicas: []replicaView{}}
	for _, r := range resp.GetReplicas() {
		d := r.GetDescriptor_()
		rv := replicaView{
			RangeID: d.GetRangeId(), start: d.GetStartKey(), end: d.GetEndKey(), Generation: d.GetGeneration(),
			Replicas: replicaDescs(d), ReplicaID: r.GetReplicaId(), RaftState: r.GetRaftState(), Term: r.GetTerm(),
			LeaderNodeID: r.GetLeaderNodeId(), LeaderReplicaID: r.GetLeaderReplicaId(),
			CommitIndex: r.GetCommitIndex(), AppliedIndex: r.GetAppliedIndex(), FirstIndex: r.GetFirstIndex(), LastIndex: r.GetLastIndex(),
			LogBytes: r.GetLogBytes(), Quiesced: r.GetQuiesced(), LeaseValid: r.GetLeaseValid(),
			Sessions: r.GetSessions(), SessionBytes: r.GetSessionBytes(),
		}
		for _, f := range r.GetFollowers() {
			rv.Followers = append(rv.Followers, followerView{ReplicaID: f.GetReplicaId(), Match: f.GetMatch(), Next: f.GetNext(),
				State: f.GetState(), RecentActive: f.GetRecentActive()})
		}
		rv.StartKey, rv.StartEncoding = encText.forJSON(rv.start)
		rv.EndKey, rv.EndEncoding = encText.forJSON(rv.end)
		if r.GetLastIndex() >= r.GetFirstIndex() && r.GetLastIndex() > 0 {
			rv.LogEntries = r.GetLastIndex() - r.GetFirstIndex() + 1
		}
		v.Replicas = append(v.Replicas, rv)
	}
	return v
}

// spanString shows [start, end) with empty bounds as the keyspace's ends.
func spanString(start, end []byte) string {
	s, e := printable(string(start)), printable(string(end))
	if len(start) == 0 {
		s = "-∞"
	}
	if len(end) == 0 {
		e = "+∞"
	}
	return "[" + s + ", " + e + ")"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func printRanges(e *env, v rangesView) error {
	fmt.Fprintf(e.stdout, "raftd %s, node %d: %d replicas\n", v.Addr, v.NodeID, len(v.Replicas))
	if len(v.Replicas) == 0 {
		return nil
	}
	ids := []uint64{v.NodeID}
	for _, r := range v.Replicas {
		ids = append(ids, r.LeaderNodeID)
		for _, d := range r.Replicas {
			ids = append(ids, d.NodeID)
		}
	}
	names := newNodeNames(ids...)
	if l := names.legend(); l != "" {
		fmt.Fprintln(e.stdout, l)
	}
	t := output.NewTable(e.stdout, "RANGE", "SPAN", "REPLICA", "STATE", "TERM", "LEADER", "COMMIT", "APPLIED", "LOG", "QUIESCED", "LEASE", "REPLICAS")
	for _, r := range v.Replicas {
		leader := "-"
		if r.LeaderNodeID != 0 {
			leader = fmt.Sprintf("%s/r%d", names.name(r.LeaderNodeID), r.LeaderReplicaID)
		}
		var reps []string
		for _, d := range r.Replicas {
			s := fmt.Sprintf("%s/r%d", names.name(d.NodeID), d.ReplicaID)
			if d.Type == "learner" {
				s += "(l)"
			}
			s += r.lag(d.ReplicaID)
			reps = append(reps, s)
		}
		t.Row(strconv.FormatUint(r.RangeID, 10), spanString(r.start, r.end), strconv.FormatUint(r.ReplicaID, 10),
			r.RaftState, strconv.FormatUint(r.Term, 10), leader, strconv.FormatUint(r.CommitIndex, 10), strconv.FormatUint(r.AppliedIndex, 10),
			fmt.Sprintf("%d entries, %s", r.LogEntries, byteSize(r.LogBytes)), yesNo(r.Quiesced), yesNo(r.LeaseValid), dash(strings.Join(reps, ",")))
	}
	return t.Flush()
}

// lag annotates a follower on a leader's row: "(snap)" while a snapshot
// is on its way to it, "(-N)" when its log is known to end N entries
// before the leader's; nothing when it is caught up or the row is not a
// leader's.
func (r replicaView) lag(replicaID uint64) string {
	for _, f := range r.Followers {
		if f.ReplicaID != replicaID {
			continue
		}
		switch {
		case f.State == "snapshot":
			return "(snap)"
		case f.Match < r.LastIndex:
			return fmt.Sprintf("(-%d)", r.LastIndex-f.Match)
		}
	}
	return ""
}

// byteSize formats n bytes with a binary unit.
func byteSize(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
